// Command bench-e2e measures the local stack under load: edge replays,
// misses (execute + store) and plain pass-through through the gateway,
// and the same requests sent straight to the upstream, in one run, and
// prints requests/s, p50 and p99 with ratios to direct-to-upstream.
// `make bench-e2e` runs it; BENCHMARKS.md keeps its results.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/idemgate/idemgate/e2e/loadgen"
	"github.com/idemgate/idemgate/e2e/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "build", "directory holding the binaries and idempotency.wasm")
	policy := flag.String("policy", "plugin/policy/testdata/demo.json", "plugin configuration")
	conns := flag.Int("c", 16, "concurrent clients")
	dur := flag.Duration("d", 5*time.Second, "duration of each scenario")
	gateway := flag.String("gateway", stack.GatewayHost, "host (the local proxy-wasm host) or envoy")
	flag.Parse()

	logDir, err := os.MkdirTemp("", "idemgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(logDir)
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = stack.FreeAddr(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{
		BinDir: *bin, LogDir: logDir, Wasm: filepath.Join(*bin, "idempotency.wasm"), Policy: *policy,
		GatewayAddr: addrs[0], ControlPlaneAddr: addrs[1], UpstreamAddr: addrs[2],
		Gateway: *gateway, LogLevel: "warn",
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("start the stack (logs in %s): %w", logDir, err)
	}
	defer st.Stop()

	fmt.Printf("gateway: %s; %d clients, %v per scenario; %s\n", st.Gateway(), *conns, *dur, st.RedisKind())
	results, err := loadgen.RunAll(context.Background(), loadgen.Target{
		Gateway: "http://" + addrs[0], Upstream: "http://" + addrs[2],
	}, *conns, *dur)
	if err != nil {
		return err
	}
	loadgen.Print(os.Stdout, results)
	return nil
}
