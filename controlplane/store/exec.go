package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotDurable: a state-changing operation ran on the master but fewer
// replicas than Options.Durable asks for acknowledged it within
// Durability.Timeout (or, with Fsync, the master did not fsync it). The
// change may stand on the master and may be lost on a failover; the caller
// must treat the answer as unknown (the filter releases by holder after a
// failed reserve; its outbox retries complete, release and abandon, whose
// scripts are idempotent). It matches ErrUnavailable too, so callers that
// only know ErrUnavailable answer 503.
var ErrNotDurable = fmt.Errorf("%w: the change was not acknowledged by enough replicas in time", ErrUnavailable)

// DefaultDurableTimeout is Durability.Timeout when zero.
const DefaultDurableTimeout = 250 * time.Millisecond

// Durability asks every state-changing operation to wait, after its script
// and on the same connection, until the change is on Replicas replicas
// (WAIT), or with Fsync fsynced to the master's AOF and on Replicas
// replicas (WAITAOF 1 Replicas, Redis ≥ 7.2, appendonly yes). Zero value:
// off.
type Durability struct {
	Replicas int
	Timeout  time.Duration // default DefaultDurableTimeout
	Fsync    bool
}

// On tells whether operations wait at all.
func (d Durability) On() bool { return d.Replicas > 0 || d.Fsync }

func (d Durability) String() string {
	if !d.On() {
		return "off"
	}
	if d.Fsync {
		return fmt.Sprintf("WAITAOF 1 %d %v", d.Replicas, d.Timeout)
	}
	return fmt.Sprintf("WAIT %d %v", d.Replicas, d.Timeout)
}

// Observer receives what the store sees of Redis, for metrics and logs.
// Every field may be nil; the functions are called from the goroutine of
// the operation and must not block.
type Observer struct {
	// Retry: op is about to be sent again after reason (readonly, loading,
	// masterdown, clusterdown, tryagain, eof, refused, reset, timeout,
	// pool, moved, ask).
	Retry func(op, reason string)
	// WaitShortfall: op's WAIT (WAITAOF) came back with fewer acks than
	// want; the operation answers ErrNotDurable.
	WaitShortfall func(op string, acked, want int)
	// Wait: the round trip of op's script and WAIT in durable mode.
	Wait func(op string, d time.Duration)
	// Failover: the topology watcher saw the master (set of masters on a
	// Cluster) change from one description to another.
	Failover func(from, to string)
}

// maxRedirects bounds the MOVED/ASK redirects one attempt follows (reset
// by each counted retry, which has its own bound).
const maxRedirects = 5

// Backoff between retries of one operation: doubled from retryBackoffMin
// up to retryBackoffMax, never past the context's deadline.
const (
	retryBackoffMin = 10 * time.Millisecond
	retryBackoffMax = 200 * time.Millisecond
)

// call is one script run on the record's master.
type call struct {
	op     string
	script *redis.Script
	keys   []string
	args   []any
	write  bool // state-changing: waits for the replicas in durable mode
	// optional: how many of the last keys the script can do without (the
	// reconcile index, where it only drops an entry or shows it; the claim
	// drops an entry left behind). A Cluster answers TRYAGAIN to a script
	// whose keys are split by a slot migration, and to one that names a
	// key absent on either side (an index that does not exist): the retry
	// leaves them out, so that an operation on a record follows ASK alone,
	// as before the index.
	optional int
}

// shortfall is the error of a WAIT with too few acks.
type shortfall struct {
	acked, want int
	local       int // WAITAOF: masters that fsynced (want 1); -1 for WAIT
	timeout     time.Duration
}

func (e *shortfall) Error() string {
	if e.local >= 0 {
		return fmt.Sprintf("%v: WAITAOF: fsynced locally %d of 1, on %d of %d replicas within %v", ErrNotDurable, e.local, e.acked, e.want, e.timeout)
	}
	return fmt.Sprintf("%v: WAIT: %d of %d replicas within %v", ErrNotDurable, e.acked, e.want, e.timeout)
}

func (e *shortfall) Unwrap() error { return ErrNotDurable }

// run executes c and returns its reply as a *redis.Cmd (for the typed
// accessors), the error as exec returns it.
func (s *Store) run(ctx context.Context, c call) *redis.Cmd {
	v, err := s.exec(ctx, c)
	return redis.NewCmdResult(v, err)
}

// exec is the single execution path of every script: EVALSHA (EVAL after
// NOSCRIPT), in durable mode followed by WAIT/WAITAOF on the same
// connection (one pipeline, one round trip), on a Cluster sent to the
// master owning the record's slot, following MOVED and ASK itself. Errors
// that a failover or a restart causes (READONLY, LOADING, MASTERDOWN,
// CLUSTERDOWN, TRYAGAIN, a refused, reset or closed connection, a timeout)
// are retried up to Options.MaxRetries times with a short backoff, within
// ctx: safe because every script is idempotent for the same arguments (see
// the package comment, "Retries"), and c's arguments are fixed for all the
// attempts. go-redis's own retries are off (NewClient), so that every
// retry is counted here.
func (s *Store) exec(ctx context.Context, c call) (any, error) {
	rep := nodeReportFrom(ctx)
	cc, isCluster := s.c.(*redis.ClusterClient)
	var (
		retries, redirects int
		tryAgains          int
		useEval            bool
		target             *redis.Client // Cluster: the node a redirect named
		asking             bool
	)
	for {
		var p pipeliner = s.c
		addr := ""
		if isCluster {
			node := target
			if node == nil {
				var err error
				if node, err = cc.MasterForKey(ctx, c.keys[0]); err != nil {
					if reason, ok := retryReason(err); ok && s.backoff(ctx, c.op, reason, &retries) {
						continue
					}
					return nil, err
				}
			}
			p, addr = node, node.Options().Addr
		}
		v, err := s.attempt(ctx, p, c, asking, useEval, rep != nil && !isCluster)
		prevTarget, prevAsking := target, asking
		target, asking = nil, false
		var laddr *string
		if r, ok := err.(*reportedErr); ok {
			err, laddr = r.err, &r.addr
		}
		if err == nil || errors.Is(err, redis.Nil) || errors.As(err, new(*shortfall)) {
			if rep != nil {
				if laddr != nil {
					addr = *laddr
				}
				rep.add(addr)
			}
			return v, err
		}
		if !useEval && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// The node lost its script cache (restart, failover, a new
			// Cluster node): the script did not run; send it whole.
			useEval = true
			target, asking = prevTarget, prevAsking // the same node again
			continue
		}
		if isCluster {
			if to, ok := redis.IsMovedError(err); ok {
				cc.ReloadState(ctx)
				if n, ok := s.redirect(ctx, cc, c.op, "moved", to, &redirects); ok {
					target = n
					continue
				}
				return nil, err
			}
			if to, ok := redis.IsAskError(err); ok {
				if n, ok := s.redirect(ctx, cc, c.op, "ask", to, &redirects); ok {
					target, asking = n, true
					continue
				}
				return nil, err
			}
		}
		reason, ok := retryReason(err)
		budget := &retries
		if reason == "tryagain" && c.optional > 0 {
			c.keys, c.optional = c.keys[:len(c.keys)-c.optional], 0
		}
		if reason == "tryagain" {
			// A multi-key script (reserve: record and fence) in a slot
			// being migrated, the keys split between the nodes: it did
			// not run, and will once the migration moved them all. Its
			// own bound, not the failover budget.
			budget = &tryAgains
		}
		if !ok || !s.backoffWithin(ctx, c.op, reason, budget, s.maxFor(reason)) {
			return nil, err
		}
		// maxRedirects bounds the redirects between two retries: a
		// TRYAGAIN after an ASK meets the ASK again on the next attempt.
		redirects = 0
		if isCluster {
			cc.ReloadState(ctx)
		}
	}
}

// pipeliner is what exec sends a pipeline through: the universal client
// (standalone, Sentinel) or a Cluster node's client.
type pipeliner interface {
	Pipeline() redis.Pipeliner
}

// reportedErr carries the node address CLIENT INFO gave beside the
// attempt's outcome.
type reportedErr struct {
	err  error
	addr string
}

func (e *reportedErr) Error() string { return e.err.Error() }

// attempt sends [ASKING] script [WAIT|WAITAOF] [CLIENT INFO] in one
// pipeline, so that all run on one connection: WAIT counts the writes of
// its own connection only, and CLIENT INFO names the node that connection
// reached (a Sentinel client's node is not otherwise known).
func (s *Store) attempt(ctx context.Context, p pipeliner, c call, asking, useEval, clientInfo bool) (any, error) {
	d := s.opt.Durable
	wait := c.write && d.On()
	if !wait && !asking && !clientInfo {
		// The script alone: no pipeline needed.
		if sc, ok := p.(redis.Scripter); ok {
			if useEval {
				return c.script.Eval(ctx, sc, c.keys, c.args...).Result()
			}
			return c.script.EvalSha(ctx, sc, c.keys, c.args...).Result()
		}
	}
	pipe := p.Pipeline()
	if asking {
		pipe.Do(ctx, "asking")
	}
	var sc *redis.Cmd
	if useEval {
		sc = c.script.Eval(ctx, pipe, c.keys, c.args...)
	} else {
		sc = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	var wc *redis.Cmd
	if wait {
		ms := d.Timeout.Milliseconds()
		if d.Fsync {
			wc = pipe.Do(ctx, "waitaof", 1, d.Replicas, ms)
		} else {
			wc = pipe.Do(ctx, "wait", d.Replicas, ms)
		}
	}
	var ci *redis.Cmd
	if clientInfo {
		ci = pipe.Do(ctx, "client", "info")
	}
	start := time.Now()
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	el := time.Since(start)

	v, err := sc.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if wait {
		if s.opt.Observer.Wait != nil {
			s.opt.Observer.Wait(c.op, el)
		}
		var sf *shortfall
		if d.Fsync {
			acks, werr := wc.Int64Slice()
			if werr != nil {
				return nil, werr
			}
			if len(acks) != 2 {
				return nil, fmt.Errorf("WAITAOF answered %v", acks)
			}
			if acks[0] < 1 || acks[1] < int64(d.Replicas) {
				sf = &shortfall{acked: int(acks[1]), want: d.Replicas, local: int(acks[0]), timeout: d.Timeout}
			}
		} else {
			n, werr := wc.Int64()
			if werr != nil {
				return nil, werr
			}
			if n < int64(d.Replicas) {
				sf = &shortfall{acked: int(n), want: d.Replicas, local: -1, timeout: d.Timeout}
			}
		}
		if sf != nil {
			if s.opt.Observer.WaitShortfall != nil {
				s.opt.Observer.WaitShortfall(c.op, sf.acked, sf.want)
			}
			err = sf
		}
	}
	if ci != nil {
		if txt, cerr := ci.Text(); cerr == nil {
			if a := clientInfoField(txt, "laddr"); a != "" {
				return v, &reportedErr{err: err, addr: a}
			}
		}
	}
	return v, err
}

// redirect finds the Cluster master a MOVED or ASK named, within the
// bound on redirects.
func (s *Store) redirect(ctx context.Context, cc *redis.ClusterClient, op, reason, addr string, n *int) (*redis.Client, bool) {
	if *n >= maxRedirects {
		return nil, false
	}
	*n++
	if s.opt.Observer.Retry != nil {
		s.opt.Observer.Retry(op, reason)
	}
	var mu sync.Mutex
	var found *redis.Client
	_ = cc.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		if m.Options().Addr == addr {
			mu.Lock()
			found = m
			mu.Unlock()
		}
		return nil
	})
	return found, found != nil
}

// backoff counts a retry and sleeps before it; false when the retries are
// spent or ctx ends first (or would, during the sleep).
func (s *Store) backoff(ctx context.Context, op, reason string, n *int) bool {
	return s.backoffWithin(ctx, op, reason, n, s.opt.MaxRetries)
}

// maxTryAgain bounds the TRYAGAIN retries of one operation; the context's
// deadline usually ends them first.
const maxTryAgain = 20

func (s *Store) maxFor(reason string) int {
	if reason == "tryagain" {
		return maxTryAgain
	}
	return s.opt.MaxRetries
}

func (s *Store) backoffWithin(ctx context.Context, op, reason string, n *int, limit int) bool {
	if *n >= limit || ctx.Err() != nil {
		return false
	}
	d := retryBackoffMin << *n
	if d > retryBackoffMax {
		d = retryBackoffMax
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	*n++
	if s.opt.Observer.Retry != nil {
		s.opt.Observer.Retry(op, reason)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// retryReason classifies an error a failover or restart causes, which a
// retry may get past; ok is false for anything else (a script error, a
// closed client, the caller's context).
func retryReason(err error) (reason string, ok bool) {
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrClosed):
		return "", false
	case redis.IsReadOnlyError(err):
		return "readonly", true
	case redis.IsLoadingError(err):
		return "loading", true
	case redis.IsMasterDownError(err):
		return "masterdown", true
	case redis.IsClusterDownError(err):
		return "clusterdown", true
	case redis.IsTryAgainError(err):
		return "tryagain", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof", true
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "reset", true
	case errors.Is(err, redis.ErrPoolTimeout):
		return "pool", true
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout", true
	}
	return "", false
}

// clientInfoField reads one field of a CLIENT INFO (CLIENT LIST) line.
func clientInfoField(line, name string) string {
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// NodeReport collects the addresses of the Redis nodes that answered the
// operations run with its context (WithNodeReport).
type NodeReport struct {
	mu    sync.Mutex
	addrs []string
}

type nodeReportKey struct{}

// WithNodeReport returns a context under which the store records, in the
// returned report, the address of every Redis node that answered an
// operation: the address the node sees its end of the connection at
// (CLIENT INFO laddr, on the connection that ran the script) on a
// standalone or Sentinel Redis, the node's address on a Cluster. It costs
// one more command in the operation's pipeline on standalone and Sentinel.
func WithNodeReport(ctx context.Context) (context.Context, *NodeReport) {
	r := &NodeReport{}
	return context.WithValue(ctx, nodeReportKey{}, r), r
}

func nodeReportFrom(ctx context.Context) *NodeReport {
	r, _ := ctx.Value(nodeReportKey{}).(*NodeReport)
	return r
}

func (r *NodeReport) add(addr string) {
	if addr == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.addrs {
		if a == addr {
			return
		}
	}
	r.addrs = append(r.addrs, addr)
}

// Addrs returns the addresses recorded, each once, in order of first use.
func (r *NodeReport) Addrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.addrs...)
}

// String is Addrs joined by commas (the Idemgate-Redis-Node header).
func (r *NodeReport) String() string { return strings.Join(r.Addrs(), ",") }
