// Command load runs the burst of issue 12 through the local stack — two
// gateways of two VMs each by default — and prints what it cost: each
// VM's linear memory before, at its peak and after, reserve calls/s at
// the control plane, the originals' p50/p99 and shed counts. `make load`
// runs it at full size (1000 slow originals, 2000 waiters on 10 keys).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/idemgate/idemgate/e2e/load"
	idempolicy "github.com/idemgate/idemgate/plugin/policy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "build", "directory holding the binaries and idempotency.wasm")
	policy := flag.String("policy", "e2e/testdata/load.json", "plugin configuration (needs the wait route of load.WaitHost)")
	gateways := flag.Int("gateways", 2, "gateways (local hosts)")
	workers := flag.Int("workers", 2, "VMs per gateway")
	originals := flag.Int("originals", 1000, "concurrent slow requests, one key each")
	waitKeys := flag.Int("wait-keys", 10, "keys the waiters wait on")
	waiters := flag.Int("waiters", 2000, "duplicates waiting (on_in_progress: wait)")
	delay := flag.Duration("delay", 5*time.Second, "the upstream's delay for every original")
	routeTimeout := flag.Duration("route-timeout", time.Minute, "the gateways' route timeout (Envoy's default, 15 s, would cut the wait keys' originals short on a busy machine)")
	waitDelay := flag.Duration("wait-delay", 20*time.Second, "the upstream's delay for the wait keys' originals (0: -delay); longer than -delay so that the waiters, which arrive among the originals, find their keys in progress")
	bodyPad := flag.Int("body-pad", 50_000, "bytes of padding in each original's body")
	headerPad := flag.Int("header-pad", 30_000, "bytes of an extra request header of each original")
	waitBodyPad := flag.Int("wait-body-pad", 1000, "the same for the wait keys (their originals and waiters)")
	waitHeaderPad := flag.Int("wait-header-pad", 1000, "the same for the wait keys")
	countReserves := flag.Bool("count-reserves", false, "count reserve calls per key through a proxy before the control plane (adds a hop)")
	keep := flag.Bool("keep-logs", false, "keep the components' logs (printed path)")
	flag.Parse()

	logDir, err := os.MkdirTemp("", "idemgate-load-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(logDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, err := load.StartFleet(ctx, load.FleetConfig{
		BinDir: *bin, LogDir: logDir, Policy: *policy, Gateways: *gateways, Workers: *workers,
		CountReserves: *countReserves, GatewayArgs: []string{"-route-timeout", routeTimeout.String()},
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer f.Stop()
	var id [4]byte
	rand.Read(id[:])
	p := f.Params
	p.Originals, p.WaitKeys, p.Waiters, p.Delay, p.WaitDelay = *originals, *waitKeys, *waiters, *delay, *waitDelay
	p.WaitBodyPad, p.WaitHeaderPad = *waitBodyPad, *waitHeaderPad
	p.BodyPad, p.HeaderPad, p.SettleWaiters, p.Run = *bodyPad, *headerPad, 500*time.Millisecond, hex.EncodeToString(id[:])
	fmt.Printf("load: %d gateways × %d VMs; %d originals (upstream delay %v), %d waiters on %d keys; originals' bodies +%d B, headers +%d B, the wait keys' +%d B, +%d B; %s; logs %s\n",
		*gateways, *workers, p.Originals, p.Delay, p.Waiters, p.WaitKeys, p.BodyPad, p.HeaderPad, p.WaitBodyPad, p.WaitHeaderPad, f.Stack.RedisKind(), logDir)
	raw, err := os.ReadFile(*policy)
	if err != nil {
		return err
	}
	pol, err := policyParse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *policy, err)
	}
	rep, err := load.Run(ctx, p)
	if err != nil {
		return err
	}
	print(os.Stdout, rep, f, load.MemoryBound(pol))
	return nil
}

// policyParse is the filter's own parser: the bound is a formula of the
// limits it reads.
var policyParse = idempolicy.Parse

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func known(ok bool) string {
	if ok {
		return ""
	}
	return " (absent: not in this build)"
}

func print(w io.Writer, r load.Report, f *load.Fleet, bound uint64) {
	fmt.Fprintf(w, "\nburst took %v\n\n", r.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "gateway\tVM\tbefore\tpeak\tafter\tbound %s\t\n", mib(bound))
	for _, v := range r.VMs {
		verdict := "under"
		if v.End > bound {
			verdict = "OVER"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t\n", v.Gateway+1, v.Worker, mib(v.Before), mib(v.Peak), mib(v.End), verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
	kinds := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "%-14s statuses %v\n", k, r.Statuses[k])
	}
	fmt.Fprintf(w, "waiters replayed %d; upstream executions %d\n", r.Replayed, r.Executions)
	fmt.Fprintf(w, "originals p50 %v, p99 %v\n", r.OriginalP50.Round(time.Millisecond), r.OriginalP99.Round(time.Millisecond))
	fmt.Fprintf(w, "reserve calls at the control plane: %.0f (%.0f/s over the burst)\n", r.Reserves, r.ReservesPerSecond())
	fmt.Fprintf(w, "polls (idemgate.polls, all gateways): %d%s\n", r.Polls, known(r.PollsKnown))
	fmt.Fprintf(w, "shed by the gateways (idemgate.shed_memory): %d%s\n", r.GatewayShed, known(r.GatewayShedKnown))
	fmt.Fprintf(w, "shed by the control plane (idemgate_shed_total): %.0f%s\n", r.ControlShed, known(r.ControlShedKnown))
	if f.Counter != nil {
		keys := make([]string, 0, len(r.WaitWindow))
		for k := range r.WaitWindow {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "wait key %s: %d reserve calls, its original took %v\n", k, f.Counter.Reserves(k), r.WaitWindow[k].Round(time.Millisecond))
		}
	}
}
