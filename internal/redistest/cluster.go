package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterNodeTimeout is the cluster-node-timeout of a cluster with
	// replicas: a master silent for this long is suspected, and its
	// replica takes over about one to two timeouts later. Redis's default
	// of 15 s would make every failover test wait that long.
	clusterNodeTimeout = 1000 * time.Millisecond
	// clusterTimeout bounds every wait for the cluster to settle (join,
	// failover, rejoin, migration). They take a few seconds; this only
	// guards against hangs on a loaded machine.
	clusterTimeout = 60 * time.Second
	// migrateTimeout is MIGRATE's own timeout (ms) for one batch.
	migrateTimeout = 5000
)

// Cluster is a Redis Cluster owned by a test: masters, optionally with
// replicas, every node a redis-server process on loopback.
type Cluster struct {
	t        testing.TB
	servers  []*Server
	masters  int
	replicas int // per master

	mu     sync.Mutex
	client *redis.ClusterClient
}

// StartCluster starts masters redis-server processes (at least 3, which
// redis-cli requires) in cluster mode, joins them with
// `redis-cli --cluster create … --cluster-replicas 0`, and returns once every
// node reports cluster_state:ok. Everything is stopped when the test ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return startCluster(t, masters, 0, nil)
}

// StartClusterWithReplicas starts masters × (1 + replicasPerMaster) nodes,
// joins them with `redis-cli --cluster create … --cluster-replicas N`, and
// returns once every node reports cluster_state:ok and every replica is in
// sync with its master. The nodes run with a cluster-node-timeout of 1 s
// (failover within seconds), replica validity factor 0 (a replica always
// may take over: the test decides what it had) and replica migration off
// (the topology changes only when the test changes it); args are added to
// every node's command line.
func StartClusterWithReplicas(t testing.TB, masters, replicasPerMaster int, args ...string) *Cluster {
	t.Helper()
	if replicasPerMaster < 1 {
		t.Fatalf("redistest: StartClusterWithReplicas wants at least 1 replica per master, got %d", replicasPerMaster)
	}
	all := []string{
		"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
		"--cluster-replica-validity-factor", "0",
		"--cluster-allow-replica-migration", "no",
	}
	return startCluster(t, masters, replicasPerMaster, append(all, args...))
}

func startCluster(t testing.TB, masters, replicas int, args []string) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	cli := lookPath(t, "redis-cli")
	c := &Cluster{t: t, masters: masters, replicas: replicas}
	for i := 0; i < masters*(1+replicas); i++ {
		c.servers = append(c.servers, start(t, true, args))
	}
	t.Cleanup(func() {
		c.mu.Lock()
		cc := c.client
		c.client = nil
		c.mu.Unlock()
		if cc != nil {
			_ = cc.Close()
		}
	})

	cargs := append([]string{"--cluster", "create"}, c.Addrs()...)
	cargs = append(cargs, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, cargs...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(cargs, " "), err, out)
	}
	if err := poll(clusterTimeout, c.settled); err != nil {
		t.Fatalf("redistest: cluster not ready: %v\nredis-cli output:\n%s", err, out)
	}
	return c
}

// Addrs lists the nodes' host:port, masters and replicas, live or not.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Servers gives access to the nodes, e.g. to restart one.
func (c *Cluster) Servers() []*Server { return c.servers }

// Client returns a cluster client seeded with every node, created on first
// use and closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	}
	return c.client
}

// live are the nodes whose process runs.
func (c *Cluster) live() []*Server {
	var out []*Server
	for _, s := range c.servers {
		if s.Running() {
			out = append(out, s)
		}
	}
	return out
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, s := range c.servers {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// slotMap is one node's view of who serves which slots: sorted
// "start-end=master" ranges.
type slotMap []string

func (m slotMap) owner(slot int) string {
	for _, r := range m {
		rng, addr, _ := strings.Cut(r, "=")
		a, b, _ := strings.Cut(rng, "-")
		lo, _ := strconv.Atoi(a)
		hi, _ := strconv.Atoi(b)
		if slot >= lo && slot <= hi {
			return addr
		}
	}
	return ""
}

func (m slotMap) masters() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range m {
		_, addr, _ := strings.Cut(r, "=")
		if !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

func readSlotMap(ctx context.Context, s *Server) (slotMap, error) {
	//lint:ignore SA1019 the slot map as go-redis and the store read it (CLUSTER SLOTS), so tests wait for the map they will use
	slots, err := s.Client().ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS on %s: %w", s.Addr(), err)
	}
	var m slotMap
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			return nil, fmt.Errorf("CLUSTER SLOTS on %s: range %d-%d has no node", s.Addr(), r.Start, r.End)
		}
		m = append(m, fmt.Sprintf("%d-%d=%s", r.Start, r.End, r.Nodes[0].Addr))
	}
	sort.Strings(m)
	return m, nil
}

// agreedMap is the slot map every live node reports, or an error naming a
// node that disagrees or cannot answer.
func (c *Cluster) agreedMap(ctx context.Context) (slotMap, error) {
	var first slotMap
	var firstAddr string
	for _, s := range c.live() {
		m, err := readSlotMap(ctx, s)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first, firstAddr = m, s.Addr()
			continue
		}
		if strings.Join(m, " ") != strings.Join(first, " ") {
			return nil, fmt.Errorf("slot maps differ: %s sees %v, %s sees %v", firstAddr, first, s.Addr(), m)
		}
	}
	if first == nil {
		return nil, errors.New("no live node")
	}
	return first, nil
}

// settled says whether the cluster is at rest: every live node reports
// cluster_state:ok with all slots served and knows every node; all agree
// on the slot map, which names the expected number of masters, each of
// them live and answering ROLE master; every live replica's link to its
// master is up (its initial sync done).
func (c *Cluster) settled(ctx context.Context) error {
	for _, s := range c.live() {
		info, err := s.Client().ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", s.Addr(), err)
		}
		f := parseInfo(info)
		if f["cluster_state"] != "ok" || f["cluster_slots_ok"] != "16384" ||
			f["cluster_known_nodes"] != strconv.Itoa(len(c.servers)) {
			return fmt.Errorf("%s: cluster_state=%s slots_ok=%s known_nodes=%s", s.Addr(),
				f["cluster_state"], f["cluster_slots_ok"], f["cluster_known_nodes"])
		}
	}
	m, err := c.agreedMap(ctx)
	if err != nil {
		return err
	}
	masters := m.masters()
	if len(masters) != c.masters {
		return fmt.Errorf("slot map names %d masters %v, want %d", len(masters), masters, c.masters)
	}
	for _, addr := range masters {
		s := c.byAddr(addr)
		if s == nil || !s.Running() {
			return fmt.Errorf("slot map names %s, not a live node of this cluster", addr)
		}
	}
	for _, s := range c.live() {
		info, err := s.Client().Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication on %s: %w", s.Addr(), err)
		}
		f := parseInfo(info)
		isMaster := false
		for _, addr := range masters {
			isMaster = isMaster || addr == s.Addr()
		}
		switch {
		case isMaster && f["role"] != "master":
			return fmt.Errorf("%s serves slots but says role:%s", s.Addr(), f["role"])
		case !isMaster && f["role"] != "slave":
			return fmt.Errorf("%s serves no slot but says role:%s", s.Addr(), f["role"])
		case !isMaster && f["master_link_status"] != "up":
			return fmt.Errorf("replica %s: link to %s:%s is %s", s.Addr(), f["master_host"], f["master_port"], f["master_link_status"])
		}
	}
	return nil
}

// WaitSettled waits until the cluster is at rest (see StartClusterWithReplicas).
func (c *Cluster) WaitSettled(t testing.TB) {
	t.Helper()
	if err := poll(clusterTimeout, c.settled); err != nil {
		t.Fatalf("redistest: cluster did not settle: %v", err)
	}
}

// MasterForSlot returns the node that every live node names as the master
// of slot, waiting (bounded) while they disagree.
func (c *Cluster) MasterForSlot(t testing.TB, slot int) *Server {
	t.Helper()
	var owner *Server
	err := poll(clusterTimeout, func(ctx context.Context) error {
		m, err := c.agreedMap(ctx)
		if err != nil {
			return err
		}
		addr := m.owner(slot)
		if owner = c.byAddr(addr); owner == nil {
			return fmt.Errorf("slot %d is served by %q, not a node of this cluster", slot, addr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: master of slot %d: %v", slot, err)
	}
	return owner
}

// Masters returns the live masters of the agreed slot map, in address
// order.
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	var out []*Server
	err := poll(clusterTimeout, func(ctx context.Context) error {
		m, err := c.agreedMap(ctx)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, addr := range m.masters() {
			s := c.byAddr(addr)
			if s == nil {
				return fmt.Errorf("slot map names %s, not a node of this cluster", addr)
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: masters: %v", err)
	}
	return out
}

// ReplicasOf returns the live nodes that replicate m (INFO replication
// names m as their master), in address order.
func (c *Cluster) ReplicasOf(t testing.TB, m *Server) []*Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*Server
	for _, s := range c.live() {
		info, err := s.Client().Info(ctx, "replication").Result()
		if err != nil {
			t.Fatalf("redistest: INFO replication on %s: %v", s.Addr(), err)
		}
		if f := parseInfo(info); f["role"] == "slave" && f["master_port"] == strconv.Itoa(m.Port()) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr() < out[j].Addr() })
	return out
}

// WaitReplicated returns once n replicas of the Cluster master m have
// acknowledged everything m had written when it was called: as
// Server.WaitReplicated, with a marker key in one of m's own slots (any
// other key would be answered MOVED). It fails t after syncTimeout.
func (c *Cluster) WaitReplicated(t testing.TB, m *Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	sm, err := c.agreedMap(ctx)
	if err != nil {
		t.Fatalf("redistest: WaitReplicated on %s: %v", m.Addr(), err)
	}
	marker := ""
	for i := 0; marker == ""; i++ {
		if i > 10000 {
			t.Fatalf("redistest: WaitReplicated: %s serves no slot", m.Addr())
		}
		k := fmt.Sprintf("redistest:marker:%d", i)
		slot, err := m.Client().ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER KEYSLOT on %s: %v", m.Addr(), err)
		}
		if sm.owner(int(slot)) == m.Addr() {
			marker = k
		}
	}
	cl := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, PoolSize: 1, ReadTimeout: 5 * time.Second})
	defer cl.Close()
	conn := cl.Conn()
	defer conn.Close()
	if err := conn.Incr(ctx, marker).Err(); err != nil {
		t.Fatalf("redistest: marker write on %s: %v", m.Addr(), err)
	}
	// WAIT covers this connection's last write, the marker; the
	// replication stream is ordered, so it covers every earlier write.
	var got int
	for ctx.Err() == nil {
		if got, err = conn.Do(ctx, "WAIT", n, 1000).Int(); err == nil && got >= n {
			return
		}
	}
	t.Fatalf("redistest: %d of %d replicas of %s acknowledged the marker within %v (last error %v)", got, n, m.Addr(), syncTimeout, err)
}

// KillMasterForSlot kills the master of slot with SIGKILL (no goodbye to
// its replicas or clients) and returns it and the replica promoted in its
// place, once WaitPromotion says the failover is done. The killed node
// stays down; RejoinAsReplica brings it back.
func (c *Cluster) KillMasterForSlot(t testing.TB, slot int) (old, promoted *Server) {
	t.Helper()
	old = c.MasterForSlot(t, slot)
	old.Kill()
	return old, c.WaitPromotion(t, slot, old)
}

// WaitPromotion waits until every live node names a master for slot other
// than old, that master answers ROLE master, and the cluster is at rest
// (cluster_state:ok everywhere), and returns the new master. With
// old.Kill() before it, it is KillMasterForSlot in two steps, for a test
// that must know the moment of the kill.
func (c *Cluster) WaitPromotion(t testing.TB, slot int, old *Server) (promoted *Server) {
	t.Helper()
	err := poll(clusterTimeout, func(ctx context.Context) error {
		m, err := c.agreedMap(ctx)
		if err != nil {
			return err
		}
		addr := m.owner(slot)
		if addr == old.Addr() {
			return fmt.Errorf("slot %d still served by %s", slot, addr)
		}
		if promoted = c.byAddr(addr); promoted == nil {
			return fmt.Errorf("slot %d is served by %q, not a node of this cluster", slot, addr)
		}
		return c.settled(ctx)
	})
	if err != nil {
		t.Fatalf("redistest: no failover of slot %d away from %s: %v", slot, old.Addr(), err)
	}
	return promoted
}

// RejoinAsReplica starts a killed node again. It keeps its node id (its
// cluster config file survives), learns that its slots moved on, turns
// itself into a replica of the master that took them, and resyncs from
// it; RejoinAsReplica returns once the node is a replica with its link up
// and the cluster is at rest.
func (c *Cluster) RejoinAsReplica(t testing.TB, node *Server) {
	t.Helper()
	node.Relaunch(t)
	err := poll(clusterTimeout, func(ctx context.Context) error {
		info, err := node.Client().Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication on %s: %w", node.Addr(), err)
		}
		if f := parseInfo(info); f["role"] != "slave" || f["master_link_status"] != "up" {
			return fmt.Errorf("%s: role=%s master_link_status=%s", node.Addr(), f["role"], f["master_link_status"])
		}
		return c.settled(ctx)
	})
	if err != nil {
		t.Fatalf("redistest: %s did not rejoin as a replica: %v", node.Addr(), err)
	}
}

func nodeID(ctx context.Context, s *Server) (string, error) {
	id, err := s.Client().Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return "", fmt.Errorf("CLUSTER MYID on %s: %w", s.Addr(), err)
	}
	return id, nil
}

// MigrateSlot moves slot from its master to the master to, as
// `redis-cli --cluster reshard` would, one step at a time:
//
//  1. CLUSTER SETSLOT slot IMPORTING on to, then MIGRATING on the source:
//     from now on the source answers ASK for a key it does not hold, and
//     TRYAGAIN for a multi-key command that finds some keys but not all;
//  2. between("migrating"), before any key moves;
//  3. MIGRATE the slot's keys in batches (CLUSTER GETKEYSINSLOT, a quarter
//     of the keys counted at the start per batch, 1 to 100), calling
//     between("moved-some") once about half of them have moved (at once
//     if the slot was empty), while the slot is split between the nodes;
//  4. CLUSTER SETSLOT slot NODE on to, the source, then every other
//     master: clients now get MOVED.
//
// It returns once every live node names to as the slot's master and the
// cluster is at rest. between may be nil; it runs on the caller's
// goroutine and the migration waits for it.
func (c *Cluster) MigrateSlot(t testing.TB, slot int, to *Server, between func(phase string)) {
	t.Helper()
	if between == nil {
		between = func(string) {}
	}
	src := c.MasterForSlot(t, slot)
	masters := c.Masters(t) // read now: the maps differ for a moment at the end
	if src == to {
		t.Fatalf("redistest: slot %d is already on %s", slot, to.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	srcID, err := nodeID(ctx, src)
	if err != nil {
		t.Fatalf("redistest: migrate slot %d: %v", slot, err)
	}
	toID, err := nodeID(ctx, to)
	if err != nil {
		t.Fatalf("redistest: migrate slot %d: %v", slot, err)
	}
	do := func(s *Server, args ...any) any {
		t.Helper()
		v, err := s.Client().Do(ctx, args...).Result()
		if err != nil {
			t.Fatalf("redistest: migrate slot %d: %v on %s: %v", slot, args, s.Addr(), err)
		}
		return v
	}
	// Importing first: a client sent by the source's ASK must find the
	// target ready.
	do(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	do(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	between("migrating")

	total, err := src.Client().ClusterCountKeysInSlot(ctx, slot).Result()
	if err != nil {
		t.Fatalf("redistest: migrate slot %d: COUNTKEYSINSLOT on %s: %v", slot, src.Addr(), err)
	}
	batch := min(max(total/4, 1), 100)
	host, port, _ := net.SplitHostPort(to.Addr())
	var moved int64
	halfway := false
	// Bounded: keys only leave the source while it migrates (a key it does
	// not hold is created on the target through ASK), so total/batch
	// rounds suffice; the bound only stops a runaway loop.
	for round := 0; ; round++ {
		if round > 10000 {
			t.Fatalf("redistest: migrate slot %d: keys still on %s after %d batches", slot, src.Addr(), round)
		}
		keys, err := src.Client().ClusterGetKeysInSlot(ctx, slot, int(batch)).Result()
		if err != nil {
			t.Fatalf("redistest: migrate slot %d: GETKEYSINSLOT on %s: %v", slot, src.Addr(), err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, migrateTimeout, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		// NOKEY: the keys listed were all deleted meanwhile.
		if err := src.Client().Do(ctx, args...).Err(); err != nil && !strings.HasPrefix(err.Error(), "NOKEY") {
			t.Fatalf("redistest: migrate slot %d: MIGRATE %d keys %s → %s: %v", slot, len(keys), src.Addr(), to.Addr(), err)
		}
		moved += int64(len(keys))
		if !halfway && moved*2 >= total {
			halfway = true
			between("moved-some")
		}
	}
	if !halfway {
		between("moved-some")
	}
	// The target first, so that it owns the slot before the source starts
	// sending MOVED; then the source; then everyone else learns it without
	// waiting for gossip.
	do(to, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	do(src, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	for _, m := range masters {
		if m != to && m != src {
			do(m, "CLUSTER", "SETSLOT", slot, "NODE", toID)
		}
	}
	err = poll(clusterTimeout, func(ctx context.Context) error {
		m, err := c.agreedMap(ctx)
		if err != nil {
			return err
		}
		if got := m.owner(slot); got != to.Addr() {
			return fmt.Errorf("slot %d served by %s, want %s", slot, got, to.Addr())
		}
		return c.settled(ctx)
	})
	if err != nil {
		t.Fatalf("redistest: after migrating slot %d to %s: %v", slot, to.Addr(), err)
	}
}
