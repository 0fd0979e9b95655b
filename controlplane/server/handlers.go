package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/store"
)

func (s *Server) smallLimit() int64 { return min(smallBodyLimit, s.opt.MaxRequestBytes) }

func (s *Server) opContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opt.OpTimeout)
}

// refuse answers a request refused before it reached the store.
func refuse(w http.ResponseWriter, ri *reqInfo, p *problem) {
	ri.outcome = outInvalid
	if p.status == http.StatusRequestEntityTooLarge {
		ri.outcome = outTooLarge
	}
	writeProblem(w, p)
}

// fail answers a store error.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ri *reqInfo, err error) {
	switch {
	case errors.Is(err, store.ErrStaleToken):
		ri.outcome = outStale
		writeProblem(w, &problem{http.StatusConflict, probStaleToken, "Stale token",
			"the token no longer holds this key: the lease ended and another request took the key over, or the key was completed by another token, released, abandoned or deleted; nothing was changed"})
	case errors.Is(err, store.ErrNotFound):
		ri.outcome = outNotFound
		writeProblem(w, &problem{http.StatusNotFound, probRecordNotFound, "Record not found",
			"no record for this scope and key"})
	case errors.Is(err, store.ErrNotInProgress):
		ri.outcome = outNotInProgress
		writeProblem(w, notInProgress())
	case errors.Is(err, store.ErrUnreadableResponse):
		// Admin GET with body of a record whose stored headers are corrupt.
		ri.outcome = outError
		ri.err = err
		s.m.unreadable.WithLabelValues(ri.op, reasonCorrupt).Inc()
		writeProblem(w, &problem{http.StatusInternalServerError, probInternal, "Stored response cannot be read",
			"the stored response is corrupt; see the control plane's log"})
	case errors.Is(err, store.ErrInvalidRequest):
		// The edge checks come first; this is what only the store knows
		// (e.g. a TTL shorter than an explicit lease, or over the maximum).
		ri.outcome = outInvalid
		writeProblem(w, badRequest(strings.TrimPrefix(err.Error(), store.ErrInvalidRequest.Error()+": ")))
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		// The caller went away; nobody reads this answer.
		ri.outcome = outCanceled
		writeProblem(w, &problem{http.StatusServiceUnavailable, probUnavailable, "Canceled", "the request was canceled"})
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		ri.outcome = outError
		ri.err = err
		s.m.redisErrs.WithLabelValues(ri.op).Inc()
		detail := "the control plane cannot reach Redis or Redis did not answer in time; retry later"
		if errors.Is(err, store.ErrNotDurable) {
			detail = "durable mode: Redis's master may have made the change, but too few replicas acknowledged it in time, so it may be lost in a failover; the outcome is unknown: retry later"
		}
		writeProblem(w, &problem{http.StatusServiceUnavailable, probUnavailable, "Key store unavailable", detail})
	default:
		// A misconfigured store (ErrInvalidOptions) or a bug.
		ri.outcome = outError
		ri.err = err
		writeProblem(w, &problem{http.StatusInternalServerError, probInternal, "Internal error",
			"the control plane failed; see its log"})
	}
}

func notInProgress() *problem {
	return &problem{http.StatusConflict, probNotInProgress, "Not in progress",
		"the record is completed, not in progress: release refuses it (delete it if you mean to)"}
}

// aad binds a sealed body to its record (the reconciler seals the bodies
// it stores the same way).
func aad(scope, key string) []byte { return seal.RecordAAD(scope, key) }

// openBody decrypts a stored response's body in place when encryption is on.
func (s *Server) openBody(resp *api.StoredResponse, scope, key string) error {
	if s.opt.Sealer == nil || resp == nil || len(resp.Body) == 0 {
		return nil
	}
	pt, err := s.opt.Sealer.Open(resp.Body, aad(scope, key))
	if err != nil {
		return err
	}
	resp.Body = pt
	return nil
}

func undecryptableErr(err error) error {
	return fmt.Errorf("stored body cannot be decrypted (key rotated away, or stored before encryption was turned on?): %w", err)
}

// undecryptable answers the admin GET with body of a record whose body
// does not open: 500, the operator asked for the body.
func (s *Server) undecryptable(w http.ResponseWriter, ri *reqInfo, err error) {
	ri.outcome = outDecryptError
	ri.err = undecryptableErr(err)
	s.m.unreadable.WithLabelValues(ri.op, reasonUndecryptable).Inc()
	writeProblem(w, &problem{http.StatusInternalServerError, probUndecryptable, "Stored response cannot be decrypted",
		"the stored response body does not open with the configured encryption keys; see the control plane's log"})
}

// unreadableOnReserve notes that a completed record's stored response could
// not be read while answering a reserve: the answer stays completed (the
// operation ran; an error would let a fail-open filter run it again), the
// request is logged at ERROR with the cause and counted.
func (s *Server) unreadableOnReserve(ri *reqInfo, reason string, err error) {
	ri.err = err
	ri.alert = true
	s.m.unreadable.WithLabelValues(ri.op, reason).Inc()
}

// omitted is what a reserve answers for a stored response it cannot read:
// the status, stored in the clear, and body_omitted.
func omitted(resp *api.StoredResponse) *api.StoredResponse {
	return &api.StoredResponse{Status: resp.Status, BodyOmitted: true}
}

// decodeNamed reads a request body of at most limit bytes into v
// (decodeJSON) and checks the scope and key it names, which scope and key
// point into; it notes them for the request's log line. On bad input it
// answers the refusal and reports false.
func decodeNamed(w http.ResponseWriter, r *http.Request, ri *reqInfo, limit int64, v any, scope, key *string) bool {
	if p := decodeJSON(w, r, limit, v); p != nil {
		refuse(w, ri, p)
		return false
	}
	if p := validateNames(*scope, *key); p != nil {
		refuse(w, ri, p)
		return false
	}
	ri.scope, ri.key = *scope, *key
	return true
}

// refuseInvalid answers 400 with the first error of errs that is not nil
// and reports whether it did. The checks are pure: evaluating them all
// before looking changes nothing but their layout.
func refuseInvalid(w http.ResponseWriter, ri *reqInfo, errs ...error) bool {
	for _, err := range errs {
		if err != nil {
			refuse(w, ri, badRequest(err.Error()))
			return true
		}
	}
	return false
}

// notNegative checks a duration in milliseconds where 0 means the default.
func notNegative(field string, ms int64) error {
	if ms < 0 {
		return fmt.Errorf("%s is %d; want 0 (the default) or more", field, ms)
	}
	return nil
}

func validateNames(scope, key string) *problem {
	if err := api.ValidateName("scope", scope); err != nil {
		return badRequest(err.Error())
	}
	if err := api.ValidateName("key", key); err != nil {
		return badRequest(err.Error())
	}
	return nil
}

func (s *Server) reserve(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opReserve
	var req api.ReserveRequest
	if !decodeNamed(w, r, ri, s.smallLimit(), &req, &req.Scope, &req.Key) ||
		refuseInvalid(w, ri, api.ValidateFingerprint(req.Fingerprint), notNegative("lease_ms", req.LeaseMS),
			notNegative("ttl_ms", req.TTLMS), api.ValidateOnIndeterminate(req.OnIndeterminate)) {
		return
	}
	if p := s.checkReconcileTarget(req); p != nil {
		refuse(w, ri, p)
		return
	}
	if req.Holder != "" && refuseInvalid(w, ri, api.ValidateHolder(req.Holder)) {
		return
	}
	if !s.admit(w, r, ri, admitLow) {
		return
	}
	defer s.gate.leave()
	ctx, cancel := s.opContext(r)
	defer cancel()
	res, err := s.store.Reserve(ctx, req)
	if errors.Is(err, store.ErrLeaseEnded) {
		// A key just burned: its holder went silent past the lease. The
		// answer stands; the transition is logged at WARN and counted.
		ri.warn = true
		ri.err = err
		s.m.leasesEnded.Inc()
		err = nil
	}
	if errors.Is(err, store.ErrFenced) {
		// The holder released before its reserve arrived: answered
		// in_progress, acquiring nothing, counted apart.
		ri.outcome = outFenced
		writeJSON(w, http.StatusOK, res)
		return
	}
	if errors.Is(err, store.ErrUnreadableResponse) && res.Outcome == api.Completed && res.Response != nil {
		s.unreadableOnReserve(ri, reasonCorrupt, err)
		res.Response = omitted(res.Response)
		err = nil
	}
	if err != nil {
		s.fail(w, r, ri, err)
		return
	}
	if res.Outcome == api.Completed {
		if err := s.openBody(res.Response, req.Scope, req.Key); err != nil {
			s.unreadableOnReserve(ri, reasonUndecryptable, undecryptableErr(err))
			res.Response = omitted(res.Response)
		}
	}
	ri.outcome = string(res.Outcome)
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opComplete
	var req api.CompleteRequest
	if !decodeNamed(w, r, ri, s.opt.MaxRequestBytes, &req, &req.Scope, &req.Key) {
		return
	}
	statusErr := api.ValidateStatus(req.Response.Status)
	if statusErr != nil {
		statusErr = fmt.Errorf("response.%w", statusErr)
	}
	if refuseInvalid(w, ri, api.ValidateToken(req.Token), statusErr, api.ValidateHeaders(req.Response.Headers)) {
		return
	}
	s.settle(w, r, ri, outCompleted, func(ctx context.Context) (string, error) {
		if s.opt.Sealer != nil && len(req.Response.Body) > 0 {
			req.Response.Body = s.opt.Sealer.Seal(req.Response.Body, aad(req.Scope, req.Key))
		}
		return outCompleted, s.store.Complete(ctx, req)
	})
}

// settle runs the store call of a complete, release or abandon once it is
// admitted, under the op timeout: the answer is a Result with answer, and
// the call's outcome is what the log and metrics count; a store error is
// answered by fail.
func (s *Server) settle(w http.ResponseWriter, r *http.Request, ri *reqInfo, answer string, call func(ctx context.Context) (outcome string, err error)) {
	if !s.admit(w, r, ri, admitOutcome) {
		return
	}
	defer s.gate.leave()
	ctx, cancel := s.opContext(r)
	defer cancel()
	outcome, err := call(ctx)
	if err != nil {
		s.fail(w, r, ri, err)
		return
	}
	ri.outcome = outcome
	writeJSON(w, http.StatusOK, api.Result{Outcome: answer})
}

// release frees a reservation by its token, or by the holder id its
// reserve carried (exactly one of the two). By holder the answer is
// "released" whether the record was deleted or only the fence written:
// either way the holder holds nothing and never will on this key.
func (s *Server) release(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opRelease
	var req api.ReleaseRequest
	if !decodeNamed(w, r, ri, s.smallLimit(), &req, &req.Scope, &req.Key) {
		return
	}
	if (req.Token == "") == (req.Holder == "") {
		refuse(w, ri, badRequest("a release names exactly one of token and holder"))
		return
	}
	idErr := api.ValidateToken(req.Token)
	if req.Holder != "" {
		idErr = api.ValidateHolder(req.Holder)
	}
	if refuseInvalid(w, ri, idErr) {
		return
	}
	s.settle(w, r, ri, outReleased, func(ctx context.Context) (string, error) {
		if req.Holder == "" {
			return outReleased, s.store.Release(ctx, req)
		}
		deleted, err := s.store.ReleaseHolder(ctx, req.Scope, req.Key, req.Holder)
		if !deleted {
			return outFenced, err
		}
		return outReleased, err
	})
}

func (s *Server) abandon(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opAbandon
	var req api.AbandonRequest
	if !decodeNamed(w, r, ri, s.smallLimit(), &req, &req.Scope, &req.Key) ||
		refuseInvalid(w, ri, api.ValidateToken(req.Token)) {
		return
	}
	s.settle(w, r, ri, outIndeterminate, func(ctx context.Context) (string, error) {
		return outIndeterminate, s.store.Abandon(ctx, req)
	})
}

// adminQuery parses ?scope=S&key=K plus optional boolean flags. Unknown or
// repeated parameters are refused: a mistyped dry_run must not turn a dry
// run into a deletion.
func adminQuery(r *http.Request, flags ...string) (scope, key string, on map[string]bool, p *problem) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", "", nil, badRequest("malformed query string: " + err.Error())
	}
	for name, vals := range q {
		if name != "scope" && name != "key" && !slices.Contains(flags, name) {
			return "", "", nil, badRequest(fmt.Sprintf("unknown query parameter %q; this endpoint takes scope, key and %s", name, strings.Join(flags, ", ")))
		}
		if len(vals) > 1 {
			return "", "", nil, badRequest(fmt.Sprintf("query parameter %q is given %d times", name, len(vals)))
		}
	}
	scope, key = q.Get("scope"), q.Get("key")
	if p := validateNames(scope, key); p != nil {
		return "", "", nil, p
	}
	on = map[string]bool{}
	for _, flag := range flags {
		// A flag given bare or empty (?dry_run) is refused, not read as 0:
		// an operator who meant a dry run would see the change made.
		switch v := strings.ToLower(q.Get(flag)); {
		case !q.Has(flag), v == "0", v == "false":
		case v == "1", v == "true":
			on[flag] = true
		default:
			return "", "", nil, badRequest(fmt.Sprintf("query parameter %q is %q; want 1 or 0", flag, v))
		}
	}
	return scope, key, on, nil
}

// adminNamed is adminQuery for a handler: it notes the scope and key for
// the request's log line, or answers the refusal and reports false.
func adminNamed(w http.ResponseWriter, r *http.Request, ri *reqInfo, flags ...string) (scope, key string, on map[string]bool, ok bool) {
	scope, key, on, p := adminQuery(r, flags...)
	if p != nil {
		refuse(w, ri, p)
		return "", "", nil, false
	}
	ri.scope, ri.key = scope, key
	return scope, key, on, true
}

func (s *Server) adminGet(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opAdminGet
	scope, key, flags, ok := adminNamed(w, r, ri, "body")
	if !ok {
		return
	}
	withBody := flags["body"]
	if !s.admit(w, r, ri, admitLow) {
		return
	}
	defer s.gate.leave()
	ctx, cancel, rep := s.nodeContext(r)
	defer cancel()
	rec, err := s.store.Get(ctx, scope, key, withBody)
	setNode(w, rep)
	if err != nil {
		s.fail(w, r, ri, err)
		return
	}
	if !withBody {
		rec.Response = nil
	} else if err := s.openBody(rec.Response, scope, key); err != nil {
		s.undecryptable(w, ri, err)
		return
	}
	ri.outcome = outFound
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) adminDelete(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	s.adminMutation(w, r, ri, opAdminDelete, func(ctx context.Context, scope, key string, dryRun, force bool) (*api.Record, api.Effect, error) {
		if dryRun {
			rec, err := s.store.Get(ctx, scope, key, false)
			if err == nil && !force && leaseLive(rec) {
				err = store.ErrLeaseLive
			}
			return rec, api.EffectWouldDelete, err
		}
		if force {
			rec, err := s.store.Delete(ctx, scope, key)
			return rec, api.EffectDeleted, err
		}
		rec, err := s.store.DeleteUnlessLeased(ctx, scope, key)
		return rec, api.EffectDeleted, err
	})
}

func (s *Server) adminRelease(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	s.adminMutation(w, r, ri, opAdminRelease, func(ctx context.Context, scope, key string, dryRun, force bool) (*api.Record, api.Effect, error) {
		if dryRun {
			rec, err := s.store.Get(ctx, scope, key, false)
			switch {
			case err != nil:
			case rec.State == api.StateCompleted:
				err = store.ErrNotInProgress
			case !force && leaseLive(rec):
				err = store.ErrLeaseLive
			}
			return rec, api.EffectWouldRelease, err
		}
		if force {
			rec, err := s.store.ForceRelease(ctx, scope, key)
			return rec, api.EffectReleased, err
		}
		rec, err := s.store.ReleaseUnlessLeased(ctx, scope, key)
		return rec, api.EffectReleased, err
	})
}

// leaseLive tells a dry run that the record is in progress with its lease
// still running, by this instance's clock (the real run decides by
// Redis's, atomically).
func leaseLive(rec *api.Record) bool {
	return rec.State == api.StateInProgress && rec.LeaseExpiresAt != nil && rec.LeaseExpiresAt.After(time.Now())
}

// adminMutation serves delete and release: ?scope=&key=[&dry_run=1]
// [&force=1], one store call (a Get for a dry run), and the answer
// adminResult gives. Without force, a record whose lease still runs is
// refused (409 lease-live).
func (s *Server) adminMutation(w http.ResponseWriter, r *http.Request, ri *reqInfo, op string,
	do func(ctx context.Context, scope, key string, dryRun, force bool) (*api.Record, api.Effect, error)) {
	ri.op = op
	scope, key, flags, ok := adminNamed(w, r, ri, "dry_run", "force")
	if !ok {
		return
	}
	dryRun := flags["dry_run"]
	if !s.admit(w, r, ri, admitLow) {
		return
	}
	defer s.gate.leave()
	ctx, cancel, rep := s.nodeContext(r)
	defer cancel()
	rec, effect, err := do(ctx, scope, key, dryRun, flags["force"])
	if !dryRun && (err == nil || errors.Is(err, store.ErrNotFound)) {
		// Tell the edges, also when the record was already gone: an
		// operator who retries a delete whose answer was lost notifies
		// them again.
		n, berr := s.store.BumpEdgeEpoch(ctx)
		setNode(w, rep)
		if berr != nil {
			s.m.epochBumps.WithLabelValues("failed").Inc()
			ri.outcome = outEpochFailed
			ri.err = berr
			writeProblem(w, &problem{http.StatusServiceUnavailable, probEdgesNotTold, "Edges not told",
				"the record was changed (or was already absent) but the edge epoch could not be bumped, so filters may keep replaying it from their edge caches; retrying this request is safe"})
			return
		}
		s.m.epochBumps.WithLabelValues("ok").Inc()
		s.m.epoch.Set(float64(n))
		s.log.Info("edge epoch bumped", "op", op, "scope", scope, "key", key, "epoch", n)
	}
	setNode(w, rep)
	s.adminResult(w, r, ri, rec, err, effect)
}

// checkReconcileTarget refuses a reserve asking for reconcile with a
// target this control plane cannot ask: its key would stay indeterminate
// whatever the upstream knows. Failing the first request loudly beats
// burning keys silently.
func (s *Server) checkReconcileTarget(req api.ReserveRequest) *problem {
	if err := api.ValidateReconcileTarget(req.OnIndeterminate, req.ReconcileTarget); err != nil {
		return badRequest(err.Error())
	}
	if req.OnIndeterminate != api.LeaseReconcile {
		return nil
	}
	name := req.ReconcileTarget
	if name == "" {
		name = api.DefaultReconcileTarget
	}
	if s.opt.Reconciler == nil || !s.opt.Reconciler.HasTarget(name) {
		return badRequest(fmt.Sprintf("no reconcile target %s is configured on this control plane (--reconcile-url %s=...)", name, name))
	}
	return nil
}

// adminReconcile serves POST ?scope=&key=[&dry_run=1][&body=1]: one
// lookup now, applied unless dry_run. The upstream's answer is shown, its
// body only with body=1.
func (s *Server) adminReconcile(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opAdminRecon
	scope, key, flags, ok := adminNamed(w, r, ri, "dry_run", "body")
	if !ok {
		return
	}
	if s.opt.Reconciler == nil {
		refuse(w, ri, badRequest("reconcile is off on this control plane: no --reconcile-url is configured"))
		return
	}
	if !s.admit(w, r, ri, admitLow) {
		return
	}
	defer s.gate.leave()
	// No op timeout: the reconciler bounds its lookup (--reconcile-timeout)
	// and each store call (--op-timeout) itself.
	ctx, rep := store.WithNodeReport(r.Context())
	res, err := s.opt.Reconciler.Reconcile(ctx, scope, key, flags["dry_run"])
	setNode(w, rep)
	var lerr *reconcile.LookupError
	switch {
	case errors.Is(err, store.ErrNotFound):
		ri.outcome = outNoop
		writeJSON(w, http.StatusOK, api.AdminResult{Effect: api.EffectNoop})
		return
	case errors.Is(err, store.ErrLeaseLive):
		ri.outcome = outLeaseLive
		until := "has not ended"
		if res.Record != nil && res.Record.LeaseExpiresAt != nil {
			until = "runs until " + res.Record.LeaseExpiresAt.UTC().Format(time.RFC3339Nano)
		}
		writeProblem(w, &problem{http.StatusConflict, probLeaseLive, "Lease still running",
			"the record is in progress and its lease " + until + ": its request may still be executing, and the holder will settle it; nothing was asked or changed. Reconcile a record once its lease has ended"})
		return
	case errors.Is(err, reconcile.ErrNotReconcilable):
		ri.outcome = outNotReconcile
		writeProblem(w, &problem{http.StatusConflict, probNotReconcilable, "Not reconcilable",
			"the record was reserved on a route whose on_indeterminate is not reconcile: its request carried no attempt id the upstream could know, so its answer could not be trusted; nothing was asked or changed. Resolve it with keys release or keys delete"})
		return
	case errors.As(err, &lerr):
		ri.outcome = outLookupFailed
		ri.err = err
		writeProblem(w, &problem{http.StatusBadGateway, probLookupFailed, "Reconcile lookup failed",
			"the upstream gave no trustworthy answer (" + lerr.Reason + "); the record stays indeterminate and is asked about again later"})
		return
	case err != nil:
		s.fail(w, r, ri, err)
		return
	}
	if res.Record != nil {
		res.Record.Response = nil
	}
	if res.Answer != nil && res.Answer.Response != nil && !flags["body"] {
		a := *res.Answer
		resp := *a.Response
		resp.Body = nil
		a.Response = &resp
		res.Answer = &a
	}
	ri.outcome = string(res.Effect)
	writeJSON(w, http.StatusOK, res)
}

// adminList serves GET ?state=S[&scope=][&cursor=][&limit=]: a page of
// the records in state S, without bodies.
func (s *Server) adminList(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opAdminList
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		refuse(w, ri, badRequest("malformed query string: "+err.Error()))
		return
	}
	for name, vals := range q {
		switch name {
		case "state", "scope", "cursor", "limit":
		default:
			refuse(w, ri, badRequest(fmt.Sprintf("unknown query parameter %q; this endpoint takes state, scope, cursor and limit", name)))
			return
		}
		if len(vals) > 1 {
			refuse(w, ri, badRequest(fmt.Sprintf("query parameter %q is given %d times", name, len(vals))))
			return
		}
	}
	state := api.State(q.Get("state"))
	if state != api.StateIndeterminate && state != api.StateInProgress {
		refuse(w, ri, badRequest(fmt.Sprintf("state is %q; want %s or %s", state, api.StateIndeterminate, api.StateInProgress)))
		return
	}
	limit := api.DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxListLimit {
			refuse(w, ri, badRequest(fmt.Sprintf("limit is %q; want 1 to %d", v, api.MaxListLimit)))
			return
		}
		limit = n
	}
	scope := q.Get("scope")
	if _, given := q["scope"]; given {
		if err := api.ValidateName("scope", scope); err != nil {
			refuse(w, ri, badRequest(err.Error()))
			return
		}
	}
	ri.scope = scope
	if !s.admit(w, r, ri, admitLow) {
		return
	}
	defer s.gate.leave()
	ctx, cancel, rep := s.nodeContext(r)
	defer cancel()
	recs, next, err := s.store.List(ctx, state, scope, q.Get("cursor"), limit)
	setNode(w, rep)
	if err != nil {
		s.fail(w, r, ri, err)
		return
	}
	if recs == nil {
		recs = []api.Record{}
	}
	ri.outcome = outListed
	writeJSON(w, http.StatusOK, api.KeyList{Records: recs, Cursor: next})
}

// edgeEpoch answers the edge epoch the filters poll.
func (s *Server) edgeEpoch(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ri.op = opEdgeEpoch
	if !s.admit(w, r, ri, admitLow) {
		return
	}
	defer s.gate.leave()
	ctx, cancel := s.opContext(r)
	defer cancel()
	n, err := s.store.EdgeEpoch(ctx)
	if err != nil {
		s.fail(w, r, ri, err)
		return
	}
	s.m.epoch.Set(float64(n))
	ri.outcome = outFound
	writeJSON(w, http.StatusOK, api.EdgeEpoch{Epoch: n})
}

// adminResult answers a delete or release: an absent record is a noop
// (200), so that an automated caller can retry safely.
func (s *Server) adminResult(w http.ResponseWriter, r *http.Request, ri *reqInfo, rec *api.Record, err error, effect api.Effect) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		ri.outcome = outNoop
		writeJSON(w, http.StatusOK, api.AdminResult{Effect: api.EffectNoop})
	case errors.Is(err, store.ErrLeaseLive) && rec != nil && rec.LeaseExpiresAt != nil:
		ri.outcome = outLeaseLive
		writeProblem(w, &problem{http.StatusConflict, probLeaseLive, "Lease still running",
			"the record is in progress and its lease runs until " + rec.LeaseExpiresAt.UTC().Format(time.RFC3339Nano) +
				": the original request may still be executing, and freeing its key would let a retry run it a second time; nothing was changed. Wait for the lease to end, or pass force=1"})
	case err != nil:
		s.fail(w, r, ri, err)
	default:
		if rec != nil {
			rec.Response = nil // never the body here
		}
		ri.outcome = string(effect)
		writeJSON(w, http.StatusOK, api.AdminResult{Effect: effect, Record: rec})
	}
}

// readier is a store that tells readiness beyond a PING (*store.Store:
// a master answers, with enough replicas in durable mode).
type readier interface {
	Ready(ctx context.Context) error
}

// headerRedisNode names the Redis node(s) that answered an admin request.
const headerRedisNode = "Idemgate-Redis-Node"

// nodeContext is opContext with a store.NodeReport, for the admin
// endpoints; setNode writes what it recorded as Idemgate-Redis-Node.
func (s *Server) nodeContext(r *http.Request) (context.Context, context.CancelFunc, *store.NodeReport) {
	ctx, cancel := s.opContext(r)
	ctx, rep := store.WithNodeReport(ctx)
	return ctx, cancel, rep
}

func setNode(w http.ResponseWriter, rep *store.NodeReport) {
	if v := rep.String(); v != "" {
		w.Header().Set(headerRedisNode, v)
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.ReadyTimeout)
	defer cancel()
	var err error
	if rd, ok := s.store.(readier); ok {
		err = rd.Ready(ctx)
	} else {
		err = s.store.Ping(ctx)
	}
	if err != nil {
		ri.err = err
		detail := "Redis does not answer"
		var nr *store.NotReadyError
		if errors.As(err, &nr) {
			// The reason, not the node's address: /readyz answers anyone.
			detail = "Redis is not ready: " + nr.Reason + " (the log names the node)"
		} else {
			s.m.redisErrs.WithLabelValues(opReady).Inc()
		}
		writeProblem(w, &problem{http.StatusServiceUnavailable, probUnavailable, "Not ready", detail})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	s.metrics.ServeHTTP(w, r)
}
