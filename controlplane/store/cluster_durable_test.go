package store

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// clusterNodes maps the test cluster's addresses to node ids and clients.
type clusterNodes struct {
	ids     map[string]string
	clients map[string]*redis.Client
}

func newClusterNodes(t *testing.T, cl *redistest.Cluster) *clusterNodes {
	t.Helper()
	n := &clusterNodes{ids: map[string]string{}, clients: map[string]*redis.Client{}}
	for _, srv := range cl.Servers() {
		c := srv.Client()
		id, err := c.Do(testCtx(t), "cluster", "myid").Text()
		if err != nil {
			t.Fatal(err)
		}
		n.ids[srv.Addr()], n.clients[srv.Addr()] = id, c
	}
	return n
}

func (n *clusterNodes) other(than string) string {
	for a := range n.clients {
		if a != than {
			return a
		}
	}
	return ""
}

// startMigration sets slot IMPORTING on dst and MIGRATING on src, then
// moves keys (with MIGRATE) from src to dst.
func (n *clusterNodes) startMigration(t *testing.T, slot int64, src, dst string, keys ...string) {
	t.Helper()
	ctx := testCtx(t)
	if err := n.clients[dst].Do(ctx, "cluster", "setslot", slot, "importing", n.ids[src]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := n.clients[src].Do(ctx, "cluster", "setslot", slot, "migrating", n.ids[dst]).Err(); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(dst)
	for _, k := range keys {
		if err := n.clients[src].Migrate(ctx, host, port, k, 0, 5*time.Second).Err(); err != nil {
			t.Fatalf("MIGRATE %s: %v", k, err)
		}
	}
}

// finishMigration gives slot to dst on every node (dst first, as the
// Cluster specification asks).
func (n *clusterNodes) finishMigration(t *testing.T, slot int64, dst string) {
	t.Helper()
	ctx := testCtx(t)
	order := []string{dst}
	for a := range n.clients {
		if a != dst {
			order = append(order, a)
		}
	}
	for _, a := range order {
		if err := n.clients[a].Do(ctx, "cluster", "setslot", slot, "node", n.ids[dst]).Err(); err != nil {
			t.Fatalf("SETSLOT NODE on %s: %v", a, err)
		}
	}
}

// TestClusterRedirectsAndDurable: the store runs each script on the master
// of the record's slot itself (so that WAIT follows the script on the same
// connection) and so it must follow a slot that moved (MOVED) and a record
// already migrated out of a MIGRATING slot (ASK); in durable mode WAIT runs
// on the node that ran the script: here, with no replica in the cluster,
// WAIT 1 falls short and the operation answers ErrNotDurable.
func TestClusterRedirectsAndDurable(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c, err := NewClient("redis-cluster://"+strings.Join(cl.Addrs(), ","), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cc := c.(*redis.ClusterClient)
	obs, obsD := newCounts(), newCounts()
	s := New(c, Options{Observer: obs.observer()})
	sd := New(c, Options{Durable: Durability{Replicas: 1, Timeout: 50 * time.Millisecond}, Observer: obsD.observer()})
	nodes := newClusterNodes(t, cl)
	ctx := testCtx(t)
	const scope = "tenant-c"

	owner := func(key string) (string, int64) {
		rk := s.RecordKey(scope, key)
		m, err := cc.MasterForKey(ctx, rk)
		if err != nil {
			t.Fatal(err)
		}
		slot, err := cc.ClusterKeySlot(ctx, rk).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr, slot
	}

	t.Run("durable without replicas falls short on the owner", func(t *testing.T) {
		rctx, rep := WithNodeReport(ctx)
		_, err := sd.Reserve(rctx, api.ReserveRequest{Scope: scope, Key: "d1", Fingerprint: "fp"})
		if !errors.Is(err, ErrNotDurable) {
			t.Fatalf("reserve with WAIT 1 on a cluster without replicas: %v", err)
		}
		src, _ := owner("d1")
		if got := rep.String(); got != src {
			t.Fatalf("node report %q, want the slot's master %s", got, src)
		}
		if n := obsD.get(func(c *counts) int { return c.shortfalls["reserve"] }); n != 1 {
			t.Fatalf("shortfalls %d", n)
		}
		// The write stands on the master: the caller must treat it as
		// unknown (the filter releases by holder).
		if rec, err := s.Get(ctx, scope, "d1", false); err != nil || rec.State != api.StateInProgress {
			t.Fatalf("get: %+v %v", rec, err)
		}
		if err := sd.Ready(ctx); !errors.Is(err, ErrNotReady) {
			t.Fatalf("Ready, durable, no replicas: %v", err)
		}
		if err := s.Ready(ctx); err != nil {
			t.Fatalf("Ready, not durable: %v", err)
		}
	})

	t.Run("MOVED", func(t *testing.T) {
		res, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "m1", Fingerprint: "fp"})
		if err != nil {
			t.Fatal(err)
		}
		src, slot := owner("m1") // the client's slot map now names src
		dst := nodes.other(src)
		nodes.startMigration(t, slot, src, dst, s.RecordKey(scope, "m1"))
		nodes.finishMigration(t, slot, dst)

		rctx, rep := WithNodeReport(ctx)
		err = s.Complete(rctx, api.CompleteRequest{Scope: scope, Key: "m1", Token: res.Token, Response: api.StoredResponse{Status: 201}})
		if err != nil {
			t.Fatalf("complete after the slot moved: %v", err)
		}
		if got := rep.String(); got != dst {
			t.Fatalf("node report %q, want the new owner %s", got, dst)
		}
		if n := obs.get(func(c *counts) int { return c.reasons["moved"] }); n < 1 {
			t.Fatalf("no MOVED followed (reasons %v)", obs.reasons)
		}
		if st, err := nodes.clients[dst].HGet(ctx, s.RecordKey(scope, "m1"), "st").Result(); err != nil || st != "c" {
			t.Fatalf("record on the new owner: %q %v", st, err)
		}
		// Durable: the re-run lands on the new owner, whose WAIT falls
		// short.
		rctx, rep = WithNodeReport(ctx)
		err = sd.Complete(rctx, api.CompleteRequest{Scope: scope, Key: "m1", Token: res.Token, Response: api.StoredResponse{Status: 201}})
		if !errors.Is(err, ErrNotDurable) || rep.String() != dst {
			t.Fatalf("durable complete after the move: %v, node %q (want %s)", err, rep.String(), dst)
		}
	})

	t.Run("ASK", func(t *testing.T) {
		res, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "a1", Fingerprint: "fp"})
		if err != nil {
			t.Fatal(err)
		}
		src, slot := owner("a1")
		dst := nodes.other(src)
		nodes.startMigration(t, slot, src, dst, s.RecordKey(scope, "a1"))
		t.Cleanup(func() { nodes.finishMigration(t, slot, dst) })

		before := obs.get(func(c *counts) int { return c.reasons["ask"] })
		tries0 := obs.get(func(c *counts) int { return c.reasons["tryagain"] })
		rctx, rep := WithNodeReport(ctx)
		err = s.Complete(rctx, api.CompleteRequest{Scope: scope, Key: "a1", Token: res.Token, Response: api.StoredResponse{Status: 202}})
		if err != nil {
			t.Fatalf("complete of a record migrated out of a MIGRATING slot: %v", err)
		}
		// With the reconcile index in KEYS (absent: this slot files no
		// record) the importing node answers TRYAGAIN; the retry leaves
		// the index out and lands, once.
		if n := obs.get(func(c *counts) int { return c.reasons["tryagain"] }) - tries0; n != 1 {
			t.Fatalf("complete met %d TRYAGAIN, want 1 (then without the index)", n)
		}
		if got := rep.String(); got != dst {
			t.Fatalf("node report %q, want the importing node %s", got, dst)
		}
		if n := obs.get(func(c *counts) int { return c.reasons["ask"] }); n <= before {
			t.Fatalf("no ASK followed (reasons %v)", obs.reasons)
		}
		// The importing node holds it; the source does not.
		checkMigrated := func() {
			t.Helper()
			pipe := nodes.clients[dst].Pipeline()
			pipe.Do(ctx, "asking")
			st := pipe.HGet(ctx, s.RecordKey(scope, "a1"), "st")
			if _, err := pipe.Exec(ctx); err != nil || st.Val() != "c" {
				t.Fatalf("record on the importing node: %q %v", st.Val(), err)
			}
			if n, _ := nodes.clients[src].Exists(ctx, s.RecordKey(scope, "a1")).Result(); n != 0 {
				t.Fatal("the source still holds the migrated record")
			}
		}
		checkMigrated()
		// Durable: ASK, then WAIT on the importing node.
		rctx, rep = WithNodeReport(ctx)
		err = sd.Complete(rctx, api.CompleteRequest{Scope: scope, Key: "a1", Token: res.Token, Response: api.StoredResponse{Status: 202}})
		if !errors.Is(err, ErrNotDurable) || rep.String() != dst {
			t.Fatalf("durable complete during the migration: %v, node %q (want %s)", err, rep.String(), dst)
		}

		// A two-key script (record + fence) while the slot migrates: the
		// fence is absent, the record on the importing node, so Redis
		// answers TRYAGAIN (ASK, then TRYAGAIN with ASKING) until the
		// migration ends. The store retries it: here the migration is
		// finished at the seventh TRYAGAIN retry (each after an ASK: more
		// than maxRedirects in all), and the reserve answers.
		var once sync.Once
		tries := 0
		obs.mu.Lock()
		obs.onRetry = func(_, reason string) {
			if reason == "tryagain" {
				if tries++; tries == maxRedirects+2 {
					once.Do(func() { nodes.finishMigration(t, slot, dst) })
				}
			}
		}
		obs.mu.Unlock()
		defer func() { obs.mu.Lock(); obs.onRetry = nil; obs.mu.Unlock() }()
		// The completes above met TRYAGAIN once each at most: naming
		// the reconcile index, absent on the importing node, and retried
		// without it (call.optional).
		tryBefore := obs.get(func(c *counts) int { return c.reasons["tryagain"] })
		r2, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "a1", Fingerprint: "fp"})
		if err != nil || r2.Outcome != api.Completed || r2.Response.Status != 202 {
			t.Fatalf("reserve during the migration: %+v %v", r2, err)
		}
		if n := obs.get(func(c *counts) int { return c.reasons["tryagain"] }) - tryBefore; n != maxRedirects+2 {
			t.Fatalf("no TRYAGAIN retried (reasons %v): the test no longer shows what it means to", obs.reasons)
		}
	})

	t.Run("List names every master", func(t *testing.T) {
		rctx, rep := WithNodeReport(ctx)
		if _, _, err := s.List(rctx, api.StateInProgress, "", "", api.MaxListLimit); err != nil {
			t.Fatal(err)
		}
		if got := rep.Addrs(); len(got) != 3 {
			t.Fatalf("List reported %v, want the 3 masters", got)
		}
	})

	t.Run("topology is the set of masters", func(t *testing.T) {
		top, err := s.Topology(ctx)
		if err != nil || len(strings.Split(top, ",")) != 3 {
			t.Fatalf("Topology = %q %v", top, err)
		}
		for _, id := range nodes.ids {
			if !strings.Contains(top, id) {
				t.Fatalf("Topology %q lacks master %s", top, id)
			}
		}
	})

}
