package store

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
)

func TestList(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	runList(t, s)
}

// TestEdgeEpoch: the epoch is stable between bumps and changes at each,
// and it never repeats a value the edges knew after Redis loses its data
// (a restart without persistence): a filter that kept the old epoch would
// otherwise never see the deletes made after the restart.
func TestEdgeEpoch(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	ctx := testCtx(t)
	seen := map[int64]bool{}
	epoch := func(what string) int64 {
		t.Helper()
		n, err := s.EdgeEpoch(ctx)
		if err != nil {
			t.Fatalf("%s: epoch: %v", what, err)
		}
		return n
	}
	for life := 0; life < 3; life++ {
		start := epoch("start")
		if seen[start] || start <= 0 {
			t.Fatalf("life %d: epoch %d at start, already seen (or not positive): %v", life, start, seen)
		}
		if again := epoch("again"); again != start {
			t.Fatalf("life %d: epoch read %d then %d with no bump", life, start, again)
		}
		seen[start] = true
		for i := int64(1); i <= 3; i++ {
			n, err := s.BumpEdgeEpoch(ctx)
			if err != nil || n != start+i || seen[n] {
				t.Fatalf("life %d: bump: %d %v, want %d, never seen", life, n, err, start+i)
			}
			if got := epoch("after bump"); got != n {
				t.Fatalf("life %d: epoch %d after bump to %d", life, got, n)
			}
			seen[n] = true
		}
		srv.Restart() // persistence off: the data is gone
	}
	// A bump that is the first command after a data loss changes it too.
	n, err := s.BumpEdgeEpoch(ctx)
	if err != nil || seen[n] {
		t.Fatalf("first bump after a data loss: %d %v, a value already seen", n, err)
	}
	// The epoch key is not a record: a listing never sees it.
	recs, cur, err := s.List(ctx, api.StateIndeterminate, "", "", 100)
	if err != nil || len(recs) != 0 || cur != "" {
		t.Fatalf("list of an epoch-only store: %v %q %v", recs, cur, err)
	}
	srv.Stop()
	if _, err := s.BumpEdgeEpoch(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("bump with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := s.EdgeEpoch(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("epoch with Redis down: %v, want ErrUnavailable", err)
	}
}

// runList seeds records in every state under two scopes, then pages
// through List with a small limit and checks that each state's listing
// has exactly the expected records, whole pages with scope and without.
func runList(t *testing.T, s *Store) {
	ctx := testCtx(t)
	want := map[api.State]map[string]bool{api.StateInProgress: {}, api.StateIndeterminate: {}}
	add := func(scope, key string, st api.State) {
		if m := want[st]; m != nil {
			m[scope+"/"+key] = true
		}
	}
	var expiring []string
	for _, scope := range []string{"list-a", "list-{b}"} {
		for i := 0; i < 12; i++ {
			key := fmt.Sprintf("k-%d", i)
			req := api.ReserveRequest{Scope: scope, Key: key, Fingerprint: "F"}
			if i%4 == 3 {
				req.LeaseMS = 200 // its lease ends: indeterminate by expiry
			}
			r, err := s.Reserve(ctx, req)
			if err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", r, err)
			}
			switch i % 4 {
			case 0:
				add(scope, key, api.StateInProgress)
			case 1:
				if err := s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: key, Token: r.Token}); err != nil {
					t.Fatal(err)
				}
				add(scope, key, api.StateIndeterminate)
			case 2:
				if err := s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: key, Token: r.Token, Response: responseFor(200)}); err != nil {
					t.Fatal(err)
				}
			case 3:
				add(scope, key, api.StateIndeterminate)
				expiring = append(expiring, scope+"\x00"+key)
			}
		}
		// A fence beside the records is no record.
		if _, err := s.ReleaseHolder(ctx, scope, "k-0", holderID("hList")); err != nil {
			t.Fatal(err)
		}
	}
	for _, sk := range expiring {
		var scope, key string
		for i := range sk {
			if sk[i] == 0 {
				scope, key = sk[:i], sk[i+1:]
			}
		}
		pollFor(t, "the lease to end", func() bool {
			rec, err := s.Get(ctx, scope, key, false)
			return err == nil && rec.State == api.StateIndeterminate
		})
	}

	list := func(t *testing.T, st api.State, scope string) map[string]bool {
		t.Helper()
		got := map[string]bool{}
		cursor := ""
		for page := 0; ; page++ {
			if page > 200 {
				t.Fatal("listing does not end")
			}
			recs, next, err := s.List(ctx, st, scope, cursor, 5)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.State != st || r.Response != nil {
					t.Fatalf("listed %+v for state %s", r, st)
				}
				if scope != "" && r.Scope != scope {
					t.Fatalf("listed scope %q, asked for %q", r.Scope, scope)
				}
				got[r.Scope+"/"+r.Key] = true
			}
			if next == "" {
				return got
			}
			cursor = next
		}
	}
	keys := func(m map[string]bool) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	for _, st := range []api.State{api.StateInProgress, api.StateIndeterminate} {
		t.Run(string(st), func(t *testing.T) {
			got := list(t, st, "")
			for k := range want[st] {
				if !got[k] {
					t.Errorf("unscoped listing misses %s", k)
				}
			}
			for _, scope := range []string{"list-a", "list-{b}"} {
				got := list(t, st, scope)
				exp := map[string]bool{}
				for k := range want[st] {
					if len(k) > len(scope) && k[:len(scope)+1] == scope+"/" {
						exp[k] = true
					}
				}
				if fmt.Sprint(keys(got)) != fmt.Sprint(keys(exp)) {
					t.Errorf("scope %s: listed %v, want %v", scope, keys(got), keys(exp))
				}
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct {
			st            api.State
			scope, cursor string
			limit         int
		}{
			{api.StateCompleted, "", "", 5},
			{"", "", "", 5},
			{api.StateInProgress, "", "", 0},
			{api.StateInProgress, "", "", api.MaxListLimit + 1},
			{api.StateInProgress, "", "x", 5},
			{api.StateInProgress, "", "99:0", 5},
			{api.StateInProgress, "a\x00b", "", 5},
		} {
			if _, _, err := s.List(ctx, tt.st, tt.scope, tt.cursor, tt.limit); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("List(%q, %q, %q, %d) = %v, want ErrInvalidRequest", tt.st, tt.scope, tt.cursor, tt.limit, err)
			}
		}
	})
}

// TestAdminUnlessLeased: the guarded delete and release refuse a record in
// progress whose lease still runs (the original request may be executing:
// freeing the key would let its retry run a second time) and change
// nothing; once the lease ended, or for other states, they act as Delete
// and ForceRelease do.
func TestAdminUnlessLeased(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	ops := []struct {
		name string
		do   func(key string) (*api.Record, error)
	}{
		{"delete", func(key string) (*api.Record, error) { return s.DeleteUnlessLeased(ctx, "g", key) }},
		{"release", func(key string) (*api.Record, error) { return s.ReleaseUnlessLeased(ctx, "g", key) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			live := op.name + "-live"
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "g", Key: live, Fingerprint: "A", LeaseMS: 60_000})
			if err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", r, err)
			}
			rec, err := op.do(live)
			if !errors.Is(err, ErrLeaseLive) || rec == nil || rec.LeaseExpiresAt == nil || rec.State != api.StateInProgress {
				t.Fatalf("%s of a live lease: %+v %v, want ErrLeaseLive with the record", op.name, rec, err)
			}
			if got, err := s.Get(ctx, "g", live, false); err != nil || got.State != api.StateInProgress {
				t.Fatalf("after the refusal: %+v %v, want the record unchanged", got, err)
			}

			ended := op.name + "-ended"
			if r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "g", Key: ended, Fingerprint: "A", LeaseMS: 200}); err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", r, err)
			}
			before, err := s.Get(ctx, "g", ended, false)
			if err != nil {
				t.Fatal(err)
			}
			pollFor(t, "the lease to end", func() bool { return redisNow(ctx, t, s).After(*before.LeaseExpiresAt) })
			if rec, err := op.do(ended); err != nil || rec.State != api.StateIndeterminate {
				t.Fatalf("%s after the lease ended: %+v %v, want done", op.name, rec, err)
			}
			if _, err := s.Get(ctx, "g", ended, false); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after %s: %v, want ErrNotFound", op.name, err)
			}
			if _, err := op.do("absent"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s of an absent record: %v, want ErrNotFound", op.name, err)
			}
		})
	}
	// A completed record: delete deletes it, release refuses it.
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "g", Key: "done", Fingerprint: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "g", Key: "done", Token: r.Token, Response: responseFor(200)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseUnlessLeased(ctx, "g", "done"); !errors.Is(err, ErrNotInProgress) {
		t.Fatalf("release of a completed record: %v, want ErrNotInProgress", err)
	}
	if rec, err := s.DeleteUnlessLeased(ctx, "g", "done"); err != nil || rec.State != api.StateCompleted {
		t.Fatalf("delete of a completed record: %+v %v", rec, err)
	}
}
