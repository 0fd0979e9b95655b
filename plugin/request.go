package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/canon"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tidwall/gjson"
)

// phase is where a stream's request stands.
type phase int

const (
	phaseUngoverned phase = iota // no route, no key on an optional one, or fail-open: hands off
	phaseBuffering               // governed: request held while its body arrives
	phaseReserving               // reserve callout in flight; request held
	phaseAnswered                // the filter answered the client itself
	phaseForwarded               // the key is ours (token): the request went upstream
	phaseWaiting                 // on_in_progress wait: held until the plugin's tick polls reserve again
	phaseGone                    // the stream ended before the filter was done with it: only the plugin context acts
)

// httpContext is created per HTTP stream. Every path that pauses the
// request either resumes it or answers the client: a callout that fails or
// times out still calls back (with no headers), and its failure mode
// decides.
type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	id     uint32 // the stream's context ID, to act on it from the plugin's tick

	phase phase
	// matched is the route the request matched, governed or not: its
	// responses lose the not-executed header either way.
	matched *policy.Route
	route   *policy.Route
	// A governed stream keeps copies of the few strings it needs, never
	// the header map: the SDK's header strings all alias one buffer, which
	// any one of them would keep alive (issue 12).
	host   string // the host the fingerprint counts (policy.Route.CanonicalHost)
	method string
	target string
	key    string
	scope  string
	// contentType and fpHeaders (the headers fingerprint.headers names,
	// as received) are held only until the fingerprint is computed.
	contentType string
	fpHeaders   [][2]string
	token       string // fencing token of an acquired reservation
	fp          string // the request's fingerprint
	edgeOn      bool   // the edge cache applies: slots configured, route's edge_cache_ttl > 0
	edge        edgeID // the record's name in the edge cache
	// image is the request image, or its digest when the image is
	// larger than inlineImageMax (edgecache.go), while edgeOn, until the
	// fill; nil when there is nothing to fill.
	image   []byte
	reqSize int // request body bytes so far (cumulative after a pause)
	// held is what this stream counts in its plugin's held bytes (held.go);
	// returned once the stream is done (heldReturned).
	held         int
	heldReturned bool

	// edgeKey is the shared-data key of the record's slot; edgeSeen what
	// the lookup saw of it, where the fill's compare-and-swap starts.
	edgeKey  string
	edgeSeen slotSeen

	// on_in_progress wait: when the wait ends (now() nanoseconds).
	waitUntil int64
	// lastLeaseMS is the holder's remaining lease the last in_progress
	// answer gave, for the Retry-After of a wait that ends without one.
	lastLeaseMS int64

	// holder is the holder id of the last reserve attempt; reservedAt
	// is now() when it was dispatched (the record lives at most its TTL
	// from then, which bounds the retries of its outcome calls).
	holder     string
	reservedAt int64
	// edgeEpoch is what an edge entry this request fills carries: the
	// edge epoch the VM knew when it dispatched the call whose answer
	// fills it (the reserve, or the complete); no fill unless known.
	edgeEpoch      int64
	edgeEpochKnown bool

	resp response
}

// OnHttpRequestHeaders implements types.HttpContext: route match, key,
// scope; then the request is held until its body is complete.
func (c *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	cfg := c.plugin.config
	if cfg == nil {
		return types.ActionContinue
	}
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		proxywasm.LogErrorf("idempotency filter: read request headers: %v", err)
		return types.ActionContinue
	}
	host, _ := header(headers, ":authority")
	target, _ := header(headers, ":path")
	method, _ := header(headers, ":method")
	r, action, ok := c.selectRoute(cfg, host, target, method)
	if !ok {
		return action
	}
	if r == nil {
		c.plugin.stats.bypassNoRoute.Increment(1)
		return types.ActionContinue
	}
	c.matched = r
	if r.AttemptHeader != "" {
		stripAttempt(headers, r.AttemptHeader)
	}
	raw, n := header(headers, r.KeyHeader)
	switch {
	case n == 0 && !r.Required:
		c.plugin.stats.bypassNoKey.Increment(1)
		return types.ActionContinue
	case n == 0:
		return c.answer(probKeyMissing, "this operation is idempotent and requires the "+r.KeyHeader+" header", 0)
	case n > 1:
		return c.answer(probKeyMalformed, "the "+r.KeyHeader+" header is sent more than once", 0)
	}
	key, err := policy.ParseKey(raw, r.KeyFormat, r.MaxKeyLength)
	if err != nil {
		return c.answer(probKeyMalformed, err.Error(), 0)
	}
	scope, missing := scopeOf(r.Scope, headers)
	if missing != "" && !r.AllowAnonymous {
		return c.answer(probPrincipalMissing, "this operation keeps one record per caller and the request carries no "+missing+
			"; authenticate before retrying", 0)
	}
	if coding := contentCoding(headers); coding != "" {
		return c.answer(probContentEncoding, "the request has content-encoding "+strconv.Quote(coding)+
			"; this operation fingerprints the body as sent and accepts it only uncompressed (identity)", 0,
			[2]string{"accept-encoding", "identity"})
	}
	if cl, n := header(headers, "content-length"); n > 0 {
		if size, err := strconv.ParseInt(cl, 10, 64); err == nil && size > int64(r.MaxBodyBytes) {
			return c.answer(probTooLarge, bodyLimitDetail(r), 0)
		}
	}
	contentType, _ := header(headers, "content-type")
	c.route, c.scope, c.fpHeaders = r, scope, selectedHeaders(headers, r.Fingerprint.Headers)
	// One copy of all five: a concatenation is a new string.
	kept := [...]string{r.CanonicalHost(host), method, target, key, contentType}
	all := kept[0] + kept[1] + kept[2] + kept[3] + kept[4]
	for i, dst := range [...]*string{&c.host, &c.method, &c.target, &c.key, &c.contentType} {
		*dst, all = all[:len(kept[i])], all[len(kept[i]):]
	}
	c.plugin.stats.governed.Increment(1)
	if !c.admit() {
		return c.shed()
	}
	if endOfStream {
		return c.reserve(nil)
	}
	c.phase = phaseBuffering
	return types.ActionPause
}

// OnHttpRequestBody implements types.HttpContext. After ActionPause the
// host reports the cumulative size of the buffered body.
func (c *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	switch c.phase {
	case phaseBuffering:
	case phaseReserving, phaseWaiting, phaseAnswered:
		return types.ActionPause
	default:
		return types.ActionContinue
	}
	c.reqSize = bodySize
	if bodySize > c.route.MaxBodyBytes {
		return c.answer(probTooLarge, bodyLimitDetail(c.route), 0)
	}
	if !endOfStream {
		return types.ActionPause
	}
	return c.reserveWithBody()
}

// OnHttpRequestTrailers implements types.HttpContext: with trailers the
// last body callback never says endOfStream, so the trailers end it.
func (c *httpContext) OnHttpRequestTrailers(int) types.Action {
	switch c.phase {
	case phaseBuffering:
		return c.reserveWithBody()
	case phaseReserving, phaseWaiting, phaseAnswered:
		return types.ActionPause
	}
	return types.ActionContinue
}

func (c *httpContext) reserveWithBody() types.Action {
	var body []byte
	if c.reqSize > 0 {
		var err error
		if body, err = proxywasm.GetHttpRequestBody(0, c.reqSize); err != nil {
			proxywasm.LogErrorf("idempotency filter: read request body: %v", err)
			return c.controlPlaneFailed("request body unreadable", false)
		}
	}
	return c.reserve(body)
}

// reserve fingerprints the complete request and asks the control plane
// for the key; the request stays held until the answer. A live edge-cache
// entry answers instead: at once when the entry's request digest is this
// request's (a byte-identical retry: no canonicalizing), else after
// comparing fingerprints.
func (c *httpContext) reserve(body []byte) types.Action {
	r := c.route
	in := canon.Request{Method: c.method, Host: c.host, Target: c.target, Headers: c.fpHeaders, ContentType: c.contentType, Body: body}
	c.contentType, c.fpHeaders = "", nil // held only until now
	defer c.account()
	var e *edgeEntry
	if slots := c.plugin.config.EdgeCacheSlots; slots > 0 && r.EdgeCacheTTL > 0 {
		c.edgeOn = true
		c.edge = newEdgeID(c.plugin.config.ControlPlane.Cluster, c.scope, c.key)
		c.edgeKey = c.edge.slotKey(slots)
		// Until the VM knows the edge epoch it replays nothing: it
		// cannot tell which entries predate an operator's change.
		if epoch, known := c.plugin.edgeEpoch(); known {
			e, c.edgeSeen = edgeLookup(hostShared{}, c.edgeKey, &c.edge, now(), epoch)
		}
		n := requestImageSize(&in, &r.Fingerprint)
		if e != nil && sameRequest(e.request, n, &in, &r.Fingerprint) {
			c.fp = e.fingerprint
			return c.replayStored(&e.resp, true)
		}
		if e == nil { // kept for the fill
			if n <= inlineImageMax {
				c.image = requestImage(make([]byte, 0, n), &in, &r.Fingerprint)
			} else {
				d := requestDigest(&in, &r.Fingerprint)
				c.image = d[:]
			}
		}
	}
	fp, err := canon.Fingerprint(in, r.Fingerprint)
	if err != nil {
		var ce *canon.Error
		if errors.As(err, &ce) {
			return c.answer(probBadJSON, strings.TrimPrefix(ce.Error(), "canon: "), 0)
		}
		return c.answer(probBadJSON, err.Error(), 0)
	}
	c.fp = fp
	if e != nil {
		if e.fingerprint != fp {
			return c.mismatch()
		}
		return c.replayStored(&e.resp, true)
	}
	if err := c.dispatchReserve(); err != nil {
		return c.controlPlaneFailed(err.Error(), false)
	}
	return types.ActionPause
}

// dispatchReserve asks the control plane for the key under a new holder
// id; onReserve gets the answer. The route's on_indeterminate goes with
// it: the control plane applies it should the lease end without word.
func (c *httpContext) dispatchReserve() error {
	c.holder = newHolder()
	req := reserveRequest(c.route, c.scope, c.key, c.fp, c.holder)
	c.phase = phaseReserving
	c.reservedAt = now()
	c.edgeEpoch, c.edgeEpochKnown = c.plugin.edgeEpoch()
	return c.plugin.callControlPlane("POST", api.PathReserve, func(b []byte) []byte { return appendReserve(b, &req) }, c.onReserve)
}

// reserveRequest is the reserve of the record scope, key under route,
// for a request with fingerprint fp, by holder: a stream's own or a
// shared poll's. The route's on_indeterminate goes with it.
func reserveRequest(r *policy.Route, scope, key, fp, holder string) api.ReserveRequest {
	return api.ReserveRequest{
		Scope: scope, Key: key, Fingerprint: fp,
		LeaseMS: r.Lease.Milliseconds(), TTLMS: r.TTL.Milliseconds(),
		OnIndeterminate: leaseEnd(r.OnIndeterminate), ReconcileTarget: r.ReconcileTarget, Holder: holder,
	}
}

// leaseEnd is the wire value of a route's on_indeterminate.
func leaseEnd(o policy.OnIndeterminate) string {
	switch o {
	case policy.ReleaseKey:
		return api.LeaseRelease
	case policy.Reconcile:
		return api.LeaseReconcile
	}
	return api.LeaseLock
}

// stripAttempt removes every value the client sent of a reconcile route's
// attempt header, whatever becomes of the request: the attempt id the
// upstream stores must be the gateway's, never one a client chose (it
// could name another attempt). One removal per value: Envoy removes them
// all at once, a host that removes one per call needs one call each.
func stripAttempt(headers [][2]string, name string) {
	_, n := header(headers, name)
	for range n {
		if err := proxywasm.RemoveHttpRequestHeader(name); err != nil {
			proxywasm.LogErrorf("idempotency filter: remove request header %s: %v", name, err)
			return
		}
	}
}

// forward sends the request upstream under the acquired token. On a
// reconcile route the request carries the token as its attempt id:
// without it the upstream could not answer for this attempt, so a request
// whose header cannot be set is not forwarded (its key is released).
func (c *httpContext) forward(token string) {
	c.token = token
	if h := c.route.AttemptHeader; h != "" {
		if err := proxywasm.ReplaceHttpRequestHeader(h, token); err != nil {
			proxywasm.LogErrorf("idempotency filter: set request header %s: %v; not forwarding %s %s", h, err, c.method, c.target)
			c.plugin.enqueueOutcome(api.PathRelease, appendRelease(nil, c.scope, c.key, token, ""), c.outcomeDeadline(), 0)
			c.answer(probUnavailable, "the idempotency service is unavailable; retry later", 1)
			return
		}
	}
	c.phase = phaseForwarded
	c.plugin.stats.executions.Increment(1)
	resumeRequest()
}

// onReserve acts on the control plane's answer; the request is held until
// it resumes or is answered here.
func (c *httpContext) onReserve(status int, body []byte) {
	if c.phase != phaseReserving {
		return
	}
	rr, reason, mayHold := readReserve(status, body)
	if reason != "" {
		if status == 200 && rr.Outcome != "" && !knownOutcome(rr.Outcome) {
			// The control plane answered, with an outcome this filter does
			// not know (a newer version's, say): it may hold the key, so
			// the request is never forwarded, whatever failure_mode says.
			c.releaseAttempt()
			c.plugin.stats.controlPlaneError.Increment(1)
			proxywasm.LogErrorf("idempotency filter: %s; answering 503 whatever failure_mode says", reason)
			c.answer(probUnavailable, "the idempotency service is unavailable; retry later", 1)
			return
		}
		c.reserveFailed(reason, mayHold)
		return
	}
	switch rr.Outcome {
	case api.Acquired:
		c.forward(rr.Token)
	case api.Completed:
		if rr.Response != nil {
			c.edgeFill(rr.Response, time.Duration(rr.ExpiresInMS)*time.Millisecond)
		}
		c.replayStored(rr.Response, false)
	case api.Mismatch:
		c.mismatch()
	case api.InProgress:
		c.lastLeaseMS = rr.LeaseRemainingMS
		if c.route.OnInProgress == policy.Wait && c.wait() {
			return
		}
		c.inProgress()
	case api.Indeterminate:
		c.answerIndeterminate(rr.ReconcileInMS)
	}
}

// readReserve reads a reserve's answer, the stream's own or a shared
// poll's; reason is non-empty when it is not one to act on, and mayHold
// then says the reserve may have acquired under its holder although the
// answer was lost or failed: no answer, a 5xx (a durable-mode WAIT
// shortfall answers 503 after its script ran), an unreadable answer, an
// acquisition without a token, an outcome this filter does not know. A
// 4xx, and a 503 of admission control (api.ProblemOverloaded: shed
// before any store call), wrote nothing.
func readReserve(status int, body []byte) (rr api.ReserveResponse, reason string, mayHold bool) {
	if status != 200 {
		reason = "reserve " + answerReason(status)
		if status == 503 && gjson.GetBytes(body, "type").Str == api.ProblemOverloaded {
			return rr, reason + " (overloaded: nothing reserved)", false
		}
		return rr, reason, status == 0 || status >= 500
	}
	rr, err := decodeReserveResponse(body)
	if err != nil {
		return rr, "reserve answer unreadable: " + err.Error(), true
	}
	switch {
	case rr.Outcome == api.Acquired && rr.Token == "":
		return rr, "reserve acquired without a token", true
	case !knownOutcome(rr.Outcome):
		return rr, fmt.Sprintf("reserve answered an unknown outcome %q", rr.Outcome), true
	}
	return rr, "", false
}

// knownOutcome tells the reserve outcomes this filter acts on.
func knownOutcome(o api.Outcome) bool {
	switch o {
	case api.Acquired, api.Completed, api.Mismatch, api.InProgress, api.Indeterminate:
		return true
	}
	return false
}

// answerIndeterminate answers the 409 of a record whose outcome is
// unknown. Waiting would not help, unless the control plane is asking the
// upstream about it (reconcileInMS > 0: when it asks next): then the
// answer says when a retry may find it settled. Otherwise nothing will
// resolve it but an operator or the record's TTL.
func (c *httpContext) answerIndeterminate(reconcileInMS int64) {
	c.plugin.stats.indeterminate.Increment(1)
	if reconcileInMS > 0 {
		s := retryAfterSeconds(reconcileInMS)
		c.answer(probIndeterminate, "a request with this "+c.route.KeyHeader+" was forwarded and its outcome is unknown; the gateway is asking the upstream whether it ran: "+
			"retry with the same key after "+strconv.Itoa(s)+" s (its response is replayed if it ran; it runs if it did not)", s)
		return
	}
	c.answer(probIndeterminate, "a request with this "+c.route.KeyHeader+" was forwarded and its outcome is unknown; retrying will not help: an operator must resolve it, or use a new key", 0)
}

// inProgress answers the 409 of a request whose original is in progress.
func (c *httpContext) inProgress() {
	c.plugin.stats.conflicts.Increment(1)
	c.answer(probInProgress, "a request with the same "+c.route.KeyHeader+" is being processed; retry later", retryAfterSeconds(c.lastLeaseMS))
}

// reserveFailed handles a stream's own reserve that got no usable
// answer, in its callout callback: the route's failure mode decides.
// (A shared poll's failure keeps its waiters waiting: pollFailed.)
//
// mayHold says the reserve may have acquired under this attempt's holder
// although its answer was lost or failed. When the request is not
// forwarded (fail closed), that holder releases it; a fail-open route
// forwards the request, and a reservation it may hold then tells the
// truth: the request went out.
func (c *httpContext) reserveFailed(reason string, mayHold bool) {
	if mayHold && c.route.FailureMode != policy.FailOpen {
		c.releaseAttempt()
	}
	c.controlPlaneFailed(reason, true)
}

// releaseAttempt queues the release by holder of the last reserve
// attempt, which was not forwarded: it frees a reservation the attempt
// may hold, or fences the holder out should its reserve still arrive.
func (c *httpContext) releaseAttempt() {
	c.plugin.enqueueOutcome(api.PathRelease, appendRelease(nil, c.scope, c.key, "", c.holder), c.outcomeDeadline(), 0)
}

// outcomeDeadline is when the record of the last reserve ends at the
// latest: its TTL from the reserve.
func (c *httpContext) outcomeDeadline() int64 {
	return c.reservedAt + c.route.TTL.Nanoseconds()
}

// wait holds a duplicate of a request in progress (on_in_progress wait)
// in its record's poll group (polls.go) until the shared poll's answer is
// no longer in_progress or wait_timeout has passed; when too many streams
// already wait, it returns false and the duplicate gets the 409.
func (c *httpContext) wait() bool {
	c.waitUntil = now() + c.route.WaitTimeout.Nanoseconds()
	if !c.plugin.addWaiter(c) {
		return false
	}
	c.phase = phaseWaiting
	c.plugin.stats.waits.Increment(1)
	return true
}

// replayStored answers a duplicate of a completed request with its stored
// response, from the edge cache or from the control plane. The operation
// ran: whatever is wrong with the stored response, the request must not
// go upstream again.
func (c *httpContext) replayStored(resp *api.StoredResponse, edge bool) types.Action {
	st := &c.plugin.stats
	switch {
	case c.route.OnDuplicate == policy.Reject:
		st.conflicts.Increment(1)
		return c.answer(probDuplicate, "this operation refuses duplicates; the original request was processed", 0)
	case resp == nil:
		st.conflicts.Increment(1)
		return c.answer(probDuplicate, "the original request was processed; its response is not available", 0)
	}
	if edge {
		st.replaysEdge.Increment(1)
	} else {
		st.replaysControlPlane.Increment(1)
	}
	sendReplay(c.route, resp)
	c.phase = phaseAnswered
	return types.ActionPause
}

func (c *httpContext) mismatch() types.Action {
	c.plugin.stats.mismatches.Increment(1)
	return c.answer(probKeyReused, "this "+c.route.KeyHeader+" was used with another request payload; use a new key for a new request", 0)
}

// edgeFill keeps a completed record's response in the edge cache, for
// min(the route's ttl, edge_cache_ttl), with this request's image (or
// digest) when the
// whole entry stays within edge_cache_max_entry_bytes, else without it
// when that fits, else not at all. A failure costs only a later callout.
//
// recordLeft, when > 0, is how long the record still lives at the control
// plane (a completed reserve answer says): the entry never outlives it, or
// this edge would replay a key that other gateways execute again.
func (c *httpContext) edgeFill(resp *api.StoredResponse, recordLeft time.Duration) {
	r := c.route
	if !c.edgeOn || !c.edgeEpochKnown {
		return
	}
	image, seen := c.image, c.edgeSeen
	c.image, c.edgeSeen = nil, slotSeen{} // held only until now
	if edgeEntrySize(c.fp, image, resp) > r.EdgeCacheMaxEntryBytes {
		image = nil
	}
	if edgeEntrySize(c.fp, image, resp) > r.EdgeCacheMaxEntryBytes {
		return
	}
	life := min(r.TTL, r.EdgeCacheTTL)
	if recordLeft > 0 {
		life = min(life, recordLeft)
	}
	e := edgeEntry{id: c.edge, expires: now() + life.Nanoseconds(), epoch: c.edgeEpoch, fingerprint: c.fp, request: image, resp: *resp}
	b, ok := e.appendEntry(edgeBuf[:0])
	if cap(b) <= maxEdgeBuf {
		edgeBuf = b[:0]
	}
	if !ok {
		return
	}
	if err := edgeStore(hostShared{}, c.edgeKey, &c.edge, seen, b, e.expires, e.epoch); err != nil {
		proxywasm.LogWarnf("idempotency filter: edge cache: %v", err)
	}
}

// controlPlaneFailed applies the route's failure mode to a held request.
// In a callout callback the request is resumed or answered; in a request
// callback the returned action says what to do (no resume is needed).
func (c *httpContext) controlPlaneFailed(reason string, inCallback bool) types.Action {
	c.plugin.stats.controlPlaneError.Increment(1)
	if c.route.FailureMode == policy.FailOpen {
		proxywasm.LogWarnf("idempotency filter: control plane failed (%s); failure_mode open: forwarding %s %s ungoverned", reason, c.method, c.target)
		c.plugin.stats.failOpen.Increment(1)
		c.phase = phaseUngoverned
		if inCallback {
			resumeRequest()
		}
		return types.ActionContinue
	}
	proxywasm.LogErrorf("idempotency filter: control plane failed (%s); failure_mode closed: answering 503", reason)
	return c.answer(probUnavailable, "the idempotency service is unavailable; retry later", 1)
}

// answer sends a problem to the client and ends the request's journey
// here; ActionPause is what Envoy expects after a local reply.
func (c *httpContext) answer(p problem, detail string, retryAfter int, extra ...[2]string) types.Action {
	c.plugin.stats.answer(p.status)
	sendProblem(p, detail, retryAfter, extra...)
	c.phase = phaseAnswered
	return types.ActionPause
}

func resumeRequest() {
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("idempotency filter: resume request: %v", err)
	}
}

// retryAfterSeconds rounds a remaining lease up to whole seconds, at least 1.
func retryAfterSeconds(ms int64) int {
	s := (ms + 999) / 1000
	if s < 1 {
		return 1
	}
	return int(s)
}

// contentCoding returns the first content coding of the request other
// than identity, or "". The filter does not decode bodies: it would hash
// a representation the upstream never sees, spend the Wasm VM's memory
// and time on decompression (gzip, br, zstd each need their own code),
// and open a decompression bomb to every client; a client that compressed
// can send the same request uncompressed.
func contentCoding(headers [][2]string) string {
	for _, kv := range headers {
		if len(kv[0]) != len("content-encoding") || !strings.EqualFold(kv[0], "content-encoding") {
			continue
		}
		for _, c := range strings.Split(kv[1], ",") {
			if c = strings.Trim(c, " \t"); c != "" && !strings.EqualFold(c, "identity") {
				return c
			}
		}
	}
	return ""
}

func bodyLimitDetail(r *policy.Route) string {
	return fmt.Sprintf("the request body is larger than %d bytes, the most this operation accepts", r.MaxBodyBytes)
}

// sameRequest reports whether request, an edge entry's request image or
// digest, is r's, whose image is n bytes long: an image is compared byte
// by byte, a digest only when r's image is long enough to have one.
func sameRequest(request []byte, n int, r *canon.Request, sel *canon.Selection) bool {
	switch {
	case len(request) == sha256.Size:
		if n <= inlineImageMax {
			return false
		}
		d := requestDigest(r, sel)
		return string(request) == string(d[:])
	case len(request) == n:
		return imageEqual(request, r, sel)
	}
	return false
}

// selectedHeaders returns copies of the headers whose name is one of
// names, in the order received: all the fingerprint reads of them.
func selectedHeaders(headers [][2]string, names []string) [][2]string {
	var out [][2]string
	for _, kv := range headers {
		for _, name := range names {
			if strings.EqualFold(kv[0], name) {
				out = append(out, [2]string{strings.Clone(kv[0]), strings.Clone(kv[1])})
				break
			}
		}
	}
	return out
}

// header returns the first value of name (lower case) and how many times
// it occurs.
func header(headers [][2]string, name string) (string, int) {
	v, n := "", 0
	for _, kv := range headers {
		// Names are ASCII tokens: a name of another length never matches
		// (and EqualFold is spared for most of the map).
		if len(kv[0]) == len(name) && (kv[0] == name || strings.EqualFold(kv[0], name)) {
			if n == 0 {
				v = kv[1]
			}
			n++
		}
	}
	return v, n
}
