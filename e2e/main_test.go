// The end-to-end suite: black-box HTTP against a gateway running
// build/idempotency.wasm in front of the demo upstream, with faults
// performed through the Faults interface.
//
// `go test ./e2e/` starts the local stack (package e2e/stack) on free
// loopback ports from the binaries in build/ (`make build`). With
// IDEM_E2E_TARGET=docker it runs against the Docker Compose stack instead
// (IDEM_GATEWAY_ADDR, IDEM_UPSTREAM_ADDR; faults through `docker compose`).
package e2e

import (
	"context"
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
	policyFile = "testdata/policy.json"
	routesFile = "testdata/routes.json"
	buildDir   = "../build"
)

// Faults are the failures the suite injects. *stack.Stack implements them
// for the local stack, dockerFaults for Docker Compose.
type Faults interface {
	KillControlPlane(ctx context.Context) error
	StartControlPlane(ctx context.Context) error
	RestartControlPlane(ctx context.Context) error
	RestartRedis(ctx context.Context) error
}

// target is what the suite runs against.
type target struct {
	gateway  string // base URL, http://host:port
	upstream string // base URL of the demo upstream (for /__executions)
	faults   Faults
	logs     func() string // the components' logs, shown when a test fails
}

var tgt target

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var cleanup func()
	var err error
	switch mode := os.Getenv("IDEM_E2E_TARGET"); mode {
	case "", "local":
		tgt, cleanup, err = startLocal()
	case "docker":
		tgt, cleanup, err = dockerTarget()
	default:
		err = fmt.Errorf("IDEM_E2E_TARGET=%q: want local (the default) or docker", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

// startLocal starts the local stack on free loopback ports. Missing
// binaries are a failure that says to run make build, never a skip.
func startLocal() (target, func(), error) {
	logDir, err := os.MkdirTemp("", "idemgate-e2e-")
	if err != nil {
		return target{}, nil, err
	}
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = stack.FreeAddr(); err != nil {
			return target{}, nil, err
		}
	}
	cfg := stack.Config{
		BinDir:           buildDir,
		LogDir:           logDir,
		Wasm:             filepath.Join(buildDir, "idempotency.wasm"),
		Policy:           policyFile,
		Routes:           routesFile,
		GatewayAddr:      addrs[0],
		ControlPlaneAddr: addrs[1],
		UpstreamAddr:     addrs[2],
		Gateway:          os.Getenv("IDEM_E2E_GATEWAY"), // "" = Envoy when on PATH, else the local host
		Log:              slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, cfg)
	if err != nil {
		return target{}, nil, fmt.Errorf("starting the local stack (logs in %s): %w", logDir, err)
	}
	fmt.Fprintf(os.Stderr, "e2e: local stack up: gateway %s (%s), control plane %s, upstream %s, %s; logs in %s\n",
		addrs[0], st.Gateway(), addrs[1], addrs[2], st.RedisKind(), logDir)
	logs := func() string {
		files := st.LogFiles()
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		var out string
		for _, n := range names {
			out += fmt.Sprintf("----- end of %s (%s)\n%s\n", n, files[n], st.Tail(n, 4096))
		}
		return out
	}
	cleanup := func() {
		st.Stop()
		select {
		case err := <-st.Failed():
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		default:
		}
		_ = os.RemoveAll(logDir)
	}
	return target{gateway: "http://" + addrs[0], upstream: "http://" + addrs[2], faults: st, logs: logs}, cleanup, nil
}
