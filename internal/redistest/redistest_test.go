package redistest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartRestartStop(t *testing.T) {
	s := Start(t, "--maxmemory", "16mb")
	ctx := context.Background()
	c := s.Client()

	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.ConfigGet(ctx, "maxmemory").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if got["maxmemory"] != "16777216" {
		t.Errorf("maxmemory = %q, want 16777216 (extra args not passed)", got["maxmemory"])
	}

	s.Restart()
	// The pooled connection died with the old process; the client must
	// reconnect on its own. One retry covers the dead pooled connection.
	var n int64
	for i := 0; i < 3; i++ {
		if n, err = c.Exists(ctx, "k").Result(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("EXISTS after restart: %v", err)
	}
	if n != 0 {
		t.Errorf("key survived a restart with persistence off")
	}

	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Errorf("server still answers after Stop")
	}
	s.Stop() // idempotent
}

func TestStartTwoServersDistinctPorts(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers on one address %s", a.Addr())
	}
	for _, s := range []*Server{a, b} {
		if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
			t.Errorf("Addr %q is not loopback", s.Addr())
		}
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("len(Addrs) = %d, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc := c.Client()
	// Keys on many slots: every write must land, which needs all masters.
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("key-%d", i)
		if err := cc.Set(ctx, k, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	// Each master must hold some of them: the slots are spread.
	var mu sync.Mutex
	sizes := map[string]int64{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if err != nil {
			return fmt.Errorf("DBSIZE on %s: %w", m.Options().Addr, err)
		}
		mu.Lock()
		sizes[m.Options().Addr] = n
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 {
		t.Fatalf("ForEachMaster saw %d masters, want 3: %v", len(sizes), sizes)
	}
	for addr, n := range sizes {
		if n == 0 {
			t.Errorf("master %s holds no key of 50: slots not spread (%v)", addr, sizes)
		}
	}
}

// fatalTB records the first Fatalf and ends the goroutine, as testing does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalMessage runs start on a fatalTB in its own goroutine and returns
// the message of its first Fatalf ("" if it did not fail).
func fatalMessage(t testing.TB, start func(testing.TB)) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		start(f)
	}()
	<-done
	return f.msg
}

func TestMissingBinaryFailsWithInstallHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // an empty directory: nothing found
	t.Setenv(UnitEnv, "")
	tests := []struct {
		name  string
		start func(testing.TB)
		want  string
	}{
		{"server", func(tb testing.TB) { Start(tb) }, "redis-server not found"},
		{"cluster", func(tb testing.TB) { StartCluster(tb, 3) }, "redis-cli not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := fatalMessage(t, tt.start)
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, "apt-get install -y redis-server") {
				t.Errorf("failure message %q, want %q and the install hint", msg, tt.want)
			}
		})
	}
}

// TestUnitRunStartsNoServer: under make unit (UnitEnv set) every way to
// start Redis fails the test before looking for a binary, so that a
// Redis test put in unit's lists fails loudly instead of passing where
// redis-server happens to be installed.
func TestUnitRunStartsNoServer(t *testing.T) {
	t.Setenv(UnitEnv, "1")
	for _, tt := range []struct {
		name  string
		start func(testing.TB)
	}{
		{"server", func(tb testing.TB) { Start(tb) }},
		{"cluster", func(tb testing.TB) { StartCluster(tb, 3) }},
		{"sentinel", func(tb testing.TB) { StartSentinel(tb, SentinelOptions{}) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := fatalMessage(t, tt.start)
			if !strings.Contains(msg, UnitEnv+" is set") || !strings.Contains(msg, "make test") {
				t.Errorf("failure message %q, want it to name %s and make test", msg, UnitEnv)
			}
		})
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f, "--no-such-directive", "1")
	}()
	<-done
	// redis-server explains a bad directive in its output; the failure
	// must carry it.
	if !strings.Contains(f.msg, "cannot start redis-server") || !strings.Contains(f.msg, "no-such-directive") {
		t.Errorf("failure message %q lacks the server's own explanation", f.msg)
	}
}

func TestKillPauseResumeRelaunch(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	if !s.Running() {
		t.Fatal("Running() = false right after Start")
	}

	s.Pause()
	if !s.Running() {
		t.Error("a paused server must count as running")
	}
	// Stopped, the process still holds its socket (the kernel accepts the
	// connection) but nothing answers.
	if err := ping(s.Addr()); err == nil {
		t.Error("a paused server answered PING")
	}
	s.Resume()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}

	s.Kill()
	if s.Running() {
		t.Error("Running() = true after Kill")
	}
	if err := ping(s.Addr()); err == nil {
		t.Error("a killed server answered PING")
	}
	s.Kill() // no-op on a dead server

	s.Relaunch(t, "--maxmemory", "8mb")
	if !s.Running() {
		t.Fatal("Running() = false after Relaunch")
	}
	got, err := s.Client().ConfigGet(ctx, "maxmemory").Result()
	if err != nil {
		t.Fatalf("CONFIG GET after Relaunch: %v", err)
	}
	if got["maxmemory"] != "8388608" {
		t.Errorf("maxmemory = %q after Relaunch, want 8388608 (extra args not passed)", got["maxmemory"])
	}
	// Restart keeps the Relaunch arguments.
	s.Restart()
	if got, err = s.Client().ConfigGet(ctx, "maxmemory").Result(); err != nil {
		t.Fatalf("CONFIG GET after Restart: %v", err)
	}
	if got["maxmemory"] != "8388608" {
		t.Errorf("maxmemory = %q after Restart, want the Relaunch value 8388608", got["maxmemory"])
	}
}

func TestStopPausedServer(t *testing.T) {
	s := Start(t)
	s.Pause()
	done := make(chan struct{})
	go func() { s.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopTimeout + 5*time.Second):
		t.Fatal("Stop of a paused server did not return")
	}
	if s.Running() {
		t.Error("Running() = true after Stop of a paused server")
	}
}

func TestStartReplicaAndRepoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := Start(t), Start(t)
	r := StartReplica(t, a)
	if err := a.Client().Set(ctx, "k", "from-a", 0).Err(); err != nil {
		t.Fatalf("SET on master: %v", err)
	}
	if err := poll(10*time.Second, func(ctx context.Context) error {
		v, err := r.Client().Get(ctx, "k").Result()
		if err != nil {
			return err
		}
		if v != "from-a" {
			return fmt.Errorf("GET k = %q", v)
		}
		return nil
	}); err != nil {
		t.Fatalf("replica never got the master's write: %v", err)
	}
	// WaitReplicated covers every earlier write: the replica holds them.
	for i := 0; i < 100; i++ {
		if err := a.Client().Set(ctx, fmt.Sprintf("bulk-%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a.WaitReplicated(t, 1)
	if n, err := r.Client().DBSize(ctx).Result(); err != nil || n != 102 { // k, marker, 100 bulk
		t.Errorf("DBSIZE on the replica after WaitReplicated = %d, %v; want 102", n, err)
	}
	if err := r.Client().Set(ctx, "x", "1", 0).Err(); err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Errorf("write on a replica: err = %v, want READONLY", err)
	}

	// A relaunch with another --replicaof wins over the one StartReplica
	// passed: the node now follows b, and a's data is gone from it.
	r.Kill()
	r.Relaunch(t, "--replicaof", "127.0.0.1", fmt.Sprint(b.Port()))
	if err := waitLinkUp(r.Addr(), b.Addr(), 10*time.Second); err != nil {
		t.Fatalf("relaunched replica not following b: %v", err)
	}
	if n, err := r.Client().Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS k on the repointed replica = %d, %v; want 0 (a full sync from b)", n, err)
	}
}

func TestParseInfo(t *testing.T) {
	got := parseInfo("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nslave0:ip=127.0.0.1,port=1,state=online\r\n\r\n")
	want := map[string]string{"role": "slave", "master_host": "127.0.0.1", "slave0": "ip=127.0.0.1,port=1,state=online"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseInfo = %v, want %v", got, want)
	}
}
