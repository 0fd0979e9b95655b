package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Pending is a record whose attempt the reconciler asks the upstream
// about: its scope and key, the token of the attempt (forwarded as the
// attempt header), the lookup target, the stored fingerprint form, when it
// was reserved and how many lookups left it unresolved.
type Pending struct {
	Scope, Key, Token, Target, Fingerprint string
	CreatedAt                              time.Time
	Attempts                               int
}

// claimRound counts ClaimDue calls, to start each at another node so that a
// backlog on one does not starve the others.
var claimRound atomic.Uint64

// ClaimDue claims up to n records whose lookup is due, each for claim: a
// claimed record is not handed out again before the claim passes (its
// index entry moves to its end), so several control planes share the work
// and two callers never get the same record within one claim. On the way
// it turns an in-progress record whose lease ended into indeterminate (as
// a reserve would), drops the index entries of records that are absent,
// completed or not oi=reconcile, and files a live lease at its end.
//
// Standalone and Sentinel: one index key. Cluster: every slot's index on
// every master, a pipeline per master (its due entries, then its claims),
// masters in turn from a rotating start until n are claimed. The records
// claimed before a node failed are returned beside the error (each joined
// in): they are claimed, and left alone they wait out the claim.
func (s *Store) ClaimDue(ctx context.Context, n int, claim time.Duration) ([]Pending, error) {
	if s.optErr != nil {
		return nil, s.optErr
	}
	if n < 1 {
		return nil, invalid("claim count %d: want at least 1", n)
	}
	if claim < time.Millisecond || claim > api.MaxTTL {
		return nil, invalid("claim %v: want 1ms to %v", claim, api.MaxTTL)
	}
	nodes, err := s.indexNodes(ctx)
	if err != nil {
		return nil, err
	}
	start := int(claimRound.Add(1) % uint64(len(nodes)))
	var out []Pending
	var errs []error
	for i := range nodes {
		if len(out) >= n {
			break
		}
		nd := nodes[(start+i)%len(nodes)]
		got, err := s.claimOn(ctx, nd, n-len(out), claim.Milliseconds())
		out = append(out, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// indexNode is one master and the reconcile index keys it holds.
type indexNode struct {
	c    *redis.Client
	keys []string
}

// indexNodes lists where the reconcile indexes are: the one client and
// its key, or every Cluster master (address order) with the index keys of
// the slots it serves (as the client's slot map says).
func (s *Store) indexNodes(ctx context.Context) ([]indexNode, error) {
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		c, ok := s.c.(*redis.Client)
		if !ok {
			return nil, fmt.Errorf("store: claim: unsupported client %T", s.c)
		}
		return []indexNode{{c: c, keys: []string{s.opt.Prefix + ":rx"}}}, nil
	}
	byAddr := map[string]*indexNode{}
	for slot := 0; slot < clusterSlots; slot++ {
		k := s.slotIndexKey(slot)
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			return nil, unavailable("claim", err)
		}
		a := m.Options().Addr
		nd := byAddr[a]
		if nd == nil {
			nd = &indexNode{c: m}
			byAddr[a] = nd
		}
		nd.keys = append(nd.keys, k)
	}
	out := make([]indexNode, 0, len(byAddr))
	for _, nd := range byAddr {
		out = append(out, *nd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].c.Options().Addr < out[j].c.Options().Addr })
	return out, nil
}

// claimBatch is how many index reads one pipeline of ClaimDue carries.
const claimBatch = 1024

// candidate is a due index entry: the record's key and its index.
type candidate struct {
	member, ix string
	score      float64
}

// claimOn claims up to n due records on one node: TIME, then the due
// entries of every index it holds (one pipeline), then the claim script
// for the n most overdue (one pipeline; EVAL, so that a node that lost
// its script cache needs no second round).
func (s *Store) claimOn(ctx context.Context, nd indexNode, n int, claimMS int64) ([]Pending, error) {
	now, err := nd.c.Time(ctx).Result()
	if err != nil {
		return nil, unavailable("claim", err)
	}
	upTo := strconv.FormatInt(now.UnixMilli(), 10)
	due := make([]*redis.ZSliceCmd, len(nd.keys))
	for lo := 0; lo < len(nd.keys); lo += claimBatch {
		// In batches: a master's whole share of 16384 slots in one
		// pipeline would take longer to write and read than the
		// client's timeouts allow on a busy node.
		pipe := nd.c.Pipeline()
		for i := lo; i < min(lo+claimBatch, len(nd.keys)); i++ {
			due[i] = pipe.ZRangeByScoreWithScores(ctx, nd.keys[i], &redis.ZRangeBy{Min: "-inf", Max: upTo, Count: int64(n)})
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, unavailable("claim", err)
		}
	}
	var cands []candidate
	for i, cmd := range due {
		for _, z := range cmd.Val() {
			m, _ := z.Member.(string)
			cands = append(cands, candidate{member: m, ix: nd.keys[i], score: z.Score})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score < cands[j].score })
	if len(cands) > n {
		cands = cands[:n]
	}
	if len(cands) == 0 {
		return nil, nil
	}
	pipe := nd.c.Pipeline()
	type sent struct {
		scope, key string
		cmd        *redis.Cmd
	}
	var runs []sent
	for _, c := range cands {
		scope, key, ok := s.parseRecordKey(c.member)
		if !ok || s.reconcileIndexKey(c.member) != c.ix {
			// Not a record of this store, or filed in another slot's
			// index: nothing can resolve it through this entry.
			pipe.ZRem(ctx, c.ix, c.member)
			continue
		}
		runs = append(runs, sent{scope: scope, key: key,
			cmd: claimScript.Eval(ctx, pipe, []string{c.member, c.ix}, claimMS)})
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	var out []Pending
	var errs []error
	for _, r := range runs {
		v, err := r.cmd.Slice()
		if err != nil {
			if _, moved := redis.IsMovedError(err); moved {
				// The slot moved since the slot map was read: the new
				// owner's turn comes once the client knows it.
				if cc, ok := s.c.(*redis.ClusterClient); ok {
					cc.ReloadState(ctx)
				}
			}
			errs = append(errs, unavailable("claim", err))
			continue
		}
		if len(v) == 0 {
			errs = append(errs, unexpected("claim", v))
			continue
		}
		if st, _ := v[0].(string); st != "claimed" {
			continue
		}
		if len(v) != 6 {
			errs = append(errs, unexpected("claim", v))
			continue
		}
		str := func(i int) string { s, _ := v[i].(string); return s }
		p := Pending{Scope: r.scope, Key: r.key, Token: str(1), Target: str(2), Fingerprint: str(3)}
		if cr, err := strconv.ParseInt(str(4), 10, 64); err == nil {
			p.CreatedAt = time.UnixMilli(cr).UTC()
		}
		p.Attempts, _ = strconv.Atoi(str(5))
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// LoadForReconcile reads one record for the admin command (a lookup now):
// ErrNotFound when absent; ok=false, with the record, when no lookup may
// resolve it: completed, in progress with its lease still running, or not
// on a route that reconciles (its forwarded request carried no attempt id
// the upstream could have stored, so a "not executed" would be a guess).
func (s *Store) LoadForReconcile(ctx context.Context, scope, key string) (Pending, *api.Record, bool, error) {
	v, err := s.runRecord(ctx, "load for reconcile", getScript, false, scope, key, "0")
	if err != nil {
		return Pending{}, nil, false, err
	}
	rec, err := decodeRecord("load for reconcile", scope, key, v, false)
	if err != nil {
		return Pending{}, nil, false, err
	}
	tok, _ := v[15].(string)
	p := Pending{Scope: scope, Key: key, Token: tok, Target: rec.ReconcileTarget,
		Fingerprint: rec.Fingerprint, CreatedAt: rec.CreatedAt, Attempts: rec.ReconcileAttempts}
	// decodeRecord shows a lease that ended as indeterminate already.
	ok := rec.State == api.StateIndeterminate && rec.OnIndeterminate == api.LeaseReconcile && tok != ""
	return p, rec, ok, nil
}

// ApplyExecuted completes the record with resp iff it is still
// indeterminate (or in progress with its lease ended) under p.Token on a
// route that reconciles; otherwise (completed or released meanwhile,
// another token) it returns applied=false and changes nothing. It drops
// the index entry when it applies. resp obeys the cap of Complete (over
// it, only the status is kept, BodyOmitted); the record lives its TTL from
// now, as after Complete. Durable mode: it waits for the replicas like
// Complete. A re-run after a lost reply answers applied.
func (s *Store) ApplyExecuted(ctx context.Context, p Pending, resp api.StoredResponse) (bool, error) {
	if err := s.checkPending(p); err != nil {
		return false, err
	}
	hdr, body, omit, err := s.encodeResponse("apply executed", resp)
	if err != nil {
		return false, err
	}
	rk := s.RecordKey(p.Scope, p.Key)
	n, err := s.run(ctx, call{op: "apply_executed", script: applyExecutedScript, write: true, optional: 1,
		keys: []string{rk, s.reconcileIndexKey(rk)},
		args: []any{p.Token, newNonce(), resp.Status, hdr, body, omit}}).Int64()
	if err != nil {
		return false, unavailable("apply executed", err)
	}
	return n == 1, nil
}

// ApplyNotExecuted deletes the record under the same condition as
// ApplyExecuted (the upstream refuses the attempt from now on, so a retry
// may execute), with its index entry; applied=false and no change
// otherwise. Durable mode: it waits for the replicas like Release. A
// re-run after a lost reply finds the record gone and answers
// applied=false.
func (s *Store) ApplyNotExecuted(ctx context.Context, p Pending) (bool, error) {
	if err := s.checkPending(p); err != nil {
		return false, err
	}
	rk := s.RecordKey(p.Scope, p.Key)
	n, err := s.run(ctx, call{op: "apply_not_executed", script: applyNotExecutedScript, write: true, optional: 1,
		keys: []string{rk, s.reconcileIndexKey(rk)}, args: []any{p.Token}}).Int64()
	if err != nil {
		return false, unavailable("apply not executed", err)
	}
	return n == 1, nil
}

// Postpone files p for its next lookup after from now and counts the
// lookup (attempts + 1, last answer last: api.ReconcileUnknown,
// api.ReconcileFailed, or another outcome that did not resolve it), iff the
// record is still indeterminate (or in progress with its lease ended)
// under p.Token; ErrStaleToken and no change otherwise.
func (s *Store) Postpone(ctx context.Context, p Pending, after time.Duration, last string) error {
	if err := s.checkPending(p); err != nil {
		return err
	}
	if after < time.Millisecond || after > api.MaxTTL {
		return invalid("postpone by %v: want 1ms to %v", after, api.MaxTTL)
	}
	switch last {
	case api.ReconcileUnknown, api.ReconcileFailed, api.ReconcileExecuted, api.ReconcileNotExecuted:
	default:
		return invalid("last answer %q: want %q, %q, %q or %q", last,
			api.ReconcileUnknown, api.ReconcileFailed, api.ReconcileExecuted, api.ReconcileNotExecuted)
	}
	rk := s.RecordKey(p.Scope, p.Key)
	n, err := s.run(ctx, call{op: "postpone", script: postponeScript, write: true,
		keys: []string{rk, s.reconcileIndexKey(rk)},
		args: []any{p.Token, after.Milliseconds(), last, newNonce()}}).Int64()
	if err != nil {
		return unavailable("postpone", err)
	}
	if n != 1 {
		return ErrStaleToken
	}
	return nil
}

func (s *Store) checkPending(p Pending) error {
	if s.optErr != nil {
		return s.optErr
	}
	if err := validateScopeKey(p.Scope, p.Key); err != nil {
		return err
	}
	return validateToken(p.Token)
}
