package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// TestReconcile runs the reconcile transitions and fences on a standalone
// Redis (TestCluster runs them on a Cluster).
func TestReconcile(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient("redis://"+srv.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	runReconcile(t, c)
}

// rcStore builds a Store on c with its own key prefix (so that a subtest's
// ClaimDue sees only its own records) and opt.
func rcStore(t *testing.T, c redis.UniversalClient, opt Options) *Store {
	t.Helper()
	opt.Prefix = "rc-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if len(opt.Prefix) > 64 {
		opt.Prefix = opt.Prefix[len(opt.Prefix)-64:]
	}
	if err := opt.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(c, opt)
}

const rcScope = "tenant-rc"

// rcReserve reserves key on a route that reconciles (target "" = default).
func rcReserve(ctx context.Context, t *testing.T, s *Store, key, target string, leaseMS int64) string {
	t.Helper()
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: key, Fingerprint: "F",
		OnIndeterminate: api.LeaseReconcile, ReconcileTarget: target, LeaseMS: leaseMS, TTLMS: 600_000})
	if err != nil || r.Outcome != api.Acquired {
		t.Fatalf("reserve %s: %+v %v", key, r, err)
	}
	return r.Token
}

// rcAbandoned reserves key on a route that reconciles and abandons it.
func rcAbandoned(ctx context.Context, t *testing.T, s *Store, key string) string {
	t.Helper()
	tok := rcReserve(ctx, t, s, key, "", 60_000)
	if err := s.Abandon(ctx, api.AbandonRequest{Scope: rcScope, Key: key, Token: tok}); err != nil {
		t.Fatalf("abandon %s: %v", key, err)
	}
	return tok
}

// rcLeaseEnded reserves key on a route that reconciles with a short lease
// and waits until Redis's clock passes its end.
func rcLeaseEnded(ctx context.Context, t *testing.T, s *Store, key string) string {
	t.Helper()
	tok := rcReserve(ctx, t, s, key, "", shortLease)
	rec, err := s.Get(ctx, rcScope, key, false)
	if err != nil || rec.LeaseExpiresAt == nil {
		t.Fatalf("record %+v %v has no lease", rec, err)
	}
	pollFor(t, "the lease to end", func() bool { return redisNow(ctx, t, s).After(*rec.LeaseExpiresAt) })
	return tok
}

// claimOne polls ClaimDue (claim 1h) until it hands out key's record:
// every 50ms (on a Cluster each call reads 16384 indexes), for at most 10s.
func claimOne(ctx context.Context, t *testing.T, s *Store, key string) Pending {
	t.Helper()
	for i := 0; i < 200; i++ {
		ps, err := s.ClaimDue(ctx, 10, time.Hour)
		if err != nil {
			t.Fatalf("ClaimDue: %v", err)
		}
		for _, p := range ps {
			if p.Key != key {
				t.Fatalf("ClaimDue handed out %+v, want only %q", p, key)
			}
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not claimed after 10s", key)
	return Pending{}
}

// indexLen counts the entries of every reconcile index of s.
func indexLen(ctx context.Context, t *testing.T, s *Store) int {
	t.Helper()
	nodes, err := s.indexNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, nd := range nodes {
		pipe := nd.c.Pipeline()
		cmds := make([]*redis.IntCmd, len(nd.keys))
		for i, k := range nd.keys {
			cmds[i] = pipe.ZCard(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			n += int(c.Val())
		}
	}
	return n
}

// indexScore is the record's score in its index, ok=false when not filed.
func indexScore(ctx context.Context, t *testing.T, s *Store, key string) (time.Time, bool) {
	t.Helper()
	rk := s.RecordKey(rcScope, key)
	sc, err := s.c.ZScore(ctx, s.reconcileIndexKey(rk), rk).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMilli(int64(sc)).UTC(), true
}

func getRecord(ctx context.Context, t *testing.T, s *Store, key string) *api.Record {
	t.Helper()
	rec, err := s.Get(ctx, rcScope, key, false)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return rec
}

// checkStale: every apply and the postpone leave the record alone.
func checkStale(ctx context.Context, t *testing.T, s *Store, p Pending) {
	t.Helper()
	if ok, err := s.ApplyExecuted(ctx, p, responseFor(201)); err != nil || ok {
		t.Errorf("ApplyExecuted: applied=%v %v, want false", ok, err)
	}
	if ok, err := s.ApplyNotExecuted(ctx, p); err != nil || ok {
		t.Errorf("ApplyNotExecuted: applied=%v %v, want false", ok, err)
	}
	if err := s.Postpone(ctx, p, time.Minute, api.ReconcileUnknown); !errors.Is(err, ErrStaleToken) {
		t.Errorf("Postpone: %v, want ErrStaleToken", err)
	}
}

func runReconcile(t *testing.T, c redis.UniversalClient) {
	t.Run("AbandonedIsClaimedAfterTheDelayAndExecutedCompletes", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: 2 * time.Second})
		tok := rcReserve(ctx, t, s, "k", "payments", 60_000)
		before := redisNow(ctx, t, s).Truncate(time.Millisecond) // records keep ms
		if err := s.Abandon(ctx, api.AbandonRequest{Scope: rcScope, Key: "k", Token: tok}); err != nil {
			t.Fatal(err)
		}
		rec := getRecord(ctx, t, s, "k")
		if rec.State != api.StateIndeterminate || rec.OnIndeterminate != api.LeaseReconcile ||
			rec.ReconcileTarget != "payments" || rec.ReconcileNextAt == nil || rec.ReconcileAttempts != 0 {
			t.Fatalf("abandoned record %+v", rec)
		}
		// Filed ReconcileDelay after the abandon, not at the lease end.
		if d := rec.ReconcileNextAt.Sub(before); d < 2*time.Second || d > 30*time.Second {
			t.Fatalf("next lookup %v after the abandon, want the 2s delay", d)
		}
		ps, err := s.ClaimDue(ctx, 10, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if redisNow(ctx, t, s).Before(*rec.ReconcileNextAt) && len(ps) != 0 {
			t.Fatalf("claimed %+v before the delay passed", ps)
		}
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: "k", Fingerprint: "F"})
		if err != nil || r.Outcome != api.Indeterminate || r.ReconcileInMS < 1 || r.ReconcileInMS > 2000 {
			t.Fatalf("reserve while waiting for the lookup: %+v %v, want indeterminate with reconcile_in_ms in [1, 2000]", r, err)
		}
		p := claimOne(ctx, t, s, "k")
		want := Pending{Scope: rcScope, Key: "k", Token: tok, Target: "payments", Fingerprint: rec.Fingerprint, CreatedAt: rec.CreatedAt}
		if p != want {
			t.Fatalf("claimed %+v, want %+v", p, want)
		}
		// Claimed for an hour: a retry is told so.
		r, err = s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: "k", Fingerprint: "F"})
		if err != nil || r.Outcome != api.Indeterminate || r.ReconcileInMS < 59*60*1000 || r.ReconcileInMS > 3600*1000 {
			t.Fatalf("reserve while claimed: %+v %v, want reconcile_in_ms about an hour", r, err)
		}
		if ok, err := s.ApplyExecuted(ctx, p, responseFor(201)); err != nil || !ok {
			t.Fatalf("ApplyExecuted: %v %v", ok, err)
		}
		r, err = s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: "k", Fingerprint: "F"})
		wantResp := responseFor(201)
		if err != nil || r.Outcome != api.Completed || r.Response == nil || r.Response.Status != 201 ||
			!bytes.Equal(r.Response.Body, wantResp.Body) || len(r.Response.Headers) != 2 {
			t.Fatalf("reserve after executed: %+v %v, want the upstream's response replayed", r, err)
		}
		rec = getRecord(ctx, t, s, "k")
		if rec.State != api.StateCompleted || rec.ReconcileLast != api.ReconcileExecuted || rec.ReconcileAttempts != 1 || rec.ReconcileNextAt != nil {
			t.Fatalf("completed record %+v", rec)
		}
		if n := indexLen(ctx, t, s); n != 0 {
			t.Fatalf("index holds %d entries after the apply, want 0", n)
		}
		// Applied once: the holder's token does nothing more.
		checkStale(ctx, t, s, p)
	})

	t.Run("NotExecutedReleases", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: time.Millisecond})
		rcAbandoned(ctx, t, s, "k")
		p := claimOne(ctx, t, s, "k")
		if ok, err := s.ApplyNotExecuted(ctx, p); err != nil || !ok {
			t.Fatalf("ApplyNotExecuted: %v %v", ok, err)
		}
		if _, err := s.Get(ctx, rcScope, "k", false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get after not executed: %v, want ErrNotFound", err)
		}
		if n := indexLen(ctx, t, s); n != 0 {
			t.Fatalf("index holds %d entries, want 0", n)
		}
		// The retry executes, under a new token, filed at its lease end.
		tok2 := rcReserve(ctx, t, s, "k", "", 60_000)
		if tok2 == p.Token {
			t.Fatalf("the retry got the old token %q", tok2)
		}
		rec := getRecord(ctx, t, s, "k")
		if at, ok := indexScore(ctx, t, s, "k"); !ok || rec.LeaseExpiresAt == nil || !at.Equal(*rec.LeaseExpiresAt) {
			t.Fatalf("the retry's entry at %v (filed %v), want its lease end %v", at, ok, rec.LeaseExpiresAt)
		}
		checkStale(ctx, t, s, p)
	})

	t.Run("PostponeCountsAndRefiles", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: time.Millisecond})
		rcAbandoned(ctx, t, s, "k")
		p := claimOne(ctx, t, s, "k")
		before := redisNow(ctx, t, s).Truncate(time.Millisecond) // records keep ms
		if err := s.Postpone(ctx, p, time.Hour, api.ReconcileUnknown); err != nil {
			t.Fatal(err)
		}
		rec := getRecord(ctx, t, s, "k")
		if rec.ReconcileAttempts != 1 || rec.ReconcileLast != api.ReconcileUnknown || rec.ReconcileNextAt == nil ||
			rec.ReconcileNextAt.Sub(before) < time.Hour || rec.ReconcileNextAt.Sub(before) > time.Hour+30*time.Second {
			t.Fatalf("postponed record %+v, want 1 attempt, unknown, next in an hour", rec)
		}
		if ps, err := s.ClaimDue(ctx, 10, time.Hour); err != nil || len(ps) != 0 {
			t.Fatalf("claimed a postponed record: %+v %v", ps, err)
		}
		if err := s.Postpone(ctx, p, time.Millisecond, api.ReconcileFailed); err != nil {
			t.Fatal(err)
		}
		p2 := claimOne(ctx, t, s, "k")
		if p2.Attempts != 2 || p2.Token != p.Token {
			t.Fatalf("claimed again %+v, want 2 attempts under the same token", p2)
		}
		if rec := getRecord(ctx, t, s, "k"); rec.ReconcileLast != api.ReconcileFailed {
			t.Fatalf("last answer %q, want failed", rec.ReconcileLast)
		}
		// Bad input changes nothing.
		for _, bad := range []struct {
			after time.Duration
			last  string
		}{{0, api.ReconcileUnknown}, {time.Minute, "maybe"}, {time.Minute, ""}} {
			if err := s.Postpone(ctx, p, bad.after, bad.last); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("Postpone(%v, %q): %v, want ErrInvalidRequest", bad.after, bad.last, err)
			}
		}
		if rec := getRecord(ctx, t, s, "k"); rec.ReconcileAttempts != 2 {
			t.Fatalf("attempts %d after refused postpones, want 2", rec.ReconcileAttempts)
		}
	})

	t.Run("HolderCompletesBetweenClaimAndApply", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{})
		tok := rcLeaseEnded(ctx, t, s, "k")
		p := claimOne(ctx, t, s, "k")
		if rec := getRecord(ctx, t, s, "k"); rec.State != api.StateIndeterminate || rec.LeaseExpiresAt != nil {
			t.Fatalf("claimed record %+v, want written indeterminate", rec)
		}
		// The holder's late answer still lands, and wins.
		if err := s.Complete(ctx, api.CompleteRequest{Scope: rcScope, Key: "k", Token: tok, Response: responseFor(200)}); err != nil {
			t.Fatalf("holder's complete: %v", err)
		}
		checkStale(ctx, t, s, p)
		rec := getRecord(ctx, t, s, "k")
		if rec.State != api.StateCompleted || rec.Status != 200 || rec.ReconcileLast != "" {
			t.Fatalf("record %+v, want the holder's response", rec)
		}
		if n := indexLen(ctx, t, s); n != 0 {
			t.Fatalf("index holds %d entries after complete, want 0", n)
		}
	})

	t.Run("ReleasedAndReservedAgainIsStale", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{})
		tok := rcLeaseEnded(ctx, t, s, "k")
		p := claimOne(ctx, t, s, "k")
		if err := s.Release(ctx, api.ReleaseRequest{Scope: rcScope, Key: "k", Token: tok}); err != nil {
			t.Fatalf("holder's release: %v", err)
		}
		if n := indexLen(ctx, t, s); n != 0 {
			t.Fatalf("index holds %d entries after release, want 0", n)
		}
		tok2 := rcReserve(ctx, t, s, "k", "", 60_000)
		checkStale(ctx, t, s, p)
		rec := getRecord(ctx, t, s, "k")
		if rec.State != api.StateInProgress {
			t.Fatalf("the new reservation %+v was touched", rec)
		}
		// The new attempt abandoned too: reconcilable, but only by its
		// own token.
		if err := s.Abandon(ctx, api.AbandonRequest{Scope: rcScope, Key: "k", Token: tok2}); err != nil {
			t.Fatalf("the new holder's abandon: %v", err)
		}
		checkStale(ctx, t, s, p)
		p2, rec, ok, err := s.LoadForReconcile(ctx, rcScope, "k")
		if err != nil || !ok || p2.Token != tok2 || rec.ReconcileAttempts != 0 {
			t.Fatalf("the new attempt: %+v %+v %v %v, want reconcilable under %q", p2, rec, ok, err, tok2)
		}
	})

	t.Run("LiveLeaseIsNotClaimedAndRefiledAtItsEnd", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{})
		tok := rcReserve(ctx, t, s, "k", "", 60_000)
		rec := getRecord(ctx, t, s, "k")
		at, ok := indexScore(ctx, t, s, "k")
		if !ok || !at.Equal(*rec.LeaseExpiresAt) || rec.ReconcileNextAt == nil || !rec.ReconcileNextAt.Equal(at) {
			t.Fatalf("acquired record filed at %v (%v), next %v, want its lease end %v", at, ok, rec.ReconcileNextAt, rec.LeaseExpiresAt)
		}
		// An entry due although the lease runs (filed by a run whose
		// lease was restarted since): the claim files it at the lease end.
		rk := s.RecordKey(rcScope, "k")
		if err := s.c.ZAdd(ctx, s.reconcileIndexKey(rk), redis.Z{Score: 1, Member: rk}).Err(); err != nil {
			t.Fatal(err)
		}
		if ps, err := s.ClaimDue(ctx, 10, time.Hour); err != nil || len(ps) != 0 {
			t.Fatalf("claimed a live lease: %+v %v", ps, err)
		}
		if at, ok := indexScore(ctx, t, s, "k"); !ok || !at.Equal(*rec.LeaseExpiresAt) {
			t.Fatalf("re-filed at %v (%v), want the lease end %v", at, ok, rec.LeaseExpiresAt)
		}
		if rec := getRecord(ctx, t, s, "k"); rec.State != api.StateInProgress {
			t.Fatalf("record %+v, want still in progress", rec)
		}
		if _, _, ok, err := s.LoadForReconcile(ctx, rcScope, "k"); err != nil || ok {
			t.Fatalf("LoadForReconcile of a live lease: ok=%v %v, want false", ok, err)
		}
		// Its own token does not resolve it while the lease runs.
		checkStale(ctx, t, s, Pending{Scope: rcScope, Key: "k", Token: tok})
	})

	t.Run("LeaseEndedReserveAnswersReconcileIn", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{})
		rcLeaseEnded(ctx, t, s, "k")
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: "k", Fingerprint: "F", OnIndeterminate: api.LeaseReconcile})
		if !errors.Is(err, ErrLeaseEnded) || r.Outcome != api.Indeterminate || r.ReconcileInMS != 1 {
			t.Fatalf("reserve after the lease: %+v %v, want indeterminate, lease ended, reconcile_in_ms 1 (due)", r, err)
		}
		// An entry lost (a failover) is filed again by the next reserve.
		rk := s.RecordKey(rcScope, "k")
		if err := s.c.ZRem(ctx, s.reconcileIndexKey(rk), rk).Err(); err != nil {
			t.Fatal(err)
		}
		r, err = s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: "k", Fingerprint: "F"})
		if err != nil || r.Outcome != api.Indeterminate || r.ReconcileInMS != 1 {
			t.Fatalf("reserve with the entry lost: %+v %v, want reconcile_in_ms 1", r, err)
		}
		if _, ok := indexScore(ctx, t, s, "k"); !ok {
			t.Fatal("the lost entry was not filed again")
		}
		claimOne(ctx, t, s, "k")
	})

	t.Run("ConcurrentClaimersShareTheWork", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		opt := Options{ReconcileDelay: time.Millisecond}
		s := rcStore(t, c, opt)
		s2 := New(c, s.opt) // another control plane, same keys
		const n = 40
		for i := 0; i < n; i++ {
			rcAbandoned(ctx, t, s, fmt.Sprintf("k-%d", i))
		}
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, st := range []*Store{s, s2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := 0; round < 500; round++ {
					ps, err := st.ClaimDue(ctx, 3, time.Hour)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, p := range ps {
						got[p.Key]++
					}
					done := len(got) == n
					mu.Unlock()
					if done {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("claimed %d records, want %d", len(got), n)
		}
		for k, cnt := range got {
			if cnt != 1 {
				t.Errorf("%s handed out %d times within its claim", k, cnt)
			}
		}
	})

	t.Run("ExecutedOverTheCapIsBodyOmitted", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: time.Millisecond, MaxStoredResponse: 100})
		rcAbandoned(ctx, t, s, "k")
		p := claimOne(ctx, t, s, "k")
		big := api.StoredResponse{Status: 201, Headers: api.Headers{{"X-A", "b"}}, Body: bytes.Repeat([]byte("x"), 1000)}
		if ok, err := s.ApplyExecuted(ctx, p, big); err != nil || !ok {
			t.Fatalf("ApplyExecuted: %v %v", ok, err)
		}
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: "k", Fingerprint: "F"})
		if err != nil || r.Outcome != api.Completed || r.Response == nil || r.Response.Status != 201 ||
			!r.Response.BodyOmitted || len(r.Response.Body) != 0 || len(r.Response.Headers) != 0 {
			t.Fatalf("reserve: %+v %v, want completed 201 with the body omitted", r, err)
		}
		// A response that could never be stored is refused, not applied.
		rcAbandoned(ctx, t, s, "bad")
		pb := claimOne(ctx, t, s, "bad")
		bad := api.StoredResponse{Status: 200, Headers: api.Headers{{"X-A", "1\r\nX-B: 2"}}}
		if ok, err := s.ApplyExecuted(ctx, pb, bad); !errors.Is(err, ErrInvalidRequest) || ok {
			t.Fatalf("ApplyExecuted with a CRLF header: %v %v, want ErrInvalidRequest", ok, err)
		}
		if rec := getRecord(ctx, t, s, "bad"); rec.State != api.StateIndeterminate {
			t.Fatalf("record %+v after a refused apply", rec)
		}
	})

	t.Run("LockAndReleaseRoutesNeverEnterTheIndex", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: time.Millisecond})
		for _, oi := range []string{"", api.LeaseLock, api.LeaseRelease} {
			key := "k-" + oi
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: key, Fingerprint: "F", OnIndeterminate: oi, LeaseMS: shortLease})
			if err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve %q: %+v %v", oi, r, err)
			}
			if oi != api.LeaseRelease {
				if err := s.Abandon(ctx, api.AbandonRequest{Scope: rcScope, Key: key, Token: r.Token}); err != nil {
					t.Fatal(err)
				}
				r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: key, Fingerprint: "F"})
				if err != nil || r.Outcome != api.Indeterminate || r.ReconcileInMS != 0 {
					t.Fatalf("reserve on abandoned %q: %+v %v, want indeterminate without reconcile_in_ms", oi, r, err)
				}
			}
			if n := indexLen(ctx, t, s); n != 0 {
				t.Fatalf("on_indeterminate %q: index holds %d entries, want 0", oi, n)
			}
			if _, _, ok, err := s.LoadForReconcile(ctx, rcScope, key); err != nil || ok {
				t.Fatalf("LoadForReconcile of a %q record: ok=%v %v, want false", oi, ok, err)
			}
		}
		// A takeover of a route that releases by a reserve that
		// reconciles files the new attempt.
		rec := getRecord(ctx, t, s, "k-release")
		pollFor(t, "the lease to end", func() bool { return redisNow(ctx, t, s).After(*rec.LeaseExpiresAt) })
		tok := rcReserve(ctx, t, s, "k-release", "", 60_000)
		if !strings.HasPrefix(tok, "2.") {
			t.Fatalf("takeover token %q, want generation 2", tok)
		}
		if _, ok := indexScore(ctx, t, s, "k-release"); !ok {
			t.Fatal("the reconciling takeover was not filed")
		}
		if rec := getRecord(ctx, t, s, "k-release"); rec.OnIndeterminate != api.LeaseReconcile || rec.ReconcileTarget != api.DefaultReconcileTarget {
			t.Fatalf("taken over record %+v", rec)
		}
		// An entry whose record does not reconcile is dropped by the claim.
		rk := s.RecordKey(rcScope, "k-lock")
		if err := s.c.ZAdd(ctx, s.reconcileIndexKey(rk), redis.Z{Score: 1, Member: rk}).Err(); err != nil {
			t.Fatal(err)
		}
		if ps, err := s.ClaimDue(ctx, 10, time.Hour); err != nil || len(ps) != 0 {
			t.Fatalf("claimed %+v %v, want nothing", ps, err)
		}
		if _, ok := indexScore(ctx, t, s, "k-lock"); ok {
			t.Fatal("the entry of a record that locks was not dropped")
		}
	})

	t.Run("DeletionsDropTheEntry", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{})
		for _, d := range []struct {
			name string
			do   func(key, tok string) error
		}{
			{"delete", func(key, _ string) error { _, err := s.Delete(ctx, rcScope, key); return err }},
			{"force release", func(key, _ string) error { _, err := s.ForceRelease(ctx, rcScope, key); return err }},
			{"release by holder", func(key, _ string) error {
				_, err := s.ReleaseHolder(ctx, rcScope, key, holderID("hA"))
				return err
			}},
			{"expired and absent", func(key, _ string) error {
				return s.c.Del(ctx, s.RecordKey(rcScope, key)).Err()
			}},
		} {
			key := "k-" + strings.ReplaceAll(d.name, " ", "-")
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: rcScope, Key: key, Fingerprint: "F",
				OnIndeterminate: api.LeaseReconcile, Holder: holderID("hA")})
			if err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", r, err)
			}
			if err := d.do(key, r.Token); err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
			if d.name == "expired and absent" {
				rk := s.RecordKey(rcScope, key)
				if err := s.c.ZAdd(ctx, s.reconcileIndexKey(rk), redis.Z{Score: 1, Member: rk}).Err(); err != nil {
					t.Fatal(err)
				}
				if ps, err := s.ClaimDue(ctx, 10, time.Hour); err != nil || len(ps) != 0 {
					t.Fatalf("claimed %+v %v, want nothing", ps, err)
				}
			}
			if _, ok := indexScore(ctx, t, s, key); ok {
				t.Errorf("%s left the index entry", d.name)
			}
		}
	})

	t.Run("LoadForReconcile", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: time.Hour})
		if _, _, _, err := s.LoadForReconcile(ctx, rcScope, "absent"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("absent: %v, want ErrNotFound", err)
		}
		tok := rcAbandoned(ctx, t, s, "k")
		p, rec, ok, err := s.LoadForReconcile(ctx, rcScope, "k")
		if err != nil || !ok || rec == nil {
			t.Fatalf("abandoned: %+v %+v %v %v", p, rec, ok, err)
		}
		want := Pending{Scope: rcScope, Key: "k", Token: tok, Target: api.DefaultReconcileTarget, Fingerprint: rec.Fingerprint, CreatedAt: rec.CreatedAt}
		if p != want {
			t.Fatalf("pending %+v, want %+v", p, want)
		}
		// Not due (an hour's delay) yet applied by the operator's lookup.
		if ok, err := s.ApplyExecuted(ctx, p, responseFor(200)); err != nil || !ok {
			t.Fatalf("ApplyExecuted: %v %v", ok, err)
		}
		if _, rec, ok, err := s.LoadForReconcile(ctx, rcScope, "k"); err != nil || ok || rec.State != api.StateCompleted {
			t.Fatalf("completed: %+v %v %v, want ok=false with the record", rec, ok, err)
		}
		// A lease that ended counts as indeterminate.
		tok = rcLeaseEnded(ctx, t, s, "ended")
		if p, _, ok, err := s.LoadForReconcile(ctx, rcScope, "ended"); err != nil || !ok || p.Token != tok {
			t.Fatalf("lease ended: %+v %v %v", p, ok, err)
		}
		// Postpone writes the state down, as a reserve would.
		if err := s.Postpone(ctx, Pending{Scope: rcScope, Key: "ended", Token: tok}, time.Minute, api.ReconcileFailed); err != nil {
			t.Fatal(err)
		}
		if rec := getRecord(ctx, t, s, "ended"); rec.State != api.StateIndeterminate || rec.LeaseExpiresAt != nil {
			t.Fatalf("postponed record %+v", rec)
		}
		// The admin list shows the reconcile fields.
		recs, _, err := s.List(ctx, api.StateIndeterminate, rcScope, "", 100)
		if err != nil || len(recs) != 1 {
			t.Fatalf("list: %+v %v", recs, err)
		}
		if r := recs[0]; r.OnIndeterminate != api.LeaseReconcile || r.ReconcileAttempts != 1 || r.ReconcileLast != api.ReconcileFailed ||
			r.ReconcileTarget != api.DefaultReconcileTarget || r.ReconcileNextAt == nil {
			t.Fatalf("listed %+v", r)
		}
	})

	t.Run("RerunsChangeNothingMore", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{ReconcileDelay: time.Hour})
		tok := rcAbandoned(ctx, t, s, "k")
		rk := s.RecordKey(rcScope, "k")
		keys := []string{rk, s.reconcileIndexKey(rk)}
		for i := 0; i < 2; i++ {
			n, err := postponeScript.Run(ctx, s.c, keys, tok, 60_000, api.ReconcileUnknown, "CALL1").Int64()
			if err != nil || n != 1 {
				t.Fatalf("postpone run %d: %d %v", i, n, err)
			}
		}
		if rec := getRecord(ctx, t, s, "k"); rec.ReconcileAttempts != 1 {
			t.Fatalf("attempts %d after a re-run, want 1", rec.ReconcileAttempts)
		}
		for i := 0; i < 2; i++ {
			n, err := applyExecutedScript.Run(ctx, s.c, keys, tok, "CALL2", 201, "", "b", "").Int64()
			if err != nil || n != 1 {
				t.Fatalf("apply run %d: %d %v, want 1", i, n, err)
			}
		}
		// Another call (a fresh nonce) finds it applied already: stale.
		if n, err := applyExecutedScript.Run(ctx, s.c, keys, tok, "CALL3", 500, "", "x", "").Int64(); err != nil || n != 0 {
			t.Fatalf("another apply: %d %v, want 0", n, err)
		}
		if rec := getRecord(ctx, t, s, "k"); rec.Status != 201 || rec.ReconcileAttempts != 2 {
			t.Fatalf("record %+v, want the first apply's 201 and 2 attempts", rec)
		}
	})

	t.Run("Validation", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		s := rcStore(t, c, Options{})
		for _, req := range []api.ReserveRequest{
			{OnIndeterminate: api.LeaseReconcile, ReconcileTarget: "bad target"},
			{OnIndeterminate: api.LeaseReconcile, ReconcileTarget: strings.Repeat("t", 65)},
			{OnIndeterminate: api.LeaseLock, ReconcileTarget: "payments"},
			{OnIndeterminate: "Reconcile"},
		} {
			req.Scope, req.Key, req.Fingerprint = rcScope, "k", "F"
			if _, err := s.Reserve(ctx, req); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("reserve %+v: %v, want ErrInvalidRequest", req, err)
			}
		}
		for _, bad := range []struct {
			n     int
			claim time.Duration
		}{{0, time.Second}, {-1, time.Second}, {1, 0}, {1, api.MaxTTL + time.Hour}} {
			if _, err := s.ClaimDue(ctx, bad.n, bad.claim); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("ClaimDue(%d, %v): %v, want ErrInvalidRequest", bad.n, bad.claim, err)
			}
		}
		for _, p := range []Pending{{Key: "k", Token: "1.x"}, {Scope: rcScope, Key: "k"}} {
			if _, err := s.ApplyNotExecuted(ctx, p); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("ApplyNotExecuted(%+v): %v, want ErrInvalidRequest", p, err)
			}
		}
		if err := (Options{ReconcileDelay: -time.Second}).Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("negative reconcile delay: %v, want ErrInvalidOptions", err)
		}
		if n := indexLen(ctx, t, s); n != 0 {
			t.Fatalf("refused requests filed %d entries", n)
		}
	})
}

// TestReconcileDurable: in durable mode the applies and the postpone wait
// for the replica like complete: acknowledged, the replica has them; with
// the replica stopped they answer ErrNotDurable.
func TestReconcileDurable(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	obs := newCounts()
	c, err := NewClient("redis://"+master.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := New(c, Options{ReconcileDelay: time.Millisecond, Observer: obs.observer(),
		Durable: Durability{Replicas: 1, Timeout: 5 * time.Second}})
	ctx := testCtx(t)
	rc := replica.Client()
	for _, k := range []string{"exec", "not", "later", "short"} {
		rcAbandoned(ctx, t, s, k)
	}
	ps := map[string]Pending{}
	pollFor(t, "four claims", func() bool {
		got, err := s.ClaimDue(ctx, 10, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got {
			ps[p.Key] = p
		}
		return len(ps) == 4
	})
	waits := func() int { return obs.get(func(c *counts) int { return c.waits }) }

	w := waits()
	if ok, err := s.ApplyExecuted(ctx, ps["exec"], responseFor(201)); err != nil || !ok {
		t.Fatalf("ApplyExecuted: %v %v", ok, err)
	}
	if st, _ := rc.HGet(ctx, s.RecordKey(rcScope, "exec"), "st").Result(); st != "c" || waits() != w+1 {
		t.Fatalf("replica state %q, waits %d→%d: want the apply waited for and replicated", st, w, waits())
	}
	if ok, err := s.ApplyNotExecuted(ctx, ps["not"]); err != nil || !ok {
		t.Fatalf("ApplyNotExecuted: %v %v", ok, err)
	}
	if n, _ := rc.Exists(ctx, s.RecordKey(rcScope, "not")).Result(); n != 0 || waits() != w+2 {
		t.Fatalf("replica still has the released record (%d), waits %d", n, waits())
	}
	if err := s.Postpone(ctx, ps["later"], time.Hour, api.ReconcileUnknown); err != nil {
		t.Fatal(err)
	}
	if ra, _ := rc.HGet(ctx, s.RecordKey(rcScope, "later"), "ra").Result(); ra != "1" || waits() != w+3 {
		t.Fatalf("replica's attempts %q, waits %d", ra, waits())
	}

	replica.Stop()
	short := New(c, Options{ReconcileDelay: time.Millisecond, Observer: obs.observer(),
		Durable: Durability{Replicas: 1, Timeout: 100 * time.Millisecond}})
	if _, err := short.ApplyExecuted(ctx, ps["short"], responseFor(201)); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("ApplyExecuted without the replica: %v, want ErrNotDurable", err)
	}
	if got := obs.get(func(c *counts) int { return c.shortfalls["apply_executed"] }); got != 1 {
		t.Fatalf("apply_executed shortfalls %d, want 1", got)
	}
}
