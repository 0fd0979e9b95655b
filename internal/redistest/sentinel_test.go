package redistest

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelCycles is how many kill-master cycles TestSentinelCycles runs;
// raise it to measure (go test -run SentinelCycles -sentinel-cycles 50).
var sentinelCycles = flag.Int("sentinel-cycles", 3, "kill-master cycles in TestSentinelCycles")

func TestSentinelTopology(t *testing.T) {
	s := StartSentinel(t, SentinelOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if got := len(s.Nodes()); got != 3 {
		t.Fatalf("%d data nodes, want 3", got)
	}
	if got := len(s.SentinelAddrs()); got != 3 {
		t.Fatalf("%d sentinels, want 3", got)
	}
	want := "redis-sentinel://" + strings.Join(s.SentinelAddrs(), ",") + "/idemgate"
	if s.URL() != want || s.MasterName() != "idemgate" {
		t.Errorf("URL %q, MasterName %q; want %q, idemgate", s.URL(), s.MasterName(), want)
	}
	m := s.Master(t)
	if m != s.Nodes()[0] {
		t.Errorf("master %s, want the first node %s", m.Addr(), s.Nodes()[0].Addr())
	}

	// The client the control plane uses finds the master through the
	// sentinels and writes to it.
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName(), SentinelAddrs: s.SentinelAddrs()})
	defer fc.Close()
	if err := fc.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	s.WaitReplicasInSync(t, 2)
	for _, n := range s.Nodes() {
		if v, err := n.Client().Get(ctx, "before").Result(); err != nil || v != "1" {
			t.Errorf("GET before on %s = %q, %v; want 1 (replicated)", n.Addr(), v, err)
		}
	}

	old, nw := s.Failover(t)
	if old != m || nw == m {
		t.Fatalf("Failover: old %s new %s, master was %s", old.Addr(), nw.Addr(), m.Addr())
	}
	if r, err := role(ctx, nw.Addr()); err != nil || r != "master" {
		t.Errorf("new master's ROLE = %q, %v", r, err)
	}
	// The demoted master becomes a replica of the new one.
	if got := s.Settle(t); got != nw {
		t.Fatalf("Settle after the failover: master %s, want %s", got.Addr(), nw.Addr())
	}
	if err := waitLinkUp(old.Addr(), nw.Addr(), 10*time.Second); err != nil {
		t.Errorf("demoted master not a replica of the new one: %v", err)
	}

	// KillMaster's pieces, with a write between them: the killed node
	// comes back as a replica holding what the new master took meanwhile,
	// not as an empty master. One sentinel is down meanwhile: the other
	// two are a quorum, and the waits consult only them.
	downSentinel := s.Sentinels()[0]
	downSentinel.Kill()
	dead := s.Master(t)
	dead.Kill()
	nw2 := s.WaitMaster(t, dead.Addr(), 30*time.Second)
	if nw2 == dead {
		t.Fatalf("WaitMaster returned the killed node %s", dead.Addr())
	}
	if err := nw2.Client().Set(ctx, "meanwhile", "1", 0).Err(); err != nil {
		t.Fatalf("SET on the new master: %v", err)
	}
	s.RejoinAsReplica(t, dead)
	if r, err := role(ctx, dead.Addr()); err != nil || r != "slave" {
		t.Errorf("rejoined node's ROLE = %q, %v; want slave", r, err)
	}
	// The relaunched sentinel learns of the failover it missed.
	downSentinel.Relaunch(t)
	if got := s.Settle(t); got != nw2 {
		t.Errorf("after the sentinel's relaunch the master is %s, want %s", got.Addr(), nw2.Addr())
	}
	if v, err := dead.Client().Get(ctx, "meanwhile").Result(); err != nil || v != "1" {
		t.Errorf("GET meanwhile on the rejoined node = %q, %v; want the new master's write", v, err)
	}
	// Nothing written before the failovers (and replicated) was lost, on
	// any node, and the failover client follows the master.
	s.WaitReplicasInSync(t, 2)
	for _, n := range s.Nodes() {
		if v, err := n.Client().Get(ctx, "before").Result(); err != nil || v != "1" {
			t.Errorf("GET before on %s after two failovers = %q, %v; want 1", n.Addr(), v, err)
		}
	}
	var err error
	for i := 0; i < 50; i++ { // bounded: the client may still hold a dead connection
		if err = fc.Set(ctx, "after", "1", 0).Err(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("SET through the failover client after failovers: %v", err)
	}
	if v, err := nw2.Client().Get(ctx, "after").Result(); err != nil || v != "1" {
		t.Errorf("GET after on the new master %s = %q, %v: the failover client wrote elsewhere", nw2.Addr(), v, err)
	}
	if got := s.ConfigEpoch(t); got != 2 {
		t.Errorf("config epoch %d after two failovers", got)
	}
}

func TestSentinelCycles(t *testing.T) {
	s := StartSentinel(t, SentinelOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*sentinelCycles)*time.Minute)
	defer cancel()
	seen := map[string]bool{}
	start := time.Now()
	for i := 0; i < *sentinelCycles; i++ {
		m := s.Master(t)
		key := fmt.Sprintf("cycle-%d", i)
		if err := m.Client().Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("cycle %d: SET on master %s: %v", i, m.Addr(), err)
		}
		s.WaitReplicasInSync(t, 2)
		c0 := time.Now()
		old, nw := s.KillMaster(t)
		t.Logf("cycle %d: %s -> %s in %v", i, old.Addr(), nw.Addr(), time.Since(c0).Round(time.Millisecond))
		seen[nw.Addr()] = true
		for j := 0; j <= i; j++ {
			k := fmt.Sprintf("cycle-%d", j)
			if v, err := nw.Client().Get(ctx, k).Int(); err != nil || v != j {
				t.Fatalf("cycle %d: %s on new master %s = %d, %v; want %d", i, k, nw.Addr(), v, err, j)
			}
		}
	}
	if got := s.ConfigEpoch(t); got != int64(*sentinelCycles) {
		t.Errorf("config epoch %d after %d kills: a failover nobody caused happened", got, *sentinelCycles)
	}
	t.Logf("%d kill-master cycles in %v (%v each)", *sentinelCycles, time.Since(start).Round(time.Millisecond),
		(time.Since(start) / time.Duration(max(*sentinelCycles, 1))).Round(time.Millisecond))
	if *sentinelCycles >= 3 && len(seen) < 2 {
		t.Errorf("masters after %d cycles: %v; want the role to move between nodes", *sentinelCycles, seen)
	}
}
