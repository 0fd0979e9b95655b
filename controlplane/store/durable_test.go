package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// counts is an Observer that counts, by op.
type counts struct {
	mu         sync.Mutex
	retries    map[string]int
	reasons    map[string]int
	shortfalls map[string]int
	waits      int
	failovers  int
	onRetry    func(op, reason string)
}

func newCounts() *counts {
	return &counts{retries: map[string]int{}, reasons: map[string]int{}, shortfalls: map[string]int{}}
}

func (c *counts) observer() Observer {
	return Observer{
		Retry: func(op, reason string) {
			c.mu.Lock()
			c.retries[op]++
			c.reasons[reason]++
			f := c.onRetry
			c.mu.Unlock()
			if f != nil {
				f(op, reason)
			}
		},
		WaitShortfall: func(op string, acked, want int) {
			c.mu.Lock()
			c.shortfalls[op]++
			c.mu.Unlock()
		},
		Wait: func(string, time.Duration) {
			c.mu.Lock()
			c.waits++
			c.mu.Unlock()
		},
		Failover: func(string, string) {
			c.mu.Lock()
			c.failovers++
			c.mu.Unlock()
		},
	}
}

func (c *counts) get(f func(c *counts) int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(c)
}

func newDurableStore(t *testing.T, addr string, d Durability, obs Observer) *Store {
	t.Helper()
	c, err := NewClient("redis://"+addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return New(c, Options{Durable: d, Observer: obs})
}

// TestDurableStandalone: with one replica every state change is
// acknowledged; with the replica stopped, every state change answers
// ErrNotDurable (also ErrUnavailable) once the WAIT times out, reads still
// answer, and a re-run of a change made on another connection is not
// acknowledged either until the replica has it.
func TestDurableStandalone(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	obs := newCounts()
	d := Durability{Replicas: 1, Timeout: 100 * time.Millisecond}
	s := newDurableStore(t, master.Addr(), d, obs.observer())
	// The changes that must be acknowledged get a generous WAIT: 100ms
	// fell short on a loaded machine (two cores, -race, other jobs), a
	// timed assertion. The shortfalls below keep the short one.
	sa := newDurableStore(t, master.Addr(), Durability{Replicas: 1, Timeout: 5 * time.Second}, obs.observer())
	ctx := testCtx(t)
	const scope = "tenant-d"

	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready with one replica: %v", err)
	}
	notes, err := s.CheckDurability(ctx)
	if err != nil {
		t.Fatalf("CheckDurability (WAIT, no fsync): %v", err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], `appendonly is "no"`) {
		t.Errorf("notes %q, want one about appendonly no", notes)
	}

	// Acknowledged: the replica has every change when the call returns.
	res, err := sa.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "ok", Fingerprint: "fp"})
	if err != nil || res.Outcome != api.Acquired {
		t.Fatalf("reserve: %+v %v", res, err)
	}
	rc := replica.Client()
	if n, err := rc.Exists(ctx, s.RecordKey(scope, "ok")).Result(); err != nil || n != 1 {
		t.Fatalf("the replica lacks the acknowledged reservation: %d %v", n, err)
	}
	if err := sa.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "ok", Token: res.Token, Response: api.StoredResponse{Status: 201}}); err != nil {
		t.Fatal(err)
	}
	if st, _ := rc.HGet(ctx, s.RecordKey(scope, "ok"), "st").Result(); st != "c" {
		t.Fatalf("the replica's record state %q after an acknowledged complete", st)
	}
	if obs.get(func(c *counts) int { return len(c.shortfalls) }) != 0 || obs.get(func(c *counts) int { return c.waits }) != 2 {
		t.Fatalf("shortfalls %v waits %d, want none and 2", obs.shortfalls, obs.waits)
	}

	// Held before the pause, for the ops that need a token.
	tokens := map[string]string{}
	for _, k := range []string{"complete", "release", "abandon", "rerun"} {
		r, err := sa.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: k, Fingerprint: "fp"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[k] = r.Token
	}
	for _, k := range []string{"delete", "force"} {
		if _, err := sa.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: k, Fingerprint: "fp", LeaseMS: 1, TTLMS: 60000}); err != nil {
			t.Fatal(err)
		}
	}

	replica.Pause()
	ops := []struct {
		op  string
		run func(ctx context.Context) error
	}{
		{"reserve", func(ctx context.Context) error {
			_, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "new", Fingerprint: "fp"})
			return err
		}},
		{"complete", func(ctx context.Context) error {
			return s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "complete", Token: tokens["complete"], Response: api.StoredResponse{Status: 200}})
		}},
		{"release", func(ctx context.Context) error {
			return s.Release(ctx, api.ReleaseRequest{Scope: scope, Key: "release", Token: tokens["release"]})
		}},
		{"abandon", func(ctx context.Context) error {
			return s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: "abandon", Token: tokens["abandon"]})
		}},
		{"release_holder", func(ctx context.Context) error {
			_, err := s.ReleaseHolder(ctx, scope, "holder", "H0123456789abcdef0123456")
			return err
		}},
		{"delete", func(ctx context.Context) error { _, err := s.Delete(ctx, scope, "delete"); return err }},
		{"force_release", func(ctx context.Context) error { _, err := s.ForceRelease(ctx, scope, "force"); return err }},
		{"bump_edge_epoch", func(ctx context.Context) error { _, err := s.BumpEdgeEpoch(ctx); return err }},
	}
	for _, o := range ops {
		t.Run("paused/"+o.op, func(t *testing.T) {
			// A generous bound: the answer must come from WAIT's
			// timeout, not from this deadline.
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := o.run(octx)
			if !errors.Is(err, ErrNotDurable) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s with the replica stopped: %v, want ErrNotDurable (and ErrUnavailable)", o.op, err)
			}
			if octx.Err() != nil {
				t.Fatalf("%s answered only at the context's deadline", o.op)
			}
			if n := obs.get(func(c *counts) int { return c.shortfalls[o.op] }); n != 1 {
				t.Errorf("shortfalls[%s] = %d, want 1", o.op, n)
			}
		})
	}
	// Reads do not wait.
	if _, err := s.Get(ctx, scope, "ok", false); err != nil {
		t.Fatalf("get with the replica stopped: %v", err)
	}
	if _, err := s.EdgeEpoch(ctx); err != nil {
		t.Fatalf("edge epoch with the replica stopped: %v", err)
	}

	// A re-run on another connection (another client: another pool)
	// changes nothing; its WAIT must still cover the first run's write.
	// (Redis 7.0 sets every connection's WAIT offset to the master's after
	// any command, so here this holds even without the scripts' same-value
	// rewrite; WAIT is documented to count the connection's own writes,
	// which the rewrite makes true on any version.)
	if err := s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "rerun", Token: tokens["rerun"], Response: api.StoredResponse{Status: 200}}); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("complete: %v, want ErrNotDurable", err)
	}
	other := newDurableStore(t, master.Addr(), d, Observer{})
	if err := other.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "rerun", Token: tokens["rerun"], Response: api.StoredResponse{Status: 200}}); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("complete re-run on another connection, the replica stopped: %v, want ErrNotDurable", err)
	}

	replica.Resume()
	// Once the replica is back, the retried calls are acknowledged.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := other.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "rerun", Token: tokens["rerun"], Response: api.StoredResponse{Status: 200}})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotDurable) || time.Now().After(deadline) {
			t.Fatalf("complete re-run after the replica resumed: %v", err)
		}
	}
	if st, _ := rc.HGet(ctx, s.RecordKey(scope, "rerun"), "st").Result(); st != "c" {
		t.Fatalf("the replica's record %q after an acknowledged re-run", st)
	}
	if got := obs.get(func(c *counts) int { return c.retries["complete"] }); got != 0 {
		t.Errorf("a shortfall was retried %d times; it must not be (the script ran)", got)
	}
}

// TestDurableReady: N replicas wanted, fewer online: not ready, saying why.
func TestDurableReady(t *testing.T) {
	master := redistest.Start(t)
	ctx := testCtx(t)
	for _, tt := range []struct {
		name string
		d    Durability
		want string // "" ready
	}{
		{"not durable", Durability{}, ""},
		{"one replica wanted, none", Durability{Replicas: 1}, "0 replicas online"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newDurableStore(t, master.Addr(), tt.d, Observer{})
			err := s.Ready(ctx)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var nr *NotReadyError
			if !errors.As(err, &nr) || !errors.Is(err, ErrNotReady) || !strings.Contains(nr.Reason, tt.want) ||
				nr.Node != master.Addr() || strings.Contains(nr.Reason, master.Addr()) {
				t.Fatalf("Ready = %v (%+v), want a NotReadyError naming %s, reason %q without the address", err, nr, master.Addr(), tt.want)
			}
		})
	}
	replica := redistest.StartReplica(t, master)
	if err := newDurableStore(t, master.Addr(), Durability{Replicas: 1}, Observer{}).Ready(ctx); err != nil {
		t.Fatalf("one replica: %v", err)
	}
	if err := newDurableStore(t, master.Addr(), Durability{Replicas: 2}, Observer{}).Ready(ctx); !errors.Is(err, ErrNotReady) {
		t.Fatalf("two wanted, one online: %v", err)
	}
	// The replica answers as one: a store pointed at it is not ready.
	err := newDurableStore(t, replica.Addr(), Durability{}, Observer{}).Ready(ctx)
	var nr *NotReadyError
	if !errors.As(err, &nr) || !strings.Contains(nr.Reason, `"slave"`) {
		t.Fatalf("Ready on a replica = %v", err)
	}
}

// TestDurableFsyncRefusedOnRedis70: WAITAOF needs Redis 7.2; this machine
// runs 7.0, which must be refused at the start with a clear error, and an
// operation that tries it anyway fails (never an unacknowledged success).
func TestDurableFsyncRefusedOnRedis70(t *testing.T) {
	master := redistest.Start(t, "--appendonly", "yes")
	ctx := testCtx(t)
	s := newDurableStore(t, master.Addr(), Durability{Fsync: true}, Observer{})
	_, err := s.CheckDurability(ctx)
	if err == nil || !strings.Contains(err.Error(), "WAITAOF (Redis 7.2 or later)") {
		t.Fatalf("CheckDurability with fsync on Redis 7.0: %v", err)
	}
	if _, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("reserve with WAITAOF on Redis 7.0: %v, want ErrUnavailable", err)
	}
	// appendonly no with fsync is refused too (checked after WAITAOF, so
	// only the first reason shows on 7.0): covered by the note without it.
	plain := redistest.Start(t)
	notes, err := newDurableStore(t, plain.Addr(), Durability{Replicas: 1}, Observer{}).CheckDurability(ctx)
	if err != nil || len(notes) != 1 {
		t.Fatalf("WAIT mode on appendonly no: notes %q err %v", notes, err)
	}
}

// TestRetriesCounted: a READONLY node (a master demoted by a failover) is
// retried by the store, each retry counted with its reason, up to
// MaxRetries; the retry that meets a master again succeeds, and a retried
// reserve keeps its holder (one record, acquired once).
func TestRetriesCounted(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	admin := srv.Client()
	demote := func() {
		if err := admin.Do(ctx, "replicaof", "127.0.0.1", "1").Err(); err != nil {
			t.Fatal(err)
		}
	}
	promote := func() {
		if err := admin.Do(ctx, "replicaof", "no", "one").Err(); err != nil {
			t.Error(err)
		}
	}

	for _, tt := range []struct {
		name       string
		maxRetries int
		wantErr    bool
		retries    int
		heal       bool // promote on the first retry
	}{
		{"none", -1, true, 0, false},
		{"spent", 3, true, 3, false},
		{"healed on the first retry", 3, false, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obs := newCounts()
			if tt.heal {
				var once sync.Once
				obs.onRetry = func(string, string) { once.Do(promote) }
			}
			c, err := NewClient("redis://"+srv.Addr(), ClientOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := New(c, Options{MaxRetries: tt.maxRetries, Observer: obs.observer()})
			demote()
			defer promote()
			key := "k-" + strings.ReplaceAll(tt.name, " ", "-")
			res, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "fp", Holder: "Hretry0123456789abcdef01"})
			if tt.wantErr != (err != nil) {
				t.Fatalf("reserve: %+v %v, want error %v", res, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("reserve: %v, want ErrUnavailable", err)
			}
			if err == nil && (res.Outcome != api.Acquired || res.Token != "1.Hretry0123456789abcdef01") {
				t.Fatalf("reserve after a retry: %+v", res)
			}
			if got := obs.get(func(c *counts) int { return c.retries["reserve"] }); got != tt.retries {
				t.Errorf("retries = %d, want %d", got, tt.retries)
			}
			if got := obs.get(func(c *counts) int { return c.reasons["readonly"] }); got != tt.retries {
				t.Errorf("readonly retries = %d, want %d (reasons %v)", got, tt.retries, obs.reasons)
			}
		})
	}
}

func TestRetryReason(t *testing.T) {
	for _, tt := range []struct {
		err    error
		reason string
	}{
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "reset"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "refused"},
		// Redis's own replies (READONLY…) are typed by go-redis; they are
		// exercised against a real server in TestRetriesCounted.
		{errors.New("ERR Error running script"), ""},
		{fmt.Errorf("read: %w", io.EOF), "eof"},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, "timeout"},
		{context.DeadlineExceeded, ""},
		{redis.ErrClosed, ""},
	} {
		got, ok := retryReason(tt.err)
		if got != tt.reason || ok != (tt.reason != "") {
			t.Errorf("retryReason(%v) = %q %v, want %q", tt.err, got, ok, tt.reason)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestParseReplication(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n" +
		"slave0:ip=127.0.0.1,port=7001,state=online,offset=100,lag=0\r\n" +
		"slave1:ip=127.0.0.1,port=7002,state=online,offset=90,lag=7\r\n" +
		"slave2:ip=127.0.0.1,port=7003,state=wait_bgsave,offset=0,lag=0\r\n" +
		"slave_read_only:1\r\nmaster_repl_offset:100\r\n"
	r := parseReplication(info)
	if r.role != "master" || r.online != 1 {
		t.Fatalf("parseReplication = %+v, want master with 1 online (lagging and syncing ones do not count)", r)
	}
	if got := clientInfoField("id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:6390 fd=8 name=", "laddr"); got != "127.0.0.1:6390" {
		t.Errorf("laddr = %q", got)
	}
}

// TestNodeReportStandalone: the report names the node that ran the script
// (CLIENT INFO laddr), once, and nothing when not asked for.
func TestNodeReportStandalone(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	ctx, rep := WithNodeReport(testCtx(t))
	res, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, api.ReleaseRequest{Scope: "s", Key: "k", Token: res.Token}); err != nil {
		t.Fatal(err)
	}
	if got := rep.Addrs(); len(got) != 1 || got[0] != srv.Addr() {
		t.Fatalf("node report %v, want [%s]", got, srv.Addr())
	}
	if _, _, err := s.List(ctx, api.StateInProgress, "", "", 10); err != nil {
		t.Fatal(err)
	}
	if rep.String() != srv.Addr() {
		t.Fatalf("after List: %q", rep.String())
	}
}

// TestTopologyWatcher: making another server the master the client
// reaches (here: the address changes under a restart on a replica that is
// promoted) is not needed; the watcher's comparison is what is tested:
// the same master over several looks is no failover, a node that answers
// as a replica is not a topology, and a master again is.
func TestTopologyWatcher(t *testing.T) {
	srv := redistest.Start(t)
	obs := newCounts()
	c, err := NewClient("redis://"+srv.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New(c, Options{Observer: obs.observer()})
	ctx := testCtx(t)
	top, err := s.Topology(ctx)
	if err != nil || top != srv.Addr() {
		t.Fatalf("Topology = %q %v, want %s", top, err, srv.Addr())
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if n := s.WatchTopology(wctx, 20*time.Millisecond, nil); n != 0 || obs.failovers != 0 {
		t.Fatalf("a steady master counted %d failovers", n)
	}
	if err := srv.Client().Do(ctx, "replicaof", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer srv.Client().Do(ctx, "replicaof", "no", "one")
	if _, err := s.Topology(ctx); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Topology on a replica: %v", err)
	}

	// The watcher's comparison, on a scripted sequence of looks: a failed
	// look changes nothing, a master replaced while unreachable counts.
	seq := []string{"a", "a", "!", "b", "b", "!", "!", "c", "c"}
	var mu sync.Mutex
	i := 0
	done := make(chan struct{})
	s.topology = func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if i >= len(seq) {
			if i == len(seq) {
				close(done)
				i++
			}
			return "c", nil
		}
		v := seq[i]
		i++
		if v == "!" {
			return "", errors.New("unreachable")
		}
		return v, nil
	}
	wctx2, cancel2 := context.WithCancel(ctx)
	got := make(chan int, 1)
	go func() { got <- s.WatchTopology(wctx2, time.Millisecond, nil) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the watcher did not look through the sequence")
	}
	cancel2()
	if n := <-got; n != 2 || obs.get(func(c *counts) int { return c.failovers }) != 2 {
		t.Fatalf("failovers %d (observer %d), want 2 (a→b, b→c)", n, obs.failovers)
	}
}
