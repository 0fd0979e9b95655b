package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterWithReplicas checks the topology helpers on one 3×1 cluster:
// the layout, a kill -9 failover that keeps what was replicated, the old
// master's return as a replica, and a slot migration through its phases.
func TestClusterWithReplicas(t *testing.T) {
	c := StartClusterWithReplicas(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if got := len(c.Servers()); got != 6 {
		t.Fatalf("%d nodes, want 6", got)
	}
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3", len(masters))
	}
	for _, m := range masters {
		info, err := m.Client().Info(ctx, "replication").Result()
		if err != nil {
			t.Fatal(err)
		}
		if f := parseInfo(info); f["connected_slaves"] != "1" {
			t.Errorf("master %s has %s replicas, want 1", m.Addr(), f["connected_slaves"])
		}
	}

	t.Run("KillMasterForSlot", func(t *testing.T) {
		slot := keySlot(ctx, t, c, "{kill}")
		old := c.MasterForSlot(t, slot)
		rs := c.ReplicasOf(t, old)
		if len(rs) != 1 {
			t.Fatalf("%s has replicas %v, want 1", old.Addr(), rs)
		}
		replica := rs[0]

		// Writes through the cluster client, then WaitReplicated: they
		// are on the replica before the kill, so the promoted node must
		// have them.
		const n = 50
		for i := 0; i < n; i++ {
			if err := c.Client().Set(ctx, fmt.Sprintf("{kill}-%d", i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		c.WaitReplicated(t, old, 1)

		gotOld, promoted := c.KillMasterForSlot(t, slot)
		if gotOld != old || old.Running() {
			t.Fatalf("killed %s (running %v), want %s down", gotOld.Addr(), old.Running(), old.Addr())
		}
		if promoted != replica {
			t.Fatalf("promoted %s, want %s, the killed master's replica", promoted.Addr(), replica.Addr())
		}
		if m := c.MasterForSlot(t, slot); m != promoted {
			t.Fatalf("MasterForSlot = %s after failover, want %s", m.Addr(), promoted.Addr())
		}
		for i := 0; i < n; i++ {
			v, err := promoted.Client().Get(ctx, fmt.Sprintf("{kill}-%d", i)).Result()
			if err != nil || v != strconv.Itoa(i) {
				t.Fatalf("promoted master lost {kill}-%d: %q %v", i, v, err)
			}
		}

		c.RejoinAsReplica(t, old)
		info, err := old.Client().Info(ctx, "replication").Result()
		if err != nil {
			t.Fatal(err)
		}
		if f := parseInfo(info); f["role"] != "slave" || f["master_port"] != strconv.Itoa(promoted.Port()) {
			t.Fatalf("rejoined node: role=%s master_port=%s, want a replica of %s", f["role"], f["master_port"], promoted.Addr())
		}
		// The rejoined node lost its data (no persistence) and resynced.
		want, _ := promoted.Client().DBSize(ctx).Result()
		if got, err := old.Client().DBSize(ctx).Result(); err != nil || got != want || got < n {
			t.Fatalf("rejoined node holds %d keys (%v), its master %d", got, err, want)
		}
		if m := c.MasterForSlot(t, slot); m != promoted {
			t.Fatalf("slot %d went back to %s on rejoin", slot, m.Addr())
		}
	})

	t.Run("MigrateSlot", func(t *testing.T) {
		slot := keySlot(ctx, t, c, "{mig}")
		src := c.MasterForSlot(t, slot)
		var to *Server
		for _, m := range c.Masters(t) {
			if m != src {
				to = m
				break
			}
		}
		const n = 40
		cc := c.Client()
		for i := 0; i < n; i++ {
			if err := cc.Set(ctx, fmt.Sprintf("{mig}-%d", i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		count := func(s *Server) int64 {
			t.Helper()
			k, err := s.Client().ClusterCountKeysInSlot(ctx, slot).Result()
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		srcID, _ := nodeID(ctx, src)
		toID, _ := nodeID(ctx, to)
		var phases []string
		c.MigrateSlot(t, slot, to, func(phase string) {
			phases = append(phases, phase)
			onSrc, onTo := count(src), count(to)
			switch phase {
			case "migrating":
				if onSrc != n || onTo != 0 {
					t.Errorf("migrating: %d keys on the source, %d on the target, want %d and 0", onSrc, onTo, n)
				}
				nodes, _ := src.Client().ClusterNodes(ctx).Result()
				if !strings.Contains(nodes, fmt.Sprintf("[%d->-%s]", slot, toID)) {
					t.Errorf("source does not show slot %d migrating:\n%s", slot, nodes)
				}
				nodes, _ = to.Client().ClusterNodes(ctx).Result()
				if !strings.Contains(nodes, fmt.Sprintf("[%d-<-%s]", slot, srcID)) {
					t.Errorf("target does not show slot %d importing:\n%s", slot, nodes)
				}
				// A key the source does not hold is asked of the target.
				err := src.Client().Get(ctx, "{mig}-absent").Err()
				if err == nil || !strings.HasPrefix(err.Error(), "ASK ") {
					t.Errorf("GET of an absent key on the migrating source: %v, want ASK", err)
				}
			case "moved-some":
				if onSrc == 0 || onTo == 0 || onSrc+onTo != n {
					t.Errorf("moved-some: %d keys on the source, %d on the target, want both some of %d", onSrc, onTo, n)
				}
			}
			// The cluster client reads every key, wherever it is now.
			for i := 0; i < n; i++ {
				if v, err := cc.Get(ctx, fmt.Sprintf("{mig}-%d", i)).Result(); err != nil || v != strconv.Itoa(i) {
					t.Errorf("%s: GET {mig}-%d = %q %v", phase, i, v, err)
				}
			}
		})
		if strings.Join(phases, ",") != "migrating,moved-some" {
			t.Errorf("between called with %v, want migrating then moved-some", phases)
		}
		if onSrc, onTo := count(src), count(to); onSrc != 0 || onTo != n {
			t.Errorf("after: %d keys on the source, %d on the target, want 0 and %d", onSrc, onTo, n)
		}
		if m := c.MasterForSlot(t, slot); m != to {
			t.Errorf("slot %d on %s after migration, want %s", slot, m.Addr(), to.Addr())
		}
		// The source now redirects for good.
		if err := src.Client().Get(ctx, "{mig}-0").Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED ") {
			t.Errorf("GET on the old owner: %v, want MOVED", err)
		}
		for i := 0; i < n; i++ {
			if v, err := cc.Get(ctx, fmt.Sprintf("{mig}-%d", i)).Result(); err != nil || v != strconv.Itoa(i) {
				t.Errorf("after: GET {mig}-%d = %q %v", i, v, err)
			}
		}
	})
}

func keySlot(ctx context.Context, t *testing.T, c *Cluster, key string) int {
	t.Helper()
	slot, err := c.Masters(t)[0].Client().ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(slot)
}
