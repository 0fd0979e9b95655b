// Package chaos is the chaos test of issue 10: the twelve ways the
// at-most-once promise broke, each as a named test on the local stack
// (real control plane binary, a private redis-server, the local proxy-wasm
// host running build/idempotency.wasm, the demo upstream), and a storm of
// clients, retries and faults. Execution counts come from the demo
// upstream's GET /__executions; every test asserts on what clients saw and
// what the upstream executed, never on timing.
//
// `go test ./e2e/chaos/` is part of `make test` (about a minute); `make
// chaos` runs the storm longer and wider through the -chaos.* flags.
package chaos

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
)

const (
	buildDir   = "../../build"
	policyFile = "../testdata/chaos.json"
	// token is control_plane.token in policyFile; the stack starts the
	// control plane with it, and the admin API accepts it (no admin token).
	token = "chaos-token-change-me"
	// cluster is control_plane.cluster in policyFile.
	cluster = "idemgate_controlplane"
)

// The storm's size. make chaos raises them.
var (
	stormClients = flag.Int("chaos.clients", 10, "storm: concurrent clients, each its own principal")
	stormKeys    = flag.Int("chaos.keys", 20, "storm: keys per client (the same key names for every client: distinct keys = clients x keys)")
	stormFor     = flag.Duration("chaos.duration", 15*time.Second, "storm: how long faults are injected while clients run")
)

// env is the running stack and what the tests need to reach around it.
type env struct {
	st           *stack.Stack
	gateway      string // base URL of the stack's gateway
	upstream     string // base URL of the demo upstream
	upstreamAddr string
	controlPlane string // host:port
	logDir       string
	policy       string // absolute path of policyFile
	bin          string // absolute path of buildDir
}

var stk env

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	cleanup, err := startStack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	defer cleanup()
	defer stopSharedGateways()
	return m.Run()
}

// startStack starts the local stack with the chaos policy. The gateway is
// always the local host: the harness starts more of them (a second
// gateway, one behind a reset-answering proxy, one with a small buffer)
// with its flags. Missing binaries fail the run ("run make build").
func startStack() (func(), error) {
	logDir, err := os.MkdirTemp("", "idemgate-chaos-")
	if err != nil {
		return nil, err
	}
	var addrs [4]string // gateway, control plane, upstream, and a closed port: the "dead" reconcile target
	for i := range addrs {
		if addrs[i], err = stack.FreeAddr(); err != nil {
			return nil, err
		}
	}
	bin, err := filepath.Abs(buildDir)
	if err != nil {
		return nil, err
	}
	pol, err := filepath.Abs(policyFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{
		BinDir:           bin,
		LogDir:           logDir,
		Wasm:             filepath.Join(bin, "idempotency.wasm"),
		Policy:           pol,
		GatewayAddr:      addrs[0],
		ControlPlaneAddr: addrs[1],
		UpstreamAddr:     addrs[2],
		Gateway:          stack.GatewayHost,
		// The default reconcile target is the demo upstream (the stack's
		// own); "dead" is a loopback port nothing listens on. A 1 s lookup
		// timeout keeps a killed control plane's claims short (twice the
		// timeout plus a second), so that the storm's keys resolve within
		// reconcileBound of the faults' end.
		ControlPlaneArgs: []string{"--reconcile-url", "dead=" + stack.ReconcileURL(addrs[3]), "--reconcile-timeout", "1s"},
		Log:              slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("starting the local stack (logs in %s): %w", logDir, err)
	}
	if st.RedisEmbedded() {
		st.Stop()
		return nil, fmt.Errorf("redis-server is not installed: the chaos test restarts a real Redis (%s)", stack.RedisInstallHint)
	}
	fmt.Fprintf(os.Stderr, "chaos: local stack up: gateway %s, control plane %s, upstream %s, %s; logs in %s\n",
		addrs[0], addrs[1], addrs[2], st.RedisKind(), logDir)
	stk = env{
		st: st, gateway: "http://" + addrs[0], upstream: "http://" + addrs[2], upstreamAddr: addrs[2],
		controlPlane: addrs[1], logDir: logDir, policy: pol, bin: bin,
	}
	return func() {
		st.Stop()
		select {
		case err := <-st.Failed():
			fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		default:
		}
		_ = os.RemoveAll(logDir)
	}, nil
}

// showLogsOnFailure prints the end of every log in the stack's log
// directory (the harness's gateways log there too) when t fails.
func showLogsOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		files, _ := filepath.Glob(filepath.Join(stk.logDir, "*.log"))
		sort.Strings(files)
		var out string
		for _, f := range files {
			out += fmt.Sprintf("----- end of %s\n%s\n", f, tail(f, 3072))
		}
		t.Log("component logs:\n" + out)
	})
}

func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
