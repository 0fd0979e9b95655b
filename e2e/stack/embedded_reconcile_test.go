package stack

import (
	"errors"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/store"
)

// The reconcile index (a sorted set) and its scripts run on the embedded
// store as on Redis: filing at the lease end, the abandon's earlier filing,
// the claim, the reserve's reconcile_in_ms, postpone and both applies.
func TestEmbeddedStoreRunsTheReconcileScripts(t *testing.T) {
	_, r := startEmbeddedForTest(t)
	c, err := store.NewClient("redis://"+r.addr(), store.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := store.New(c, store.Options{ReconcileDelay: time.Millisecond})
	ctx := testCtx(t)

	abandoned := func(key string) string {
		t.Helper()
		res, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: key, Fingerprint: "A",
			OnIndeterminate: api.LeaseReconcile, ReconcileTarget: "pay", LeaseMS: 60_000})
		if err != nil || res.Outcome != api.Acquired {
			t.Fatalf("reserve %s: %+v %v", key, res, err)
		}
		if err := s.Abandon(ctx, api.AbandonRequest{Scope: "sc", Key: key, Token: res.Token}); err != nil {
			t.Fatalf("abandon %s: %v", key, err)
		}
		return res.Token
	}
	tokExec, tokNot := abandoned("exec"), abandoned("not")
	claimed := map[string]store.Pending{}
	for i := 0; i < 500 && len(claimed) < 2; i++ {
		ps, err := s.ClaimDue(ctx, 10, time.Hour)
		if err != nil {
			t.Fatalf("ClaimDue: %v", err)
		}
		for _, p := range ps {
			claimed[p.Key] = p
		}
		time.Sleep(10 * time.Millisecond)
	}
	if claimed["exec"].Token != tokExec || claimed["not"].Token != tokNot || claimed["exec"].Target != "pay" {
		t.Fatalf("claimed %+v", claimed)
	}
	if ps, err := s.ClaimDue(ctx, 10, time.Hour); err != nil || len(ps) != 0 {
		t.Fatalf("claimed again within the claim: %+v %v", ps, err)
	}
	res, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "exec", Fingerprint: "A"})
	if err != nil || res.Outcome != api.Indeterminate || res.ReconcileInMS < 59*60*1000 {
		t.Fatalf("reserve while claimed: %+v %v, want reconcile_in_ms about an hour", res, err)
	}
	if err := s.Postpone(ctx, claimed["exec"], time.Minute, api.ReconcileUnknown); err != nil {
		t.Fatalf("postpone: %v", err)
	}
	if rec, err := s.Get(ctx, "sc", "exec", false); err != nil || rec.ReconcileAttempts != 1 || rec.ReconcileNextAt == nil {
		t.Fatalf("postponed: %+v %v", rec, err)
	}
	if ok, err := s.ApplyExecuted(ctx, claimed["exec"], stored); err != nil || !ok {
		t.Fatalf("apply executed: %v %v", ok, err)
	}
	if res, err := s.Reserve(ctx, api.ReserveRequest{Scope: "sc", Key: "exec", Fingerprint: "A"}); err != nil || res.Outcome != api.Completed {
		t.Fatalf("reserve after executed: %+v %v", res, err)
	}
	if ok, err := s.ApplyNotExecuted(ctx, claimed["not"]); err != nil || !ok {
		t.Fatalf("apply not executed: %v %v", ok, err)
	}
	if _, err := s.Get(ctx, "sc", "not", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after not executed: %v, want ErrNotFound", err)
	}
	if ok, err := s.ApplyNotExecuted(ctx, claimed["not"]); err != nil || ok {
		t.Fatalf("second apply: %v %v, want not applied", ok, err)
	}
}
