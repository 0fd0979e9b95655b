package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel defaults, tuned so that one kill-master cycle takes a few
// seconds and a test can run dozens back to back (see TestSentinelCycles):
//   - down-after 1500ms: a loopback master answers PING in microseconds,
//     but after a switch a sentinel drops its links to the new master and
//     reconnects at most once a second; with down-after under that second
//     (500ms was tried) a sentinel sometimes judged the master it had just
//     promoted down and failed it over again.
//   - failover-timeout 3s: bounds a stuck failover (a sentinel retries one
//     after 2×3s) and the wait for replicas to be repointed. A completed
//     failover resets the clock on every sentinel that learns of it, so it
//     does not space successive failovers.
//
// Measured (2 cores, no -race): 50 KillMaster calls back to back took
// 4.4 s each; from the kill, the promotion took 2.75 s on average (at most
// 3.2 s) and the old node was back in sync after 3.2 s (2.8 to 3.9 s); the
// rest is the settle before the next kill. SENTINEL FAILOVER: a new master
// in 1.1 to 1.3 s; the sentinels demote the old master about 10 s after
// the switch.
const (
	DefaultSentinelDownAfter       = 1500 * time.Millisecond
	DefaultSentinelFailoverTimeout = 3 * time.Second
	// sentinelMasterName is what the sentinels monitor and what the
	// control plane's URL names.
	sentinelMasterName = "idemgate"
	// topologyTimeout bounds every wait for the sentinels to agree, for a
	// promotion or for replicas to sync: they take seconds; this only
	// stops a hung test.
	topologyTimeout = 45 * time.Second
)

// SentinelOptions configures StartSentinel. Zero values take the defaults.
type SentinelOptions struct {
	Replicas        int           // default 2
	Sentinels       int           // default 3; the quorum is a majority
	DownAfter       time.Duration // down-after-milliseconds, default DefaultSentinelDownAfter
	FailoverTimeout time.Duration // failover-timeout, default DefaultSentinelFailoverTimeout
	ServerArgs      []string      // extra arguments for every data node (e.g. "--appendonly", "yes")
}

// Sentinel is a Redis master with replicas watched by sentinels, all real
// processes on loopback ports, stopped when the test ends. Each data node
// keeps its port for the whole test, whichever role it has.
type Sentinel struct {
	t         testing.TB
	opt       SentinelOptions
	nodes     []*Server
	sentinels []*Server
	clients   []*redis.SentinelClient // one per sentinel, same order
}

// StartSentinel starts a master, o.Replicas replicas of it and o.Sentinels
// sentinels monitoring it as "idemgate", and returns once every sentinel
// knows the master, every replica and every other sentinel, and every
// replica is in sync.
func StartSentinel(t testing.TB, o SentinelOptions) *Sentinel {
	t.Helper()
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Sentinels == 0 {
		o.Sentinels = 3
	}
	if o.DownAfter == 0 {
		o.DownAfter = DefaultSentinelDownAfter
	}
	if o.FailoverTimeout == 0 {
		o.FailoverTimeout = DefaultSentinelFailoverTimeout
	}
	if o.Replicas < 1 || o.Sentinels < 1 || o.DownAfter < time.Millisecond || o.FailoverTimeout < time.Millisecond {
		t.Fatalf("redistest: sentinel options %+v: want at least one replica and one sentinel, and positive times", o)
	}
	s := &Sentinel{t: t, opt: o}
	master := Start(t, o.ServerArgs...)
	s.nodes = append(s.nodes, master)
	for i := 0; i < o.Replicas; i++ {
		s.nodes = append(s.nodes, StartReplica(t, master, o.ServerArgs...))
	}
	// Sentinels start after the replicas are attached: a sentinel learns
	// of replicas from the master's INFO, which it sends on connecting
	// and then only every 10 s.
	quorum := o.Sentinels/2 + 1
	for i := 0; i < o.Sentinels; i++ {
		sn := startProc(t, false, func(port int, dir string) ([]string, error) {
			// Sentinel rewrites its config file (ids, known replicas and
			// sentinels, epochs), so each one needs its own, writable.
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
			body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
				"sentinel down-after-milliseconds %[1]s %[4]d\n"+
				"sentinel failover-timeout %[1]s %[5]d\n"+
				"sentinel parallel-syncs %[1]s 1\n",
				sentinelMasterName, master.Port(), quorum,
				o.DownAfter.Milliseconds(), o.FailoverTimeout.Milliseconds())
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				return nil, fmt.Errorf("write sentinel config: %w", err)
			}
			return []string{conf, "--sentinel",
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", dir}, nil
		})
		s.sentinels = append(s.sentinels, sn)
		s.clients = append(s.clients, redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1}))
	}
	t.Cleanup(func() {
		for _, c := range s.clients {
			_ = c.Close()
		}
	})
	if err := poll(topologyTimeout, func(ctx context.Context) error {
		return s.checkSentinels(ctx, master.Addr())
	}); err != nil {
		t.Fatalf("redistest: sentinels not ready: %v", err)
	}
	s.WaitReplicasInSync(t, o.Replicas)
	return s
}

// MasterName is the name the sentinels monitor the master under.
func (s *Sentinel) MasterName() string { return sentinelMasterName }

// SentinelAddrs lists the sentinels' host:port.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		addrs[i] = sn.Addr()
	}
	return addrs
}

// URL is the control plane's Redis URL for this deployment.
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + strings.Join(s.SentinelAddrs(), ",") + "/" + sentinelMasterName
}

// Nodes lists the data nodes (master and replicas, in no role order).
func (s *Sentinel) Nodes() []*Server { return s.nodes }

// Sentinels lists the sentinel processes. A test may Kill one (and
// Relaunch it: it keeps its rewritten config); the waits then consult the
// running ones. A paused sentinel counts as running and answers nothing, so
// waits time out until it is resumed.
func (s *Sentinel) Sentinels() []*Server { return s.sentinels }

// Master returns the node every running sentinel names master, once they agree and
// it answers ROLE master.
func (s *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	return s.WaitMaster(t, "", topologyTimeout)
}

// WaitMaster waits until every running sentinel names the same master, other than
// notAddr (use "" for any), and that node answers ROLE master; it fails t
// after timeout.
func (s *Sentinel) WaitMaster(t testing.TB, notAddr string, timeout time.Duration) *Server {
	t.Helper()
	var m *Server
	if err := poll(timeout, func(ctx context.Context) error {
		addr, err := s.agreedMaster(ctx)
		if err != nil {
			return err
		}
		if addr == notAddr {
			return fmt.Errorf("sentinels still name %s", addr)
		}
		n := s.node(addr)
		if n == nil {
			return fmt.Errorf("sentinels name %s, which is none of our nodes", addr)
		}
		if r, err := role(ctx, addr); err != nil || r != "master" {
			return fmt.Errorf("sentinels name %s, whose ROLE is %q (%v)", addr, r, err)
		}
		m = n
		return nil
	}); err != nil {
		t.Fatalf("redistest: no agreed master: %v", err)
	}
	return m
}

// Failover runs SENTINEL FAILOVER (a promotion without a crash: the old
// master stays a writable master until the sentinels demote it to a
// replica of the new one, about 10 s after the switch; WaitReplicasInSync
// with every other node waits for that) and returns once every sentinel names a new master that
// answers ROLE master. It first waits for the topology to be whole, so that
// failovers can follow each other back to back.
func (s *Sentinel) Failover(t testing.TB) (old, new *Server) {
	t.Helper()
	old = s.Settle(t)
	start := time.Now()
	// A sentinel refuses while it still sees a failover in progress or no
	// replica fit for promotion: retry those.
	if err := poll(topologyTimeout, func(ctx context.Context) error {
		c := s.liveSentinel()
		if c == nil {
			return retryStop{errors.New("no sentinel is running")}
		}
		err := c.Failover(ctx, sentinelMasterName).Err()
		if err != nil && !strings.Contains(err.Error(), "INPROG") && !strings.Contains(err.Error(), "NOGOODSLAVE") {
			return retryStop{err}
		}
		return err
	}); err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
	new = s.WaitMaster(t, old.Addr(), topologyTimeout)
	t.Logf("redistest: SENTINEL FAILOVER %s -> %s in %v", old.Addr(), new.Addr(), time.Since(start).Round(time.Millisecond))
	return old, new
}

// KillMaster kills the master with SIGKILL, waits for the sentinels to
// promote a replica, then relaunches the old node as a replica of the new
// master and waits until it is in sync. It first waits for the topology to
// be whole, so that kills can follow each other back to back.
func (s *Sentinel) KillMaster(t testing.TB) (old, new *Server) {
	t.Helper()
	old = s.Settle(t)
	start := time.Now()
	old.Kill()
	new = s.WaitMaster(t, old.Addr(), topologyTimeout)
	promoted := time.Since(start)
	s.RejoinAsReplica(t, old)
	t.Logf("redistest: kill -9 of master %s: %s promoted after %v, old node back in sync after %v",
		old.Addr(), new.Addr(), promoted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return old, new
}

// RejoinAsReplica relaunches a stopped node as a replica of the current
// master and waits until it is in sync.
//
// Never relaunch a node of a Sentinel deployment as a plain (empty, since
// persistence is off) master: until the sentinels repoint it, a client
// that reaches it (a pooled connection, a sentinel that has not yet
// noticed) would read no record and answer `acquired` for every key, and
// had the sentinels not failed over yet, the replicas would resync from it
// and erase the data everywhere.
func (s *Sentinel) RejoinAsReplica(t testing.TB, node *Server) {
	t.Helper()
	m := s.Master(t)
	if m == node {
		t.Fatalf("redistest: RejoinAsReplica of %s, which the sentinels still name master", node.Addr())
	}
	node.Relaunch(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port()))
	if err := waitLinkUp(node.Addr(), m.Addr(), topologyTimeout); err != nil {
		t.Fatalf("redistest: rejoined %s: %v", node.Addr(), err)
	}
}

// WaitReplicasInSync waits until at least n replicas of the current master
// are online and have acknowledged everything the master had written when
// the wait began (or when the sentinels last changed the master).
func (s *Sentinel) WaitReplicasInSync(t testing.TB, n int) {
	t.Helper()
	if err := s.waitInSync(n); err != nil {
		t.Fatalf("redistest: replicas not in sync: %v", err)
	}
}

func (s *Sentinel) waitInSync(n int) error {
	var (
		master string
		target int64
	)
	return poll(topologyTimeout, func(ctx context.Context) error {
		addr, err := s.agreedMaster(ctx)
		if err != nil {
			return err
		}
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
		defer c.Close()
		info, err := replicationInfo(ctx, c)
		if err != nil {
			return err
		}
		if info["role"] != "master" {
			return fmt.Errorf("%s is %s, not master", addr, info["role"])
		}
		if addr != master {
			// The offset to reach is the master's when we first see it.
			if target, err = strconv.ParseInt(info["master_repl_offset"], 10, 64); err != nil {
				return fmt.Errorf("master_repl_offset %q: %w", info["master_repl_offset"], err)
			}
			master = addr
		}
		if got := syncedReplicas(info, target); got < n {
			return fmt.Errorf("%d of %d replicas of %s online at offset %d: %v", got, n, addr, target, info)
		}
		return nil
	})
}

// syncedReplicas counts the slaveN entries of a master's INFO replication
// that are online with an acknowledged offset of at least target.
func syncedReplicas(info map[string]string, target int64) int {
	n := 0
	for k, v := range info {
		if !strings.HasPrefix(k, "slave") || strings.HasPrefix(k, "slave_") {
			continue
		}
		fields := map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			if a, b, ok := strings.Cut(kv, "="); ok {
				fields[a] = b
			}
		}
		off, err := strconv.ParseInt(fields["offset"], 10, 64)
		if fields["state"] == "online" && err == nil && off >= target {
			n++
		}
	}
	return n
}

// Settle waits until the deployment is whole again after a failover and
// returns the master: every running node but the master replicates it in
// sync, and every sentinel names the master, sees it healthy (flags exactly
// "master": not down, no failover in progress), and knows each of those
// replicas up and each other sentinel. Failover and KillMaster start with
// it, so that faults can follow each other back to back: sentinels agree on
// a new master's address while the failover's leader is still repointing
// replicas, and a fault injected then acts on a half-made topology. A
// paused node counts as running: resume it first, or Settle times out.
func (s *Sentinel) Settle(t testing.TB) *Server {
	t.Helper()
	m := s.Master(t)
	running := 0
	for _, n := range s.nodes {
		if n != m && n.Running() {
			running++
		}
	}
	s.WaitReplicasInSync(t, running)
	if err := poll(topologyTimeout, func(ctx context.Context) error {
		return s.checkSentinels(ctx, m.Addr())
	}); err != nil {
		t.Fatalf("redistest: sentinels not settled: %v", err)
	}
	return m
}

// checkSentinels reports whether every running sentinel names master, sees it
// healthy (no down or failover flag), knows every other sentinel and
// knows every running node but the master as a replica that is up.
func (s *Sentinel) checkSentinels(ctx context.Context, master string) error {
	for i, c := range s.clients {
		if !s.sentinels[i].Running() {
			continue // a stopped sentinel knows nothing; the others decide
		}
		addr := s.sentinels[i].Addr()
		m, err := c.Master(ctx, sentinelMasterName).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", addr, err)
		}
		if got := m["ip"] + ":" + m["port"]; got != master {
			return fmt.Errorf("sentinel %s names master %s, want %s", addr, got, master)
		}
		if m["flags"] != "master" {
			return fmt.Errorf("sentinel %s: master flags %q", addr, m["flags"])
		}
		if got, want := m["num-other-sentinels"], strconv.Itoa(len(s.clients)-1); got != want {
			return fmt.Errorf("sentinel %s knows %s other sentinels, want %s", addr, got, want)
		}
		reps, err := c.Replicas(ctx, sentinelMasterName).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", addr, err)
		}
		up := map[string]bool{}
		for _, r := range reps {
			f := r["flags"]
			up[r["ip"]+":"+r["port"]] = strings.Contains(f, "slave") &&
				!strings.Contains(f, "s_down") && !strings.Contains(f, "disconnected")
		}
		for _, n := range s.nodes {
			if n.Addr() != master && n.Running() && !up[n.Addr()] {
				return fmt.Errorf("sentinel %s does not know replica %s up (replicas: %v)", addr, n.Addr(), reps)
			}
		}
	}
	return nil
}

// ConfigEpoch is the master's configuration epoch as the sentinels give it
// (the highest one, should they not all know it yet): it starts at 0 and
// grows by one with each completed failover, so a test can tell whether a
// failover happened that it did not cause.
func (s *Sentinel) ConfigEpoch(t testing.TB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var epoch int64
	for i, c := range s.clients {
		if !s.sentinels[i].Running() {
			continue
		}
		m, err := c.Master(ctx, sentinelMasterName).Result()
		if err != nil {
			t.Fatalf("redistest: sentinel %s: SENTINEL MASTER: %v", s.sentinels[i].Addr(), err)
		}
		e, err := strconv.ParseInt(m["config-epoch"], 10, 64)
		if err != nil {
			t.Fatalf("redistest: sentinel %s: config-epoch %q: %v", s.sentinels[i].Addr(), m["config-epoch"], err)
		}
		epoch = max(epoch, e)
	}
	return epoch
}

// agreedMaster returns the master address every running sentinel gives, or an
// error when one does not answer or they disagree.
func (s *Sentinel) agreedMaster(ctx context.Context) (string, error) {
	agreed, first := "", true
	for i, c := range s.clients {
		if !s.sentinels[i].Running() {
			continue
		}
		a, err := c.GetMasterAddrByName(ctx, sentinelMasterName).Result()
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", s.sentinels[i].Addr(), err)
		}
		if len(a) != 2 {
			return "", fmt.Errorf("sentinel %s answered %v", s.sentinels[i].Addr(), a)
		}
		addr := a[0] + ":" + a[1]
		if !first && addr != agreed {
			return "", fmt.Errorf("sentinels disagree: %s names %s, one before it %s", s.sentinels[i].Addr(), addr, agreed)
		}
		agreed, first = addr, false
	}
	if first {
		return "", errors.New("no sentinel is running")
	}
	return agreed, nil
}

// liveSentinel returns the client of the first running sentinel, or nil.
func (s *Sentinel) liveSentinel() *redis.SentinelClient {
	for i, sn := range s.sentinels {
		if sn.Running() {
			return s.clients[i]
		}
	}
	return nil
}

func (s *Sentinel) node(addr string) *Server {
	for _, n := range s.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// role asks addr for its ROLE on a fresh connection (a pooled one may
// belong to a process that was killed).
func role(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("empty ROLE reply")
	}
	r, _ := v[0].(string)
	return r, nil
}

// retryStop wraps an error poll should not retry.
type retryStop struct{ error }

func (r retryStop) Unwrap() error { return r.error }
