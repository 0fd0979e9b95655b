// Package reconcile resolves indeterminate records by asking their
// upstream whether the request ran: on routes that opt in
// (on_indeterminate "reconcile"), a record whose request went upstream
// without a trustworthy answer is looked up at the upstream's lookup URL;
// "executed" completes it with the upstream's response (retries replay
// it), "not executed" releases it (a retry executes), "unknown" and every
// failed lookup leave it indeterminate and ask again later. A failed
// lookup is never read as "not executed". The contract upstreams
// implement is in controlplane/README.md.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/store"
)

// Store is what the reconciler needs of the key store; *store.Store
// implements it.
type Store interface {
	ClaimDue(ctx context.Context, n int, claim time.Duration) ([]store.Pending, error)
	LoadForReconcile(ctx context.Context, scope, key string) (store.Pending, *api.Record, bool, error)
	ApplyExecuted(ctx context.Context, p store.Pending, resp api.StoredResponse) (bool, error)
	ApplyNotExecuted(ctx context.Context, p store.Pending) (bool, error)
	Postpone(ctx context.Context, p store.Pending, after time.Duration, last string) error
}

// Defaults of Options.
const (
	DefaultInterval    = 500 * time.Millisecond
	DefaultConcurrency = 8
	DefaultBatch       = 64
	DefaultOpTimeout   = time.Second
	// claimSlack is added to twice the lookup timeout to make the claim:
	// a record is not handed out again while its lookup and the store
	// calls around it may still run.
	claimSlack = time.Second
	// claimErrorLogEvery bounds the WARN lines of a failing ClaimDue
	// (Redis down): the loop tries every interval.
	claimErrorLogEvery = 10 * time.Second
)

// ErrNotReconcilable: the record's route does not reconcile (it locks or
// releases), so its request carried no attempt id the upstream could know;
// asking about it could only be answered "not executed" by a guess.
var ErrNotReconcilable = errors.New("the record's route does not reconcile (on_indeterminate is not reconcile)")

// Options configure a Reconciler.
type Options struct {
	// Interval: how often the loop claims due records (--reconcile-interval).
	Interval time.Duration
	// Concurrency bounds the lookups in flight (--reconcile-concurrency).
	Concurrency int
	// Batch bounds the records one claim takes (never more than the free
	// workers, so each starts its lookup at once, within its claim).
	Batch int
	// MaxBackoff caps the wait after unknown or failed lookups
	// (--reconcile-max-backoff).
	MaxBackoff time.Duration
	// OpTimeout bounds each store call.
	OpTimeout time.Duration
	// Sealer, when set, seals an executed answer's body as the server
	// seals a complete's (encryption at rest).
	Sealer  *seal.Sealer
	Logger  *slog.Logger
	Metrics *Metrics // nil: counted on a private registry
}

// Reconciler runs the lookups: its loop (Run) over the records the store
// says are due, and one record on demand (Reconcile, the admin endpoint).
type Reconciler struct {
	st     Store
	client *Client
	opt    Options
	log    *slog.Logger
	m      *Metrics
	claim  time.Duration
}

// New returns a Reconciler over st asking through c.
func New(st Store, c *Client, opt Options) *Reconciler {
	if opt.Interval <= 0 {
		opt.Interval = DefaultInterval
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = DefaultConcurrency
	}
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = DefaultMaxBackoff
	}
	if opt.OpTimeout <= 0 {
		opt.OpTimeout = DefaultOpTimeout
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	m := opt.Metrics
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry(), nil)
	}
	return &Reconciler{st: st, client: c, opt: opt, log: opt.Logger, m: m, claim: 2*c.timeout + claimSlack}
}

// HasTarget reports whether a lookup target is configured under name (""
// is the default target).
func (r *Reconciler) HasTarget(name string) bool { return r.client.HasTarget(name) }

// Run claims due records every Interval and looks them up, at most
// Concurrency at a time, until ctx ends; it then waits for the lookups in
// flight (canceled with ctx) and returns. A lookup cut by the end of ctx
// changes nothing: its claim runs out and a control plane asks again.
func (r *Reconciler) Run(ctx context.Context) {
	slots := make(chan struct{}, r.opt.Concurrency)
	freed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(r.opt.Interval)
	defer tick.Stop()
	var lastErrLog time.Time
	for {
		full := false
		if free := cap(slots) - len(slots); free > 0 {
			n := min(r.opt.Batch, free)
			cctx, cancel := context.WithTimeout(ctx, r.opt.OpTimeout)
			due, err := r.st.ClaimDue(cctx, n, r.claim)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				if time.Since(lastErrLog) >= claimErrorLogEvery {
					lastErrLog = time.Now()
					r.log.Warn("reconcile: cannot claim due records; trying again every interval", "error", err, "interval", r.opt.Interval)
				}
			default:
				lastErrLog = time.Time{}
				full = len(due) == n
			}
			for _, p := range due {
				slots <- struct{}{} // never blocks: at most free were claimed
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() {
						<-slots
						select {
						case freed <- struct{}{}:
						default:
						}
					}()
					r.resolve(ctx, p, false)
				}()
			}
		}
		// A full claim may have left due records behind: claim again as
		// soon as a worker is free rather than at the next tick.
		var wake <-chan struct{}
		if full {
			wake = freed
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
	}
}

// Reconcile looks up one record now, for the admin endpoint: on a dry run
// the query says dry_run and nothing is applied (the effect says what
// would be: would_complete, would_release, or noop for unknown); else the
// answer is applied as the loop would. An absent record is
// store.ErrNotFound; a completed one is answered noop with the record,
// without asking; one in progress with its lease running is
// store.ErrLeaseLive (with the record); one whose route does not
// reconcile is ErrNotReconcilable. A failed lookup is its *LookupError,
// with the record (not dry: postponed like the loop's).
func (r *Reconciler) Reconcile(ctx context.Context, scope, key string, dryRun bool) (api.AdminResult, error) {
	lctx, cancel := context.WithTimeout(ctx, r.opt.OpTimeout)
	p, rec, ok, err := r.st.LoadForReconcile(lctx, scope, key)
	cancel()
	if err != nil {
		return api.AdminResult{}, err
	}
	res := api.AdminResult{Effect: api.EffectNoop, Record: rec}
	switch {
	case ok:
	case rec == nil:
		return res, ErrNotReconcilable
	case rec.State == api.StateCompleted:
		return res, nil
	case rec.OnIndeterminate != api.LeaseReconcile:
		return res, ErrNotReconcilable
	case rec.State == api.StateInProgress:
		return res, store.ErrLeaseLive
	default: // indeterminate without an attempt id to ask about
		return res, ErrNotReconcilable
	}
	effect, ans, err := r.resolve(ctx, p, dryRun)
	res.Effect, res.Answer = effect, ans
	return res, err
}

// resolve asks about p and applies the answer (unless dryRun). It returns
// the effect, the answer (nil when the lookup failed) and the lookup's or
// the store's error.
func (r *Reconciler) resolve(ctx context.Context, p store.Pending, dryRun bool) (api.Effect, *api.ReconcileAnswer, error) {
	target := targetName(p.Target)
	log := r.log.With("scope", p.Scope, "key", p.Key, "target", target, "attempts", p.Attempts)
	q := api.ReconcileQuery{
		Attempt:     p.Token,
		Key:         p.Key,
		Scope:       p.Scope,
		Fingerprint: p.Fingerprint,
		CreatedAt:   p.CreatedAt,
		DryRun:      dryRun,
	}
	start := time.Now()
	r.m.asked.WithLabelValues(target).Inc()
	a, err := r.client.Lookup(ctx, target, q)
	r.m.lookup.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() != nil {
		return api.EffectNoop, nil, ctx.Err() // shutting down, or the admin caller left: no answer, nothing learned
	}
	answer := a.Outcome
	if err != nil {
		answer = api.ReconcileFailed
	}
	r.m.answers.WithLabelValues(target, answer).Inc()
	if dryRun {
		switch answer {
		case api.ReconcileExecuted:
			return api.EffectWouldComplete, &a, nil
		case api.ReconcileNotExecuted:
			return api.EffectWouldRelease, &a, nil
		case api.ReconcileUnknown:
			return api.EffectNoop, &a, nil
		}
		return api.EffectNoop, nil, err
	}

	sctx, cancel := context.WithTimeout(ctx, r.opt.OpTimeout)
	defer cancel()
	switch answer {
	case api.ReconcileExecuted:
		resp := *a.Response
		if r.opt.Sealer != nil && len(resp.Body) > 0 {
			resp.Body = r.opt.Sealer.Seal(resp.Body, seal.RecordAAD(p.Scope, p.Key))
		}
		applied, serr := r.st.ApplyExecuted(sctx, p, resp)
		return r.applied(log, answer, applied, serr, api.EffectCompleted, &a)
	case api.ReconcileNotExecuted:
		applied, serr := r.st.ApplyNotExecuted(sctx, p)
		return r.applied(log, answer, applied, serr, api.EffectReleased, &a)
	}
	wait := nextWait(p.Attempts, a.RetryAfterMS, r.opt.MaxBackoff)
	if answer == api.ReconcileFailed {
		log.Warn("reconcile: lookup failed; the record stays indeterminate", "error", err, "next_in", wait)
	} else {
		log.Info("reconcile: the upstream does not know yet; asking again later", "next_in", wait)
	}
	if perr := r.st.Postpone(sctx, p, wait, answer); perr != nil {
		// The claim runs out and the record is asked about again then.
		log.Warn("reconcile: cannot postpone the record; it is asked about again when its claim ends", "error", perr)
		if err == nil {
			err = fmt.Errorf("postponing: %w", perr)
		}
	}
	if answer == api.ReconcileFailed {
		return api.EffectNoop, nil, err
	}
	return api.EffectNoop, &a, err
}

// applied counts and logs the application of a final answer.
func (r *Reconciler) applied(log *slog.Logger, answer string, applied bool, err error, effect api.Effect, a *api.ReconcileAnswer) (api.Effect, *api.ReconcileAnswer, error) {
	if err != nil {
		log.Warn("reconcile: cannot apply the answer; it is asked again when the claim ends", "answer", answer, "error", err)
		return api.EffectNoop, a, fmt.Errorf("applying %s: %w", answer, err)
	}
	if !applied {
		r.m.applied.WithLabelValues(appliedStale).Inc()
		log.Info("reconcile: the record changed since it was claimed; left alone", "answer", answer)
		return api.EffectNoop, a, nil
	}
	r.m.applied.WithLabelValues(string(effect)).Inc()
	log.Info("reconcile: answer applied", "answer", answer, "effect", effect)
	return effect, a, nil
}
