package store

import (
	"errors"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// TestDurableReserveRefusalsStand: in durable mode only an acquired
// reserve needs its replicas. The other answers (completed, in progress,
// mismatch, indeterminate) forward nothing: acting on them is safe even
// if the master's state they read is lost in a failover (a completion is
// written only after the operation ran). Answering them 503 when a
// replica lags turns a replay into an error, and a fail-open route then
// forwards the duplicate: a second execution that durable mode off would
// have prevented.
func TestDurableReserveRefusalsStand(t *testing.T) {
	master := redistest.Start(t)
	replica := startTestReplica(t, master)
	d := Durability{Replicas: 1, Timeout: 100 * time.Millisecond}
	s := newDurableStore(t, master.Addr(), d, Observer{})
	ctx := testCtx(t)
	const scope = "tenant-r"
	const holderA = "HA0123456789abcdef012345"

	reserve := func(key, fp, holder string) (api.ReserveResponse, error) {
		return s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: key, Fingerprint: fp, Holder: holder, LeaseMS: 60000, TTLMS: 120000})
	}
	// Acknowledged before the replica stops.
	done, err := reserve("done", "fp", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "done", Token: done.Token, Response: api.StoredResponse{Status: 201, Body: []byte("paid")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reserve("busy", "fp", holderA); err != nil {
		t.Fatal(err)
	}
	ab, err := reserve("abandoned", "fp", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: "abandoned", Token: ab.Token}); err != nil {
		t.Fatal(err)
	}

	replica.Pause()
	// A change the replica does not acknowledge moves the master past it.
	if _, err := reserve("new", "fp", ""); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("reserve of a new key, the replica stopped: %v, want ErrNotDurable", err)
	}

	for _, tt := range []struct {
		key, fp, holder string
		want            api.Outcome
	}{
		{"done", "fp", "", api.Completed},
		{"busy", "fp", "", api.InProgress},
		{"busy", "other-fp", "", api.Mismatch},
		{"abandoned", "fp", "", api.Indeterminate},
	} {
		t.Run(tt.key+"/"+string(tt.want), func(t *testing.T) {
			res, err := reserve(tt.key, tt.fp, tt.holder)
			if err != nil || res.Outcome != tt.want {
				t.Fatalf("reserve %s: %+v %v, want %s without error (it forwards nothing)", tt.key, res, err, tt.want)
			}
			if tt.want == api.Completed && (res.Response == nil || res.Response.Status != 201 || string(res.Response.Body) != "paid") {
				t.Fatalf("replay %+v", res.Response)
			}
		})
	}
	// An acquisition still needs its replica: a new key, and the holder's
	// own re-run (which answers acquired) alike.
	for _, tt := range []struct{ key, holder string }{{"new2", ""}, {"busy", holderA}} {
		if res, err := reserve(tt.key, "fp", tt.holder); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("reserve %s holder %q, the replica stopped: %+v %v, want ErrNotDurable", tt.key, tt.holder, res, err)
		}
	}
}
