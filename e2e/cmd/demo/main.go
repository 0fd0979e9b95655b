// Command demo runs idemgate's local stack in the foreground (make demo):
// Redis, the control plane, the demo upstream and a gateway running
// build/idempotency.wasm with the demo policy (POST /payments with
// on_indeterminate: reconcile, the control plane asking the demo upstream
// about a lost answer), until Ctrl-C or SIGTERM,
// then stops everything it started. A component that dies (try kill -9 on
// the control plane) is named and restarted after -restart-delay (5 s, time
// to try a request by hand) while the others keep running; one that keeps
// dying (more than 5 times a minute) stops the demo.
//
// Addresses come from IDEM_GATEWAY_ADDR [127.0.0.1:8080],
// IDEM_CONTROLPLANE_ADDR [127.0.0.1:8081], IDEM_UPSTREAM_ADDR
// [127.0.0.1:9000] and IDEM_REDIS_ADDR [unset: a private redis-server
// when one is installed, else the embedded dev-only store, said loudly].
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
	"github.com/idemgate/idemgate/e2e/upstream"
)

// envVars name the variable that sets each address, for error messages.
var envVars = map[string]string{
	stack.RoleGateway:      "IDEM_GATEWAY_ADDR",
	stack.RoleControlPlane: "IDEM_CONTROLPLANE_ADDR",
	stack.RoleUpstream:     "IDEM_UPSTREAM_ADDR",
	stack.RoleRedis:        "IDEM_REDIS_ADDR",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	buildDir := fs.String("build", "build", "directory holding the binaries and idempotency.wasm (make build)")
	policy := fs.String("policy", "plugin/policy/testdata/demo.json", "the plugin configuration")
	logDir := fs.String("logs", filepath.Join("build", "logs"), "where each component logs (emptied at start)")
	embedded := fs.Bool("embedded-redis", false, "use the embedded dev-only store even when redis-server is installed (ignored with IDEM_REDIS_ADDR)")
	// Long enough by default to try a request by hand while a component is down.
	restartDelay := fs.Duration("restart-delay", 5*time.Second, "how long a component that died stays down before its restart")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	cfg := stack.Config{
		BinDir:           *buildDir,
		LogDir:           *logDir,
		Wasm:             filepath.Join(*buildDir, "idempotency.wasm"),
		Policy:           *policy,
		GatewayAddr:      env("IDEM_GATEWAY_ADDR", "127.0.0.1:8080"),
		ControlPlaneAddr: env("IDEM_CONTROLPLANE_ADDR", "127.0.0.1:8081"),
		UpstreamAddr:     env("IDEM_UPSTREAM_ADDR", "127.0.0.1:9000"),
		RedisAddr:        getenv("IDEM_REDIS_ADDR"),
		EmbeddedRedis:    *embedded,
		Log:              slog.New(slog.NewTextHandler(stderr, nil)),
		Supervise:        true,
		RestartBackoff:   *restartDelay,
		Notify:           func(e stack.Event) { fmt.Fprintf(stderr, "demo: %v\n", e) },
	}
	// A fresh directory: the private Redis keeps its records in it, and a
	// new demo should not replay the last one's payments.
	if err := os.RemoveAll(cfg.LogDir); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}

	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	st, err := stack.Start(startCtx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "demo: %s\n", explain(err))
		return 1
	}
	defer st.Stop()
	if st.Gateway() == stack.GatewayHost {
		fmt.Fprintln(stderr, "demo: envoy is not on PATH: the gateway is the local proxy-wasm host (e2e/host), running the same module")
	}
	if st.RedisEmbedded() {
		warnEmbedded(stderr, st.RedisAddr())
	}
	printWelcome(stdout, cfg, st)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "demo: stopping")
		return 0
	case err := <-st.Failed():
		// Only a component that keeps dying ends up here.
		fmt.Fprintf(stderr, "demo: %v\ndemo: stopping the rest\n", err)
		return 1
	}
}

// warnEmbedded says, where it cannot be missed, that the records live in
// this process's memory only.
func warnEmbedded(w io.Writer, addr string) {
	bar := strings.Repeat("!", 78)
	fmt.Fprintf(w, `
%s
!! WARNING: Redis here is the EMBEDDED DEV-ONLY STORE (miniredis), served by
!! this demo process on %s, because redis-server is not installed
!! (or -embedded-redis was given).
!! Records are in memory only and LOST ON EXIT. It is not Redis: no
!! persistence, no Cluster, no replication. For anything but trying the demo,
!! %s,
!! or set IDEM_REDIS_ADDR.
%s

`, bar, addr, stack.RedisInstallHint, bar)
}

// explain turns the stack's errors into what to do about them.
func explain(err error) string {
	var inUse *stack.AddrInUseError
	if errors.As(err, &inUse) {
		v := envVars[inUse.Role]
		return fmt.Sprintf("%v\ndemo: set %s to a free address, e.g. %s=127.0.0.1:18080 make demo", err, v, v)
	}
	return err.Error()
}

func printWelcome(w io.Writer, cfg stack.Config, st *stack.Stack) {
	gw := "http://" + cfg.GatewayAddr
	pid := func(role string) string {
		switch p := st.Pid(role); {
		case p != 0:
			return fmt.Sprintf("pid %d", p)
		case role == stack.RoleRedis && st.RedisEmbedded():
			return "in the demo's process"
		}
		return "not started by the demo"
	}
	fmt.Fprintf(w, `
idemgate demo is up (Ctrl-C stops it all)
  gateway        %s   (%s, %s, policy %s)
  control plane  http://%s   (%s)
  upstream       http://%s   (%s; executions: curl http://%s/__executions)
  redis          %s   (%s)

Try it:

  # 1. first call: the upstream executes it (201)
  curl -i %s/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: "order-1"' \
       -H 'Content-Type: application/json' -d '{"amount":1000,"currency":"EUR"}'

  # 2. retry, re-serialized: replayed at the edge (Idempotent-Replayed: true), not executed again
  curl -i %s/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: "order-1"' \
       -H 'Content-Type: application/json' -d '{ "currency": "EUR", "amount": 1000.0 }'

  # 3. same key, another payload: 422 problem+json
  curl -i %s/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: "order-1"' \
       -H 'Content-Type: application/json' -d '{"amount":2000,"currency":"EUR"}'

  # 4. the upstream executes, then drops the connection: the answer is lost (5xx)
  curl -i %s/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: "order-2"' \
       -H 'Content-Type: application/json' -d '{"amount":500,"currency":"EUR"}' -H '%s: 1'

  # 5. retry without the header: within a second, 409 + Retry-After (the control plane is asking
  #    the upstream whether order-2 ran: POST http://%s/__idempotency/{attempt});
  #    a moment later, the payment of 4. replayed (Idempotent-Replayed: true), executed once
  curl -i %s/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: "order-2"' \
       -H 'Content-Type: application/json' -d '{"amount":500,"currency":"EUR"}'

  # 6. faults: kill -9 any component's pid; the demo names it and restarts it
  #    %v later while the others keep running. With the control plane down,
  #    2. still replays from the gateway's edge cache; a new key gets 503 + Retry-After.

Logs:
`, gw, st.Gateway(), pid(stack.RoleGateway), cfg.Policy, cfg.ControlPlaneAddr, pid(stack.RoleControlPlane),
		cfg.UpstreamAddr, pid(stack.RoleUpstream), cfg.UpstreamAddr, st.RedisKind(), pid(stack.RoleRedis), gw, gw, gw,
		gw, upstream.HeaderDrop, cfg.UpstreamAddr, gw, cfg.RestartBackoff)
	files := st.LogFiles()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s  %s\n", n, files[n])
	}
	fmt.Fprintln(w)
}
