package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// TestCluster runs the store's semantics on a Redis Cluster of three
// masters with a replica each, built with redis-cli --cluster create; one
// cluster serves all subtests, the fault ones (slot migrations, then kills
// of a master) last.
func TestCluster(t *testing.T) {
	cl := redistest.StartClusterWithReplicas(t, 3, 1)
	c, err := NewClient("redis-cluster://"+strings.Join(cl.Addrs(), ","), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("NewClient(redis-cluster://…) gave %T, want *redis.ClusterClient", c)
	}
	s := New(c, Options{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	t.Run("StateMachine", func(t *testing.T) { runScenarios(t, s) })
	t.Run("ConcurrentReserveOneKey", func(t *testing.T) { runConcurrentReserves(t, s, 200) })
	t.Run("KeysSpreadOverSlots", func(t *testing.T) { testSpread(t, s, cl.Client()) })
	t.Run("ListEveryMaster", func(t *testing.T) { runList(t, s) })
	t.Run("EdgeEpoch", func(t *testing.T) {
		ctx := testCtx(t)
		start, err := s.EdgeEpoch(ctx)
		if err != nil || start <= 0 {
			t.Fatalf("epoch at start: %d %v, want one started from Redis's clock", start, err)
		}
		if n, err := s.BumpEdgeEpoch(ctx); err != nil || n != start+1 {
			t.Fatalf("bump: %d %v, want %d", n, err, start+1)
		}
		if n, err := s.EdgeEpoch(ctx); err != nil || n != start+1 {
			t.Fatalf("epoch: %d %v, want %d", n, err, start+1)
		}
	})
	t.Run("ReconcileIndexTags", func(t *testing.T) { testIndexTags(t, s, cl.Client()) })
	t.Run("Reconcile", func(t *testing.T) { runReconcile(t, c) })
	t.Run("ScriptsTouchOneSlot", func(t *testing.T) { testScriptsTouchOneSlot(t, cl, s) })
	if !t.Run("MigrationUnderLoad", func(t *testing.T) {
		for _, m := range durableModes {
			t.Run(m.name, func(t *testing.T) { testMigrationUnderLoad(t, cl, m.durable) })
		}
	}) {
		t.Fatal("a failed migration may leave its slot half moved: the failover subtests need the cluster whole")
	}
	t.Run("FailoverUnderLoad", func(t *testing.T) {
		for _, m := range durableModes {
			t.Run(m.name, func(t *testing.T) { testFailoverUnderLoad(t, cl, m.durable, false) })
		}
	})
	t.Run("FailoverReplicaLagging", func(t *testing.T) {
		for _, m := range durableModes {
			t.Run(m.name, func(t *testing.T) { testFailoverUnderLoad(t, cl, m.durable, true) })
		}
	})
}

// testSpread reserves many keys and checks that each record's Redis key
// hashes by its tag, that the records fall on many slots, and that every
// master holds some.
func testSpread(t *testing.T, s *Store, cc *redis.ClusterClient) {
	ctx := testCtx(t)
	const n = 60
	slots := map[int64]int{}
	for i := 0; i < n; i++ {
		scope, key := fmt.Sprintf("tenant-%d", i%3), fmt.Sprintf("key-{%d}", i)
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: key, Fingerprint: "F"})
		if err != nil || r.Outcome != api.Acquired {
			t.Fatalf("reserve %s/%s: %+v %v", scope, key, r, err)
		}
		if err := s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: key, Token: r.Token, Response: responseFor(200)}); err != nil {
			t.Fatalf("complete %s/%s: %v", scope, key, err)
		}
		rk := s.RecordKey(scope, key)
		slot, err := cc.ClusterKeySlot(ctx, rk).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The slot is the tag's: '{' and '}' inside scope and key did not
		// move it.
		tag := rk[strings.IndexByte(rk, '{')+1 : len(rk)-1]
		tagSlot, err := cc.ClusterKeySlot(ctx, tag).Result()
		if err != nil {
			t.Fatal(err)
		}
		if slot != tagSlot {
			t.Fatalf("key %q on slot %d, its tag %q on %d", rk, slot, tag, tagSlot)
		}
		slots[slot]++
	}
	if len(slots) < n*3/4 {
		t.Errorf("%d records on only %d slots, want them spread", n, len(slots))
	}

	var mu sync.Mutex
	perMaster := map[string]int64{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, s.opt.Prefix+":*").Result()
		if err != nil {
			return fmt.Errorf("KEYS on %s: %w", m.Options().Addr, err)
		}
		mu.Lock()
		perMaster[m.Options().Addr] += int64(len(keys))
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(perMaster) != 3 {
		t.Fatalf("saw %d masters, want 3", len(perMaster))
	}
	for addr, k := range perMaster {
		if k == 0 {
			t.Errorf("master %s holds no record: %v", addr, perMaster)
		}
	}
	t.Logf("%d records on %d slots; per master %v", n, len(slots), perMaster)
}

// testIndexTags checks the table of reconcile index tags against Redis:
// every slot's index key hashes to that slot (CLUSTER KEYSLOT), and a
// record's index is in the record's slot.
func testIndexTags(t *testing.T, s *Store, cc *redis.ClusterClient) {
	ctx := testCtx(t)
	node, err := cc.MasterForKey(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	pipe := node.Pipeline()
	cmds := make([]*redis.IntCmd, clusterSlots)
	for slot := range cmds {
		k := s.slotIndexKey(slot)
		if n := len(slotTags()[slot]); n < 1 || n > 4 {
			t.Fatalf("slot %d has tag %q, want 1 to 4 characters", slot, slotTags()[slot])
		}
		cmds[slot] = pipe.ClusterKeySlot(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for slot, c := range cmds {
		if int(c.Val()) != slot {
			t.Fatalf("index key %q of slot %d is on slot %d", s.slotIndexKey(slot), slot, c.Val())
		}
	}
	// What one ClaimDue costs when nothing is due: every slot's index
	// read, a pipeline per master (logged, not asserted).
	start := time.Now()
	if _, err := s.ClaimDue(ctx, 64, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClaimDue over %d slot indexes took %v", clusterSlots, time.Since(start))
	for i := 0; i < 50; i++ {
		rk := s.RecordKey("tags", fmt.Sprintf("key-{%d}", i))
		a, err1 := cc.ClusterKeySlot(ctx, rk).Result()
		b, err2 := cc.ClusterKeySlot(ctx, s.reconcileIndexKey(rk)).Result()
		if err1 != nil || err2 != nil || a != b {
			t.Fatalf("record %q on slot %d, its index %q on %d (%v %v)", rk, a, s.reconcileIndexKey(rk), b, err1, err2)
		}
	}
}
