package chaos

import (
	"context"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
	"github.com/idemgate/idemgate/internal/redistest"
)

// The failover storm (issue 11, "measure the window"): two sides — a
// control plane in durable mode (--durable-replicas 2) and one without —
// each with its own gateway and upstream, on one Sentinel topology (a
// master, two replicas, three sentinels) under different --redis-prefix,
// so that both see exactly the same faults. Clients load both while the
// injector, again and again, makes the master die while its replicas lag:
// the replicas are frozen (SIGSTOP), their links cut, load goes on for a
// random 50–300 ms, the master is killed -9, the replicas continue
// (SIGCONT), Sentinel promotes one, and the old node rejoins as a replica.
// Each upstream's ledger counts executions per key.
//
// The durable side must show no double execution; the other side's count
// is the window the durable mode closes, reported, not asserted.

var stormFailovers = flag.Int("chaos.failovers", 5, "failover storm: forced failovers of the Sentinel master under load (make chaos: 50)")

// The two sides' flags. The durable timeout is the contract's default,
// written out so that the summary names the configuration it measured.
var (
	durableArgs = []string{"--redis-prefix", "fo-durable", "--durable-replicas", "2", "--durable-timeout", "250ms"}
	plainArgs   = []string{"--redis-prefix", "fo-plain"}
)

func TestFailoverStorm(t *testing.T) {
	n, clients := *stormFailovers, *measureClients
	if n < 1 || clients < 1 {
		t.Fatalf("-chaos.failovers %d, -chaos.measure-clients %d: each must be positive", n, clients)
	}
	names := []string{"durable", "plain"}
	showSideLogsOnFailure(t, names)
	sen := redistest.StartSentinel(t, redistest.SentinelOptions{Replicas: 2, Sentinels: 3})
	sides := startSides(t, names, func(name string) stack.Config {
		args := plainArgs
		if name == "durable" {
			args = durableArgs
		}
		return stack.Config{RedisURL: sen.URL(), ControlPlaneArgs: args}
	})
	durable, plain := sides[0], sides[1]
	run := random(t, "")[:8]
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))

	stopLoad := runLoad(t, sides, clients, run)

	// The canary: during the first failover one key goes through each
	// side while the replicas are cut off. The plain side's is executed
	// and acknowledged by the master alone, so after the promotion it
	// must execute again: the proof that this harness does lose
	// acknowledged writes, without which the durable side's 0 would mean
	// nothing. The durable side's cannot be acknowledged (no replica can
	// answer WAIT): it must not execute then, and executes once after.
	canary := pair{client: 999, key: "canary-" + run}
	start := time.Now()
	for i := range n {
		sleepRand(rng, 300*time.Millisecond, 1500*time.Millisecond)
		failover(t, sen, rng, func() {
			if i != 0 {
				return
			}
			a := send(t, stormPayment(plain.gateway, hostMeasure, canary, nil, 5*time.Second))
			if a.err != nil || a.status != 201 || a.id() == "" {
				t.Fatalf("the plain side's canary, replicas cut off: %v; want 201 executed (the master alone acknowledges)", a)
			}
			plain.log.saw(canary, a.id(), a)
			if a := send(t, stormPayment(durable.gateway, hostMeasure, canary, nil, 5*time.Second)); a.err == nil && a.id() != "" {
				t.Errorf("the durable side's canary executed while no replica could acknowledge its reserve: %v", a)
			}
		})
		if i == 0 {
			settleCanary(t, plain, canary)
			settleCanary(t, durable, canary)
		}
	}
	took := time.Since(start)
	stopLoad()
	finalPass(t, sides)

	l := ledger(t, plain.upstream)
	if got := l[canary.label()]; got != 2 {
		t.Errorf("the plain side's canary executed %d times, want 2: the failover did not lose the write the master alone acknowledged, so this run cannot show the window", got)
	}
	if got := ledger(t, durable.upstream)[canary.label()]; got != 1 {
		t.Errorf("the durable side's canary executed %d times, want 1", got)
	}

	d, p := durable.tally(t, run, canary.key), plain.tally(t, run, canary.key)
	t.Logf("failover storm, durable side: %v; keys settled %v; answers %v", d, durable.log.settled, durable.log.counts)
	t.Logf("failover storm, plain side: %v; keys settled %v; answers %v", p, plain.log.settled, plain.log.counts)
	for i, s := range p.doubles {
		if i == 10 {
			break
		}
		t.Logf("failover storm, plain side, executed more than once: %s", s)
	}
	t.Logf("SUMMARY failover storm: %d Sentinel failovers (kill -9 of the master, its 2 replicas frozen and cut off for 50–300 ms before) in %v; %d clients per side; durable off: %v; durable on (%s): %v",
		n, took.Round(time.Second), clients, p, strings.Join(durableArgs[2:], " "), d)
	assertNoDoubles(t, durable, d)
	assertNoCross(t, plain)
	assertStacksHealthy(t, sides)
	if d.keys == 0 || p.keys == 0 {
		t.Errorf("keys: durable %d, plain %d: the load did not run", d.keys, p.keys)
	}
}

// failover makes the current master die while its replicas lag, and waits
// until a replica is promoted and the old node is back as a replica in
// sync: the replicas are frozen (SIGSTOP) and their links cut on the
// master (CLIENT KILL TYPE replica), between() runs, load goes on for a
// random 50–300 ms, the master is killed -9, the replicas continue.
//
// Why the cut: on loopback a frozen replica still receives every byte the
// master writes (its kernel socket buffer fills while it sleeps, and
// outlives the killed master), so freezing alone loses nothing; a master
// that dies on another machine, or behind a partition, takes its unsent
// replication stream with it. Cutting the links is that: whatever the
// master acknowledges from then on exists on the master only.
func failover(t *testing.T, sen *redistest.Sentinel, rng *rand.Rand, between func()) {
	t.Helper()
	old := sen.Settle(t)
	var replicas []*redistest.Server
	for _, n := range sen.Nodes() {
		if n != old && n.Running() {
			replicas = append(replicas, n)
		}
	}
	for _, r := range replicas {
		r.Pause()
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			for _, r := range replicas {
				r.Resume()
			}
		}
	}
	defer resume()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cut, err := old.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Int()
	if err != nil || cut != len(replicas) {
		t.Fatalf("cutting the replicas' links on master %s: %d cut (%v), want %d", old.Addr(), cut, err, len(replicas))
	}
	between()
	sleepRand(rng, 50*time.Millisecond, 300*time.Millisecond)
	old.Kill()
	resume()
	sen.WaitMaster(t, old.Addr(), time.Minute)
	sen.RejoinAsReplica(t, old)
	sen.WaitReplicasInSync(t, len(replicas))
}
