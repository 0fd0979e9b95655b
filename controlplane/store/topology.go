package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReady: Ready found no usable master, or too few replicas for the
// durable mode; a *NotReadyError says which node and why.
var ErrNotReady = errors.New("redis not ready")

// NotReadyError is one node's reason for not being ready. Reason names no
// address, so that it can be shown to whoever asks /readyz; Node goes to
// the log.
type NotReadyError struct {
	Node   string
	Reason string
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrNotReady, e.Node, e.Reason)
}
func (e *NotReadyError) Unwrap() error { return ErrNotReady }

func notReady(node, format string, args ...any) error {
	return &NotReadyError{Node: node, Reason: fmt.Sprintf(format, args...)}
}

// replicaMaxLag is the most seconds since a replica's last acknowledgement
// (INFO replication, lag) for Ready to count it: replicas acknowledge every
// second, so a larger lag is a replica that stopped (or a link that did).
const replicaMaxLag = 2

// Ready tells whether the store can serve: Redis answers as a master (on a
// Cluster: every master of the slot map, with cluster_state ok) that is
// not loading its data set (and, with Durable.Fsync, keeps an AOF) and, in
// durable mode, each master has at least Durable.Replicas replicas online
// that acknowledged within replicaMaxLag seconds. The error (ErrNotReady
// or ErrUnavailable) says why not.
func (s *Store) Ready(ctx context.Context) error {
	if s.optErr != nil {
		return s.optErr
	}
	check := func(ctx context.Context, node redis.Cmdable, name string, cluster bool) error {
		info, err := node.Info(ctx, "replication").Result()
		if err != nil {
			return unavailable("ready", fmt.Errorf("%s: %w", name, err))
		}
		// Apart: INFO takes one section before Redis 7. A store that
		// mimics Redis without this section (e2e's embedded store) is
		// taken as not loading, and as keeping no AOF.
		pers, _ := node.Info(ctx, "persistence").Result()
		r := parseReplication(info)
		if r.role != "master" {
			return notReady(name, "a node answers as %q, not master", r.role)
		}
		if infoField(pers, "loading") == "1" {
			// INFO answers while the data set loads; scripts get LOADING.
			return notReady(name, "a master is loading its data set")
		}
		if s.opt.Durable.Fsync && infoField(pers, "aof_enabled") != "1" {
			// WAITAOF 1 N is refused without an AOF: every change fails.
			return notReady(name, "a master runs with appendonly no; durable mode's fsync waits for its AOF")
		}
		if n := s.opt.Durable.Replicas; n > 0 && r.online < n {
			return notReady(name, "a master has %d replicas online (acknowledging within %ds); durable mode waits for %d", r.online, replicaMaxLag, n)
		}
		if cluster {
			ci, err := node.ClusterInfo(ctx).Result()
			if err != nil {
				return unavailable("ready", fmt.Errorf("%s: %w", name, err))
			}
			if st := infoField(ci, "cluster_state"); st != "ok" {
				return notReady(name, "a master says cluster_state:%s", st)
			}
		}
		return nil
	}
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		name := "redis"
		if c, ok := s.c.(*redis.Client); ok {
			if a := nodeAddr(ctx, c, false); a != "" {
				name = a
			}
		}
		return check(ctx, s.c, name, false)
	}
	var mu sync.Mutex
	var errs []error
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := check(ctx, m, m.Options().Addr, true); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return unavailable("ready", err)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// replication is what Ready reads of INFO replication.
type replication struct {
	role   string
	online int // replicas with state=online and lag ≤ replicaMaxLag
}

// parseReplication reads INFO replication: role, and the replicas
// ("slaveN:ip=…,port=…,state=online,offset=…,lag=0") that count.
func parseReplication(info string) replication {
	var r replication
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "role":
			r.role = v
		case strings.HasPrefix(k, "slave") && k != "slave_read_only" && strings.Contains(v, "="):
			f := map[string]string{}
			for _, kv := range strings.Split(v, ",") {
				a, b, _ := strings.Cut(kv, "=")
				f[a] = b
			}
			lag, err := strconv.Atoi(f["lag"])
			if f["state"] == "online" && err == nil && lag <= replicaMaxLag {
				r.online++
			}
		}
	}
	return r
}

// infoField reads "name:value" from an INFO-style reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == name {
			return v
		}
	}
	return ""
}

// OpNames are the op names the Observer reports.
var OpNames = []string{"reserve", "complete", "release", "release_holder", "abandon", "get",
	"delete", "force_release", "edge_epoch", "bump_edge_epoch"}

// Topology describes the master(s) the store writes to, for the watcher
// to tell a failover: on a standalone or Sentinel Redis the address of the
// node the client reaches (CLIENT INFO laddr) when it answers ROLE master;
// on a Cluster the sorted ids of the masters of the slot map (CLUSTER
// SLOTS).
func (s *Store) Topology(ctx context.Context) (string, error) {
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		//lint:ignore SA1019 CLUSTER SHARDS needs Redis ≥ 7.0; go-redis routes by CLUSTER SLOTS too, so this is the map it uses
		slots, err := cc.ClusterSlots(ctx).Result()
		if err != nil {
			return "", unavailable("topology", err)
		}
		return clusterMasters(slots), nil
	}
	c, ok := s.c.(*redis.Client)
	if !ok {
		return "", fmt.Errorf("store: topology: unsupported client %T", s.c)
	}
	pipe := c.Pipeline()
	ci := pipe.Do(ctx, "client", "info")
	role := pipe.Do(ctx, "role")
	if _, err := pipe.Exec(ctx); err != nil {
		return "", unavailable("topology", err)
	}
	txt, _ := ci.Text()
	addr := clientInfoField(txt, "laddr")
	rv, _ := role.Slice()
	if len(rv) == 0 || rv[0] != "master" {
		return "", notReady(addr, "answers ROLE %v, not master", rv)
	}
	return addr, nil
}

// clusterMasters is the sorted, distinct master ids of a slot map.
func clusterMasters(slots []redis.ClusterSlot) string {
	seen := map[string]bool{}
	var ids []string
	for _, sl := range slots {
		if len(sl.Nodes) == 0 {
			continue
		}
		id := sl.Nodes[0].ID
		if id == "" {
			id = sl.Nodes[0].Addr
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// DefaultWatchPeriod is how often WatchTopology looks.
const DefaultWatchPeriod = time.Second

// WatchTopology reads Topology every period until ctx ends and reports
// each change of master (Observer.Failover, a WARN line). A failed read is
// logged at DEBUG and changes nothing: the master seen last stays the one
// compared with, so a master that is replaced while unreachable is still
// counted once it answers. It returns the number of failovers seen.
func (s *Store) WatchTopology(ctx context.Context, period time.Duration, log *slog.Logger) int {
	if period <= 0 {
		period = DefaultWatchPeriod
	}
	if log == nil {
		log = slog.Default()
	}
	last, seen := "", 0
	look := func() {
		lctx, cancel := context.WithTimeout(ctx, period)
		defer cancel()
		read := s.Topology
		if s.topology != nil {
			read = s.topology
		}
		cur, err := read(lctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("redis topology not read", "error", err)
			}
			return
		}
		if last != "" && cur != last {
			seen++
			log.Warn("redis master changed (failover)", "from", last, "to", cur)
			if s.opt.Observer.Failover != nil {
				s.opt.Observer.Failover(last, cur)
			}
		}
		last = cur
	}
	look()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return seen
		case <-t.C:
			look()
		}
	}
}

// CheckDurability checks at start that Redis can give what Options.Durable
// asks for, on every master: with Fsync, WAITAOF must exist (Redis ≥ 7.2)
// and appendonly must be yes. notes are what to log without failing: a
// Redis that refuses CONFIG (managed services often do), or appendonly no
// without Fsync (a master restarted before a failover comes back empty
// and empties its replicas; replicas keep data in memory only).
func (s *Store) CheckDurability(ctx context.Context) (notes []string, err error) {
	d := s.opt.Durable
	if !d.On() {
		return nil, nil
	}
	var mu sync.Mutex
	check := func(ctx context.Context, node doer, name string) error {
		if d.Fsync {
			// An unknown command's entry is nil.
			info, err := node.Do(ctx, "command", "info", "waitaof").Slice()
			if err != nil {
				return fmt.Errorf("%s: COMMAND INFO WAITAOF: %w", name, err)
			}
			if len(info) != 1 || info[0] == nil {
				return fmt.Errorf("%s: --durable-fsync needs WAITAOF (Redis 7.2 or later); this Redis does not know it", name)
			}
		}
		res, err := node.ConfigGet(ctx, "appendonly").Result()
		if err != nil || res["appendonly"] == "" {
			mu.Lock()
			notes = append(notes, fmt.Sprintf("%s: cannot read appendonly (CONFIG may be forbidden): %v; make sure it is what the durable mode assumes", name, err))
			mu.Unlock()
			return nil
		}
		if res["appendonly"] != "yes" {
			if d.Fsync {
				return fmt.Errorf("%s: --durable-fsync needs appendonly yes; it is %q", name, res["appendonly"])
			}
			mu.Lock()
			notes = append(notes, fmt.Sprintf("%s: appendonly is %q: a master restarted before it is failed over (a supervisor restarting it at once) comes back empty and its replicas copy that, losing every acknowledged change; never restart such a master automatically, or use appendonly yes (appendfsync always to lose nothing). The replicas also hold changes in memory only: a crash of all of them loses them", name, res["appendonly"]))
			mu.Unlock()
		}
		return nil
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return check(ctx, m, m.Options().Addr)
		})
	} else {
		err = check(ctx, s.c, "redis")
	}
	sort.Strings(notes)
	return notes, err
}

// doer is a client that also sends commands go-redis has no method for.
type doer interface {
	redis.Cmdable
	Do(ctx context.Context, args ...any) *redis.Cmd
}
