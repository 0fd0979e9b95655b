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

func TestEdgeEpoch(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	ctx := testCtx(t)
	if n, err := s.EdgeEpoch(ctx); err != nil || n != 0 {
		t.Fatalf("epoch before any bump: %d %v, want 0", n, err)
	}
	for want := int64(1); want <= 3; want++ {
		if n, err := s.BumpEdgeEpoch(ctx); err != nil || n != want {
			t.Fatalf("bump: %d %v, want %d", n, err, want)
		}
		if n, err := s.EdgeEpoch(ctx); err != nil || n != want {
			t.Fatalf("epoch: %d %v, want %d", n, err, want)
		}
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
