package store

import (
	"errors"
	"strings"
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
	replica := redistest.StartReplica(t, master)
	d := Durability{Replicas: 1, Timeout: 100 * time.Millisecond}
	s := newDurableStore(t, master.Addr(), d, Observer{})
	// A generous WAIT for the changes that must be acknowledged (no
	// timed assertion on a loaded machine).
	sa := newDurableStore(t, master.Addr(), Durability{Replicas: 1, Timeout: 5 * time.Second}, Observer{})
	ctx := testCtx(t)
	const scope = "tenant-r"
	const holderA = "HA0123456789abcdef012345"

	reserveOn := func(s *Store, key, fp, holder string) (api.ReserveResponse, error) {
		return s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: key, Fingerprint: fp, Holder: holder, LeaseMS: 60000, TTLMS: 120000})
	}
	reserve := func(key, fp, holder string) (api.ReserveResponse, error) { return reserveOn(s, key, fp, holder) }
	// Acknowledged before the replica stops.
	done, err := reserveOn(sa, "done", "fp", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "done", Token: done.Token, Response: api.StoredResponse{Status: 201, Body: []byte("paid")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reserveOn(sa, "busy", "fp", holderA); err != nil {
		t.Fatal(err)
	}
	ab, err := reserveOn(sa, "abandoned", "fp", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: "abandoned", Token: ab.Token}); err != nil {
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

// TestDurableMasterRestartLosesWithoutPersistence: WAIT puts a change on
// the replicas, but a master restarted (by a supervisor, before Sentinel
// or the Cluster fails it over) with appendonly no comes back empty and
// its replicas copy the emptiness: a single fault loses every
// acknowledged reservation, and the next request acquires again. With
// appendonly yes and appendfsync always the restarted master keeps it.
// CheckDurability's note on appendonly no must say so (it said only that
// a crash of every replica loses the data).
func TestDurableMasterRestartLosesWithoutPersistence(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		keeps bool
	}{
		{"appendonly no", nil, false},
		{"appendfsync always", []string{"--appendonly", "yes", "--appendfsync", "always"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			master := redistest.Start(t, tt.args...)
			replica := redistest.StartReplica(t, master)
			s := newDurableStore(t, master.Addr(), Durability{Replicas: 1, Timeout: time.Second}, Observer{})
			ctx := testCtx(t)
			notes, err := s.CheckDurability(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.keeps && (len(notes) != 1 || !strings.Contains(notes[0], "restart")) {
				t.Errorf("CheckDurability notes %q: want one warning that a master restarted without persistence empties its replicas", notes)
			}
			req := api.ReserveRequest{Scope: "s", Key: "pay", Fingerprint: "fp", Holder: "H10123456789abcdef012345"}
			if res, err := s.Reserve(ctx, req); err != nil || res.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", res, err)
			}
			if n, _ := replica.Client().Exists(ctx, s.RecordKey("s", "pay")).Result(); n != 1 {
				t.Fatal("the replica lacks the acknowledged reservation")
			}
			// kill -9, then the supervisor starts it again at once.
			master.Kill()
			master.Restart()
			// The replica syncs with the restarted master (a new
			// replication id: a full resync).
			deadline := time.Now().Add(20 * time.Second)
			for {
				ri, err := replica.Client().Info(ctx, "replication").Result()
				mi, merr := master.Client().Info(ctx, "replication").Result()
				if err == nil && merr == nil && infoField(ri, "master_link_status") == "up" && parseReplication(mi).online >= 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the replica did not resync: %v %v", err, merr)
				}
				time.Sleep(50 * time.Millisecond)
			}
			req.Holder = "H20123456789abcdef012345"
			res, err := s.Reserve(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Outcome != api.Acquired; got != tt.keeps {
				t.Fatalf("a second holder's reserve after the restart: %+v; the record survived: %v, want %v", res, got, tt.keeps)
			}
		})
	}
}

// TestReserveRetryAfterLeaseEndedOwnHolder: the store re-sends a reserve
// whose reply it lost with the same arguments (exec); a holder asking
// again has forwarded nothing (it never saw an answer). When the re-run
// comes after the lease ended (a short lease, an --op-timeout and
// --redis-max-retries that outlast it), it must not burn the key
// indeterminate under its own holder, answering 409 for a request that
// never ran: it acquires again, with a new lease.
func TestReserveRetryAfterLeaseEndedOwnHolder(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	for _, oi := range []string{api.LeaseLock, api.LeaseRelease} {
		t.Run(oi, func(t *testing.T) {
			key := "retry-" + oi
			req := api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "fp", LeaseMS: 50, TTLMS: 60000,
				OnIndeterminate: oi, Holder: "HX0123456789abcdef012345"}
			a, err := s.Reserve(ctx, req)
			if err != nil || a.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", a, err)
			}
			rec, err := s.Get(ctx, "s", key, false)
			if err != nil {
				t.Fatal(err)
			}
			pollFor(t, "the lease to end", func() bool { return redisNow(ctx, t, s).After(*rec.LeaseExpiresAt) })
			again, err := s.Reserve(ctx, req) // the store's retry: same arguments
			// (A route that releases took the key over for the holder
			// already, under a new generation: acquired too.)
			if err != nil || again.Outcome != api.Acquired || !strings.HasSuffix(again.Token, ".HX0123456789abcdef012345") {
				t.Fatalf("the holder's re-run after its lease ended: %+v %v, want acquired by its holder", again, err)
			}
			rec, err = s.Get(ctx, "s", key, false)
			if err != nil || rec.State != api.StateInProgress || rec.LeaseExpiresAt == nil || !rec.LeaseExpiresAt.After(redisNow(ctx, t, s)) {
				t.Fatalf("record after the re-run: %+v %v, want in progress with a live lease", rec, err)
			}
			other := req
			other.Holder = "HY0123456789abcdef012345"
			if res, err := s.Reserve(ctx, other); err != nil || res.Outcome != api.InProgress {
				t.Fatalf("another holder: %+v %v, want in progress", res, err)
			}
		})
	}
}

// TestReadyWhileLoading: a master loading its data set (a restart
// reading its AOF or RDB, which takes minutes on a large one) answers
// INFO as role:master but every script with LOADING. /readyz must not
// say ready then.
func TestReadyWhileLoading(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes", "--key-load-delay", "1000",
		"--loading-process-events-interval-bytes", "1024")
	s := newDurableStore(t, srv.Addr(), Durability{}, Observer{})
	ctx := testCtx(t)
	admin := srv.Client()
	if err := admin.Eval(ctx, "for i = 1, 3000 do redis.call('SET', 'fill:' .. i, i) end return 1", nil).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready before the reload: %v", err)
	}
	// DEBUG RELOAD saves and loads again, about 1ms a key: the server
	// answers LOADING meanwhile, on other connections.
	reloaded := make(chan error, 1)
	go func() { reloaded <- admin.Do(ctx, "debug", "reload").Err() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.c.Eval(ctx, "return 1", nil).Result()
		if err != nil && strings.HasPrefix(err.Error(), "LOADING") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never answered LOADING: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := s.Ready(ctx)
	var nr *NotReadyError
	if !errors.As(err, &nr) || !strings.Contains(nr.Reason, "loading") {
		t.Errorf("Ready while the master loads its data set: %v, want not ready (loading)", err)
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("DEBUG RELOAD: %v", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready after the reload: %v", err)
	}
}

// TestReadyFsyncNeedsAOF: with Fsync every change waits for the master's
// AOF fsync (WAITAOF 1 N), which Redis refuses while appendonly is off
// (turned off at run time, or a node restarted from another config):
// every change then fails, so /readyz must not say ready. (CheckDurability
// looks only at start.)
func TestReadyFsyncNeedsAOF(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	s := newDurableStore(t, srv.Addr(), Durability{Fsync: true}, Observer{})
	ctx := testCtx(t)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready with appendonly yes: %v", err)
	}
	if err := srv.Client().ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	err := s.Ready(ctx)
	var nr *NotReadyError
	if !errors.As(err, &nr) || !strings.Contains(nr.Reason, "appendonly") {
		t.Fatalf("Ready with --durable-fsync and appendonly no: %v, want not ready (appendonly)", err)
	}
	// Without Fsync the AOF is not waited for.
	if err := newDurableStore(t, srv.Addr(), Durability{}, Observer{}).Ready(ctx); err != nil {
		t.Fatalf("Ready without fsync: %v", err)
	}
}
