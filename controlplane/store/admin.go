package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
)

// edgeEpochKey holds the edge epoch: one counter for the whole store (it
// has no hash tag and no brace, so no SCAN of records sees it).
func (s *Store) edgeEpochKey() string { return s.opt.Prefix + ":edge-epoch" }

// EdgeEpoch reads the edge epoch (api.EdgeEpoch). When Redis holds none
// (never bumped, or its data was lost) it first starts one from Redis's
// clock (µs since the Unix epoch), so that the edges, which compare it for
// equality, see a new value after every data loss and never one they knew.
func (s *Store) EdgeEpoch(ctx context.Context) (int64, error) {
	if s.optErr != nil {
		return 0, s.optErr
	}
	// Not waited for in durable mode: a seed lost in a failover is seeded
	// again, later by Redis's clock, which the edges see as a new epoch.
	v, err := s.run(ctx, call{op: "edge_epoch", script: edgeEpochScript, keys: []string{s.edgeEpochKey()}}).Text()
	if err != nil {
		return 0, unavailable("edge epoch", err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, unexpected("edge epoch", v)
	}
	return n, nil
}

// BumpEdgeEpoch increments the edge epoch (started from Redis's clock as
// EdgeEpoch does when absent) and returns its new value. The admin API
// calls it after every delete or release, so that filters stop replaying
// edge-cache entries filled before.
func (s *Store) BumpEdgeEpoch(ctx context.Context) (int64, error) {
	if s.optErr != nil {
		return 0, s.optErr
	}
	n, err := s.run(ctx, call{op: "bump_edge_epoch", script: bumpEdgeEpochScript, write: true,
		keys: []string{s.edgeEpochKey()}}).Int64()
	if err != nil {
		return 0, unavailable("bump edge epoch", err)
	}
	return n, nil
}

// maxScanRounds bounds the SCAN calls of one List call, so a scope that
// matches few keys of a large keyspace still answers promptly (with a
// cursor to continue).
const maxScanRounds = 16

// List returns a page of the records in state (api.StateInProgress or
// api.StateIndeterminate; a record whose lease ended on a route that locks
// counts as indeterminate), of scope when scope is not empty, without
// bodies. It SCANs every node that holds records (each master of a
// Cluster, in address order), examining about limit keys per call (at most
// maxScanRounds SCAN calls), and returns the cursor of the next page, ""
// when every node has been scanned. SCAN's guarantee holds: a record that
// exists for the whole scan is returned at least once; one created or
// deleted meanwhile may or may not be. A Cluster whose masters change
// between calls may be scanned partly twice or partly not at all.
func (s *Store) List(ctx context.Context, state api.State, scope, cursor string, limit int) ([]api.Record, string, error) {
	if s.optErr != nil {
		return nil, "", s.optErr
	}
	if state != api.StateInProgress && state != api.StateIndeterminate {
		return nil, "", invalid("state %q: want %q or %q", state, api.StateIndeterminate, api.StateInProgress)
	}
	if scope != "" {
		if err := api.ValidateName("scope", scope); err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
	}
	if limit <= 0 || limit > api.MaxListLimit {
		return nil, "", invalid("limit %d: want 1 to %d", limit, api.MaxListLimit)
	}
	node, pos, err := parseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, "", err
	}
	if node >= len(nodes) {
		return nil, "", invalid("cursor %q names node %d of %d: the cluster changed; start again", cursor, node, len(nodes))
	}
	pattern := globEscape(s.opt.Prefix) + ":{"
	if scope != "" {
		pattern += base64.RawURLEncoding.EncodeToString([]byte(scope)) + ".*}"
	} else {
		pattern += "*}"
	}
	var out []api.Record
	examined := 0
	rep := nodeReportFrom(ctx)
	_, isCluster := s.c.(*redis.ClusterClient)
	reported := -1
	for round := 0; round < maxScanRounds && examined < limit; round++ {
		if rep != nil && reported != node {
			rep.add(nodeAddr(ctx, nodes[node], isCluster))
			reported = node
		}
		keys, next, err := nodes[node].Scan(ctx, pos, pattern, int64(limit-examined)).Result()
		if err != nil {
			return nil, "", unavailable("list", err)
		}
		examined += len(keys)
		recs, err := s.readRecords(ctx, nodes[node], keys)
		if err != nil {
			return nil, "", err
		}
		for _, r := range recs {
			if r.State == state {
				out = append(out, r)
			}
		}
		pos = next
		if pos == 0 {
			node, pos = node+1, 0
			if node == len(nodes) {
				return out, "", nil
			}
		}
	}
	return out, strconv.Itoa(node) + ":" + strconv.FormatUint(pos, 10), nil
}

// nodeAddr names a node for a NodeReport: a Cluster node's address, else
// the address the node sees (CLIENT INFO laddr; a Sentinel client's
// Options().Addr names no node). "" when it cannot be read.
func nodeAddr(ctx context.Context, c *redis.Client, isCluster bool) string {
	if isCluster {
		return c.Options().Addr
	}
	txt, err := c.Do(ctx, "client", "info").Text()
	if err != nil {
		return ""
	}
	return clientInfoField(txt, "laddr")
}

func parseCursor(c string) (node int, pos uint64, err error) {
	if c == "" {
		return 0, 0, nil
	}
	n, p, ok := strings.Cut(c, ":")
	node, err1 := strconv.Atoi(n)
	pos, err2 := strconv.ParseUint(p, 10, 64)
	if !ok || err1 != nil || err2 != nil || node < 0 {
		return 0, 0, invalid("cursor %q is not one this service gave", c)
	}
	return node, pos, nil
}

// nodes are the clients to SCAN: every master of a Cluster in address
// order, else the one client.
func (s *Store) nodes(ctx context.Context) ([]*redis.Client, error) {
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		c, ok := s.c.(*redis.Client)
		if !ok {
			return nil, fmt.Errorf("store: list: unsupported client %T", s.c)
		}
		return []*redis.Client{c}, nil
	}
	var mu sync.Mutex
	var out []*redis.Client
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock()
		out = append(out, m)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, unavailable("list", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Options().Addr < out[j].Options().Addr })
	return out, nil
}

// readRecords reads the records at keys from node (one pipeline, no
// bodies); keys gone meanwhile, or not records, are skipped.
func (s *Store) readRecords(ctx context.Context, node *redis.Client, keys []string) ([]api.Record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := node.Pipeline()
	cmds := make([]*redis.SliceCmd, len(keys))
	next := make([]*redis.FloatCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, "st", "fp", "cr", "exp", "lease", "code", "omit", "oi", "rt", "ra", "rl")
		// The record's index lives on this node too (its slot).
		next[i] = pipe.ZScore(ctx, s.reconcileIndexKey(k), k)
	}
	tm := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// A key that turned into another type fails alone; anything
		// else is an outage.
		if tm.Err() != nil {
			return nil, unavailable("list", err)
		}
	}
	now := strconv.FormatInt(tm.Val().UnixMilli(), 10)
	var out []api.Record
	for i, k := range keys {
		v, err := cmds[i].Result()
		if err != nil || len(v) != 11 || v[0] == nil {
			continue
		}
		scope, key, ok := s.parseRecordKey(k)
		if !ok {
			continue
		}
		var at any = false
		if sc, err := next[i].Result(); err == nil {
			at = strconv.FormatInt(int64(sc), 10)
		}
		row := []any{v[0], v[1], v[2], v[3], v[4], v[5], v[6], false, false, v[7], now, v[8], v[9], v[10], at, false}
		rec, err := decodeRecord("list", scope, key, row, false)
		if err != nil {
			continue // not a record of ours
		}
		out = append(out, *rec)
	}
	return out, nil
}

// parseRecordKey is RecordKey's inverse.
func (s *Store) parseRecordKey(k string) (scope, key string, ok bool) {
	rest, ok := strings.CutPrefix(k, s.opt.Prefix+":{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return "", "", false
	}
	a, b, ok := strings.Cut(rest[:len(rest)-1], ".")
	if !ok {
		return "", "", false
	}
	sc, err1 := base64.RawURLEncoding.DecodeString(a)
	ky, err2 := base64.RawURLEncoding.DecodeString(b)
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	return string(sc), string(ky), true
}

// globEscape escapes the SCAN MATCH metacharacters of s.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
