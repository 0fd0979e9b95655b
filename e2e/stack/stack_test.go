package stack

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/upstream"
)

func TestProcCrashIsReportedStopIsNot(t *testing.T) {
	dir := t.TempDir()
	crashes := make(chan string, 4)
	p := &proc{name: "sleeper", bin: "/bin/sh", args: []string{"-c", "echo up; sleep 30"}, logPath: logPath(dir, "sleeper"), dir: dir,
		crashed: func(name string, err error) { crashes <- name + ": " + err.Error() }}
	up := func(n int) {
		for i := 0; i < 1000; i++ {
			if b, _ := os.ReadFile(p.logPath); strings.Count(string(b), "up") >= n {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("run %d never wrote to its log", n)
	}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	up(1)
	p.stop()
	if err := p.start(); err != nil {
		t.Fatalf("start again: %v", err)
	}
	up(2)
	_, done := p.running()
	p.mu.Lock()
	_ = p.cmd.Process.Kill() // not through p: an unexpected death
	p.mu.Unlock()
	<-done
	select {
	case c := <-crashes:
		if !strings.Contains(c, "sleeper") || !strings.Contains(c, "killed") {
			t.Errorf("crash report %q", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("crash not reported")
	}
	select {
	case c := <-crashes:
		t.Errorf("a stop was reported as a crash too: %q", c)
	default:
	}
}

func TestWaitReadyNotesAnEarlyExit(t *testing.T) {
	dir := t.TempDir()
	p := &proc{name: "quitter", bin: "/bin/sh", args: []string{"-c", "echo bad flag >&2; exit 2"}, logPath: logPath(dir, "quitter"), dir: dir}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.waitReady(ctx, func(context.Context) error { return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "bad flag") {
		t.Fatalf("err = %v, want the exit and the log's end", err)
	}
}

func writePolicy(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(`{"control_plane":{"cluster":"cp","authority":"cp","token":"0123456789abcdef"},"routes":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartRefusesBeforeStarting(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{BinControlPlane, BinUpstream, BinHost, "idempotency.wasm"} {
		if err := os.WriteFile(filepath.Join(bin, b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := func() string {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	base := Config{BinDir: bin, LogDir: t.TempDir(), Wasm: filepath.Join(bin, "idempotency.wasm"), Policy: writePolicy(t),
		GatewayAddr: free(), ControlPlaneAddr: free(), UpstreamAddr: free(), Gateway: GatewayHost}

	cfg := base
	cfg.ControlPlaneAddr = taken.Addr().String()
	_, err = Start(context.Background(), cfg)
	var inUse *AddrInUseError
	if !errors.As(err, &inUse) || inUse.Role != RoleControlPlane {
		t.Errorf("taken port: err = %v, want an AddrInUseError for the control plane", err)
	}

	cfg = base
	cfg.UpstreamAddr = cfg.GatewayAddr
	if _, err = Start(context.Background(), cfg); !errors.As(err, &inUse) || inUse.Role != RoleUpstream {
		t.Errorf("same address twice: err = %v, want an AddrInUseError for the upstream", err)
	}

	cfg = base
	cfg.BinDir = t.TempDir()
	var missing *MissingBinaryError
	if _, err = Start(context.Background(), cfg); !errors.As(err, &missing) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("no binaries: err = %v, want a MissingBinaryError saying make build", err)
	}
}

// A private redis-server keeps its records over a restart (append-only
// file), which is what the suite's "Redis restarted" case relies on.
func TestRedisServerRestartKeepsData(t *testing.T) {
	s := &Stack{cfg: Config{LogDir: t.TempDir()}, failed: make(chan error, 8)}
	s.log = slog.New(slog.DiscardHandler)
	bin := "redis-server"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := startRedis(ctx, s)
	if err != nil {
		t.Fatalf("%v (%s)", err, RedisInstallHint)
	}
	defer r.stop()
	if !strings.Contains(r.kind(), bin) {
		t.Fatalf("kind = %q, want the private %s", r.kind(), bin)
	}
	if got := resp(t, r.addr(), "SET k v\r\n"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if err := r.restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := resp(t, r.addr(), "GET k\r\n"); got != "$1" {
		t.Fatalf("GET after restart: %q, want the value kept", got)
	}
	select {
	case err := <-s.failed:
		t.Errorf("a restart was reported as a crash: %v", err)
	default:
	}
}

// resp sends one inline command and returns the first line of the answer.
func resp(t *testing.T, addr, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	n, _ := c.Read(b)
	return strings.SplitN(string(b[:n]), "\r\n", 2)[0]
}

func TestControlPlaneArgsRedisURLAndExtraFlags(t *testing.T) {
	pol := policyInfo{Cluster: "cp"}
	tests := []struct {
		name     string
		cfg      Config
		wantURL  string
		wantTail []string
	}{
		{"address", Config{RedisAddr: "127.0.0.1:7000"}, "redis://127.0.0.1:7000", nil},
		{"URL wins over the address", Config{RedisAddr: "127.0.0.1:7000", RedisURL: "redis-sentinel://127.0.0.1:1,127.0.0.1:2/idemgate"},
			"redis-sentinel://127.0.0.1:1,127.0.0.1:2/idemgate", nil},
		{"extra flags come last", Config{RedisAddr: "127.0.0.1:7000", ControlPlaneArgs: []string{"--redis-prefix", "side-a", "--durable-replicas", "2"}},
			"redis://127.0.0.1:7000", []string{"--redis-prefix", "side-a", "--durable-replicas", "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// An address is PINGed at start (nothing listens here), a URL
			// is not: only the URL goes through startRedis.
			var be redisBackend = external(tc.cfg.RedisAddr)
			if tc.cfg.RedisURL != "" {
				var err error
				if be, err = startRedis(context.Background(), &Stack{cfg: tc.cfg}); err != nil {
					t.Fatal(err)
				}
			}
			args := controlPlaneArgs(tc.cfg, be.url(), pol)
			i := indexOf(args, "--redis-url")
			if i < 0 || i+1 >= len(args) || args[i+1] != tc.wantURL {
				t.Errorf("args %q: want --redis-url %s", args, tc.wantURL)
			}
			if len(tc.wantTail) > 0 && strings.Join(args[len(args)-len(tc.wantTail):], " ") != strings.Join(tc.wantTail, " ") {
				t.Errorf("args %q: want them to end with %q", args, tc.wantTail)
			}
		})
	}
}

func TestRedisURLKindHidesThePassword(t *testing.T) {
	k := externalURL("redis://u:hunter2@127.0.0.1:1/0").kind()
	if strings.Contains(k, "hunter2") || !strings.Contains(k, "127.0.0.1:1") {
		t.Errorf("kind %q: want the address and no password", k)
	}
	if err := externalURL("redis://127.0.0.1:1").restart(context.Background()); !errors.Is(err, ErrNotOurs) {
		t.Errorf("restart: %v, want ErrNotOurs", err)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestHostArgs(t *testing.T) {
	pol := policyInfo{Cluster: "cp"}
	base := Config{ControlPlaneAddr: "127.0.0.1:1", UpstreamAddr: "127.0.0.1:2", Wasm: "m.wasm", Policy: "p.json", LogLevel: "warn"}
	withAll := base
	withAll.CalloutAddr, withAll.GatewayWorkers, withAll.GatewayArgs = "127.0.0.1:3", 4, []string{"-route-timeout", "60s"}
	tests := []struct {
		name        string
		cfg         Config
		admin       string
		wantCluster string
		wantAdmin   string // "" means no -admin
		wantWorkers string // "" means no -workers
	}{
		{"defaults", base, "", "cp=127.0.0.1:1", "", ""},
		{"callouts elsewhere, admin, workers", withAll, "127.0.0.1:9", "cp=127.0.0.1:3", "127.0.0.1:9", "4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := hostArgs(tc.cfg, pol, "127.0.0.1:8", tc.admin)
			flag := func(name string) string {
				if i := indexOf(args, name); i >= 0 && i+1 < len(args) {
					return args[i+1]
				}
				return ""
			}
			if len(tc.cfg.GatewayArgs) > 0 && strings.Join(args[len(args)-2:], " ") != "-route-timeout 60s" {
				t.Errorf("args %q: want them to end with the extra flags", args)
			}
			if flag("-listen") != "127.0.0.1:8" || flag("-cluster") != tc.wantCluster || flag("-admin") != tc.wantAdmin || flag("-workers") != tc.wantWorkers {
				t.Errorf("args %q: want -listen 127.0.0.1:8 -cluster %s, -admin %q, -workers %q", args, tc.wantCluster, tc.wantAdmin, tc.wantWorkers)
			}
		})
	}
}

// The control plane asks the demo upstream about reconcile routes, with a
// credential the upstream is given too; NoReconcile leaves both out.
func TestControlPlaneReconcileTarget(t *testing.T) {
	pol := policyInfo{Cluster: "cp", Token: "t"}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantURL string // "" means no --reconcile-url
	}{
		{"default", Config{UpstreamAddr: "127.0.0.1:9"}, "http://127.0.0.1:9/__idempotency/{attempt}"},
		{"off", Config{UpstreamAddr: "127.0.0.1:9", NoReconcile: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := controlPlaneArgs(tc.cfg, "redis://127.0.0.1:1", pol)
			got := ""
			if i := indexOf(args, "--reconcile-url"); i >= 0 && i+1 < len(args) {
				got = args[i+1]
			}
			if got != tc.wantURL {
				t.Errorf("args %q: --reconcile-url %q, want %q", args, got, tc.wantURL)
			}
			cp := lastEnv(controlPlaneEnv(tc.cfg, pol, "cred"), "IDEMGATE_RECONCILE_TOKEN")
			up := lastEnv(upstreamEnv(tc.cfg, "cred"), upstream.TokenEnv)
			want := "cred"
			if tc.cfg.NoReconcile {
				want = ""
			}
			if cp != want || up != want {
				t.Errorf("credential: control plane %q, upstream %q; want both %q", cp, up, want)
			}
		})
	}
}

// lastEnv is name's value in env as exec.Cmd applies it (the last wins).
func lastEnv(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}
