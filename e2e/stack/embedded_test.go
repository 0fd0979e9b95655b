package stack

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/store"
)

// startEmbeddedForTest starts the embedded store the way Start does when
// redis-server is missing (forced here, where redis-server is installed).
func startEmbeddedForTest(t *testing.T) (*Stack, redisBackend) {
	t.Helper()
	s := &Stack{cfg: Config{LogDir: t.TempDir(), EmbeddedRedis: true}, failed: make(chan error, 8)}
	s.log = slog.New(slog.DiscardHandler)
	r, err := startRedis(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	if _, ok := r.(*embedded); !ok {
		t.Fatalf("EmbeddedRedis: got %s, want the embedded store", r.kind())
	}
	if !strings.HasPrefix(r.addr(), "127.0.0.1:") || strings.HasSuffix(r.addr(), ":6379") {
		t.Fatalf("embedded store on %s, want a free loopback port", r.addr())
	}
	return s, r
}

// storeOn connects controlplane/store to addr as the control plane does
// (store.NewClient from a redis:// URL).
func storeOn(t *testing.T, addr string) *store.Store {
	t.Helper()
	c, err := store.NewClient("redis://"+addr, store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return store.New(c, store.Options{})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var stored = api.StoredResponse{Status: 201, Headers: api.Headers{{"Content-Type", "application/json"}}, Body: []byte(`{"id":"pay_1"}`)}

// The control plane's Lua scripts (EVALSHA with the EVAL fallback,
// redis.call('TIME'), hashes, PEXPIRE, PTTL) behave on the embedded store
// as on Redis: every operation the control plane performs, through the
// control plane's own store package.
func TestEmbeddedStoreRunsTheControlPlaneScripts(t *testing.T) {
	_, r := startEmbeddedForTest(t)
	s := storeOn(t, r.addr())
	ctx := testCtx(t)
	reserve := func(key, fp string, lease, ttl int64) api.ReserveResponse {
		t.Helper()
		got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: key, Fingerprint: fp, LeaseMS: lease, TTLMS: ttl})
		if err != nil {
			t.Fatalf("reserve %s: %v", key, err)
		}
		return got
	}
	wantOutcome := func(what string, got api.ReserveResponse, want api.Outcome) {
		t.Helper()
		if got.Outcome != want {
			t.Fatalf("%s: %+v, want %s", what, got, want)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// reserve, in progress, mismatch, complete, replay.
	first := reserve("pay", "A", 0, 0)
	wantOutcome("first reserve", first, api.Acquired)
	busy := reserve("pay", "A", 0, 0)
	wantOutcome("duplicate", busy, api.InProgress)
	if busy.LeaseRemainingMS <= 0 {
		t.Errorf("in progress with %d ms remaining, want > 0", busy.LeaseRemainingMS)
	}
	wantOutcome("other payload", reserve("pay", "B", 0, 0), api.Mismatch)
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "sc", Key: "pay", Token: first.Token, Response: stored}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	replay := reserve("pay", "A", 0, 0)
	wantOutcome("retry", replay, api.Completed)
	if !reflect.DeepEqual(*replay.Response, stored) {
		t.Errorf("replayed %+v, want %+v", *replay.Response, stored)
	}
	if err := s.Release(ctx, api.ReleaseRequest{Scope: "sc", Key: "pay", Token: first.Token}); !errors.Is(err, store.ErrStaleToken) {
		t.Errorf("release of a completed key: %v, want ErrStaleToken", err)
	}
	rec, err := s.Get(ctx, "sc", "pay", true)
	if err != nil || rec.State != api.StateCompleted || rec.Status != 201 || rec.Response == nil || string(rec.Response.Body) != string(stored.Body) {
		t.Errorf("get: %+v %v, want the completed record with its body", rec, err)
	}
	if ttl := time.Until(rec.ExpiresAt); ttl < time.Hour {
		t.Errorf("expires in %v, want the default TTL", ttl)
	}

	// release frees the key for the next attempt.
	rel := reserve("rel", "A", 0, 0)
	if err := s.Release(ctx, api.ReleaseRequest{Scope: "sc", Key: "rel", Token: rel.Token}); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := s.Get(ctx, "sc", "rel", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after release: %v, want ErrNotFound", err)
	}
	wantOutcome("reserve after release", reserve("rel", "A", 0, 0), api.Acquired)

	// abandon: indeterminate for the rest of the TTL (its PTTL), never
	// taken over.
	ab := reserve("ab", "A", 100, 60_000)
	if err := s.Abandon(ctx, api.AbandonRequest{Scope: "sc", Key: "ab", Token: ab.Token}); err != nil {
		t.Fatalf("abandon: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // past the lease
	got := reserve("ab", "A", 100, 60_000)
	wantOutcome("retry of an abandoned key", got, api.Indeterminate)
	if got.ExpiresInMS <= 1000 || got.ExpiresInMS > 60_000 {
		t.Errorf("abandoned key indeterminate for %d ms, want its remaining TTL", got.ExpiresInMS)
	}
	if rec, err := s.Get(ctx, "sc", "ab", false); err != nil || rec.State != api.StateIndeterminate {
		t.Errorf("get abandoned: %+v %v", rec, err)
	}

	// delete and force release.
	if rec, err := s.Delete(ctx, "sc", "ab"); err != nil || rec.State != api.StateIndeterminate {
		t.Errorf("delete: %+v %v", rec, err)
	}
	if _, err := s.Get(ctx, "sc", "ab", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.ForceRelease(ctx, "sc", "pay"); !errors.Is(err, store.ErrNotInProgress) {
		t.Errorf("force release of a completed key: %v, want ErrNotInProgress", err)
	}
}

// Leases and TTLs run on the store's clock (redis.call('TIME') and key
// expiry): a lapsed lease locks the key (indeterminate) by default; with
// on_indeterminate release it is taken over with a new generation,
// fencing the old holder out; a record disappears when its TTL ends.
func TestEmbeddedStoreLeaseTakeoverAndExpiry(t *testing.T) {
	_, r := startEmbeddedForTest(t)
	s := storeOn(t, r.addr())
	ctx := testCtx(t)

	locked, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "lock", Fingerprint: "A", LeaseMS: 200, TTLMS: 60_000})
	if err != nil || locked.Outcome != api.Acquired {
		t.Fatalf("reserve: %+v %v", locked, err)
	}
	time.Sleep(300 * time.Millisecond)
	// The reserve that finds the lease ended says so beside its answer.
	if got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "lock", Fingerprint: "A", LeaseMS: 60_000, TTLMS: 60_000}); !errors.Is(err, store.ErrLeaseEnded) || got.Outcome != api.Indeterminate {
		t.Fatalf("reserve after a lapsed lease (lock): %+v %v, want indeterminate and ErrLeaseEnded", got, err)
	}
	// The holder's late complete still lands, and is replayed.
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "sc", Key: "lock", Token: locked.Token, Response: stored}); err != nil {
		t.Errorf("late complete by the holder: %v", err)
	}
	if got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "lock", Fingerprint: "A"}); err != nil || got.Outcome != api.Completed {
		t.Errorf("reserve after the late complete: %+v %v, want completed", got, err)
	}

	old, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "k", Fingerprint: "A", LeaseMS: 200, TTLMS: 60_000, OnIndeterminate: api.LeaseRelease})
	if err != nil || old.Outcome != api.Acquired || !strings.HasPrefix(old.Token, "1.") {
		t.Fatalf("reserve: %+v %v", old, err)
	}
	time.Sleep(300 * time.Millisecond)
	taken, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "k", Fingerprint: "A", LeaseMS: 60_000, TTLMS: 60_000, OnIndeterminate: api.LeaseRelease})
	if err != nil || taken.Outcome != api.Acquired || !strings.HasPrefix(taken.Token, "2.") {
		t.Fatalf("reserve after the lease: %+v %v, want a takeover with generation 2", taken, err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "sc", Key: "k", Token: old.Token, Response: stored}); !errors.Is(err, store.ErrStaleToken) {
		t.Errorf("complete by the old holder: %v, want ErrStaleToken", err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "sc", Key: "k", Token: taken.Token, Response: stored}); err != nil {
		t.Errorf("complete by the new holder: %v", err)
	}

	if _, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "short", Fingerprint: "A", LeaseMS: 100, TTLMS: 200}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := s.Get(ctx, "sc", "short", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after the TTL: %v, want ErrNotFound (keys must expire by the clock)", err)
	}
}

// A restart of the embedded store drops connections but keeps its data
// (the process lives on), and the control plane's client reconnects.
func TestEmbeddedStoreRestart(t *testing.T) {
	_, r := startEmbeddedForTest(t)
	s := storeOn(t, r.addr())
	ctx := testCtx(t)
	first, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "k", Fingerprint: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "sc", Key: "k", Token: first.Token, Response: stored}); err != nil {
		t.Fatal(err)
	}
	addr := r.addr()
	if err := r.restart(ctx); err != nil {
		t.Fatal(err)
	}
	if r.addr() != addr {
		t.Errorf("restarted on %s, want %s", r.addr(), addr)
	}
	var got api.ReserveResponse
	for i := 0; i < 50; i++ { // the pool may hold connections the restart closed
		if got, err = s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "k", Fingerprint: "A"}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || got.Outcome != api.Completed {
		t.Fatalf("retry after the restart: %+v %v, want completed", got, err)
	}
}

// The control plane's readiness asks INFO replication (and its failover
// watcher CLIENT INFO and ROLE), which miniredis does not know: the embedded store answers
// them as one master without replicas, before and after a restart, so the
// control plane is ready on it, and never in durable mode.
func TestEmbeddedStoreIsAMasterWithoutReplicas(t *testing.T) {
	_, r := startEmbeddedForTest(t)
	ctx := testCtx(t)
	check := func(when string) {
		if err := storeOn(t, r.addr()).Ready(ctx); err != nil {
			t.Errorf("%s: Ready: %v", when, err)
		}
		c, err := store.NewClient("redis://"+r.addr(), store.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		durable := store.New(c, store.Options{Durable: store.Durability{Replicas: 1, Timeout: 100 * time.Millisecond}})
		if err := durable.Ready(ctx); !errors.Is(err, store.ErrNotReady) {
			t.Errorf("%s: Ready in durable mode: %v, want ErrNotReady (no replica)", when, err)
		}
		if top, err := storeOn(t, r.addr()).Topology(ctx); err != nil || top != r.addr() {
			t.Errorf("%s: Topology (CLIENT INFO, ROLE): %q, %v; want %s", when, top, err, r.addr())
		}
	}
	check("started")
	if err := r.restart(ctx); err != nil {
		t.Fatal(err)
	}
	check("restarted")
}
