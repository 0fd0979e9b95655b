package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// respPhase is where the upstream response of a forwarded request stands.
type respPhase int

const (
	respNone      respPhase = iota // no response yet
	respBuffering                  // a stored status: body held until it is complete
	respWaiting                    // complete or release in flight: response held
	respDone                       // handed to the client
)

// response is what the filter knows of the upstream response.
type response struct {
	phase   respPhase
	status  int
	headers [][2]string // the headers complete stores: those a replay returns
	// hdrSize is what the status and the stored headers count towards the
	// route's MaxStoredResponseBytes (api.StoredSize, as the control plane
	// counts them); the body adds its length.
	hdrSize int
	size    int // body bytes so far (cumulative after a pause)
	// stored is what complete sent, for the edge cache once it succeeds
	// and for the queue should it fail.
	stored *api.StoredResponse
	// outcome is the path of the call finish sent (complete or release);
	// inFlight says its first attempt is unanswered, held for or not (a
	// response over the cap flows on at once).
	outcome  string
	inFlight bool
}

// OnHttpResponseHeaders implements types.HttpContext. Every response of
// a matched route loses the route's not-executed header, so that an app
// cannot leak it to clients. Only a request that acquired its key has
// anything to record; the evidence decides: Envoy's own answer after the
// request may have reached the upstream, or an indeterminate status, is
// handled as no response (on_indeterminate); the not-executed header, an
// answer Envoy gave before sending, or a release status frees the key;
// every other status is stored (complete, once the body is in).
func (c *httpContext) OnHttpResponseHeaders(_ int, endOfStream bool) types.Action {
	if c.matched == nil {
		return types.ActionContinue
	}
	notExecuted := stripHeader(c.matched.NotExecutedHeader)
	if c.phase == phaseForwarded && c.resp.phase == respBuffering {
		// Response headers again while the body was buffered: the proxy
		// replaced the upstream's response with its own (a local reply
		// mid-response, say on a buffer overflow). What the upstream sent
		// is lost: indeterminate, never stored as a status-only record.
		c.resp.phase = respDone
		c.recordIndeterminate("its response was replaced by the proxy")
		return types.ActionContinue
	}
	if c.phase != phaseForwarded || c.resp.phase != respNone {
		return types.ActionContinue
	}
	headers, err := proxywasm.GetHttpResponseHeaders()
	if err != nil {
		proxywasm.LogErrorf("idempotency filter: read response headers: %v", err)
	}
	s, _ := header(headers, ":status")
	c.resp.status, _ = strconv.Atoi(s)
	details, _ := proxywasm.GetProperty([]string{"response", "code_details"})
	switch responseOrigin(string(details)) {
	case indeterminate:
		// Envoy's own answer (say a 503 after the upstream reset): the
		// client gets it, the key is handled as when no response came.
		return c.recordIndeterminateHeld(fmt.Sprintf("Envoy answered %d (%s)", c.resp.status, details))
	case notSent:
		return c.finish(api.PathRelease)
	}
	if notExecuted {
		return c.finish(api.PathRelease)
	}
	switch c.route.Classify(c.resp.status) {
	case policy.Release:
		return c.finish(api.PathRelease)
	case policy.Indeterminate:
		// A 502/503/504 by default: what a proxy between the filter and
		// the app answers after the app may have run.
		return c.recordIndeterminateHeld(fmt.Sprintf("answered %d, an indeterminate status", c.resp.status))
	}
	stored := replayHeaders(c.route, headers)
	c.resp.hdrSize = api.StoredSize(stored, 0)
	if c.resp.hdrSize > c.route.MaxStoredResponseBytes {
		return c.completeOmitted("its headers are")
	}
	// Copies: the host's header strings share one buffer.
	c.resp.headers = cloneHeaders(stored)
	c.account()
	if endOfStream {
		return c.complete(nil, false)
	}
	if cl, n := header(headers, "content-length"); n == 1 {
		if size, err := strconv.ParseInt(cl, 10, 64); err == nil && size > int64(c.route.MaxStoredResponseBytes-c.resp.hdrSize) {
			return c.completeOmitted("its content-length is")
		}
	}
	c.resp.phase = respBuffering
	return types.ActionPause
}

// maxStrip bounds the removals of one response header: Envoy removes
// every value at once, a host that removes one value per call needs one
// call per value.
const maxStrip = 64

// stripHeader removes every value of the response header name and
// reports whether there was one.
func stripHeader(name string) bool {
	found := false
	for range maxStrip {
		if _, err := proxywasm.GetHttpResponseHeader(name); err != nil {
			break
		}
		found = true
		if err := proxywasm.RemoveHttpResponseHeader(name); err != nil {
			proxywasm.LogErrorf("idempotency filter: remove response header %s: %v", name, err)
			break
		}
	}
	return found
}

// completeOmitted stores the status only, for a response larger than the
// route's MaxStoredResponseBytes, and lets the response flow on at once:
// nothing more of it is buffered. A complete carrying the whole response
// could exceed what the control plane accepts (it answers 413), which
// would leave the key locked until its lease ends.
func (c *httpContext) completeOmitted(what string) types.Action {
	proxywasm.LogWarnf("idempotency filter: response to %s %s: %s over max_stored_response_bytes (%d): storing the status %d only",
		c.method, c.target, what, c.route.MaxStoredResponseBytes, c.resp.status)
	c.complete(nil, true)
	c.resp.phase = respDone
	return types.ActionContinue
}

// OnHttpResponseBody implements types.HttpContext.
func (c *httpContext) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	switch c.resp.phase {
	case respWaiting:
		return types.ActionPause
	case respBuffering:
	default:
		return types.ActionContinue
	}
	c.resp.size = bodySize
	if c.resp.hdrSize+bodySize > c.route.MaxStoredResponseBytes {
		return c.completeOmitted("its body is")
	}
	if !endOfStream {
		return types.ActionPause
	}
	return c.completeWithBody()
}

// OnHttpResponseTrailers implements types.HttpContext: trailers end the
// body.
func (c *httpContext) OnHttpResponseTrailers(int) types.Action {
	switch c.resp.phase {
	case respWaiting:
		return types.ActionPause
	case respBuffering:
		return c.completeWithBody()
	}
	return types.ActionContinue
}

func (c *httpContext) completeWithBody() types.Action {
	var body []byte
	if c.resp.size > 0 {
		var err error
		if body, err = proxywasm.GetHttpResponseBody(0, c.resp.size); err != nil {
			proxywasm.LogErrorf("idempotency filter: read response body: %v; storing the status only", err)
			return c.complete(nil, true)
		}
	}
	if !c.plugin.fits(len(body)) {
		return c.completeQueued(body)
	}
	return c.complete(body, false)
}

// completeQueued stores a response that max_held_bytes has no room to
// hold for its complete's first attempt: the complete goes to the queue
// (outbox.go, bounded on its own) and the response flows on at once. The
// operation ran: its response is never refused, only not held. A retry
// meanwhile finds the key in progress, as while any complete is on its
// way; the edge cache is not filled.
func (c *httpContext) completeQueued(body []byte) types.Action {
	proxywasm.LogWarnf("idempotency filter: response to %s %s: max_held_bytes (%d) has no room for its %d bytes: its complete is queued, the response flows on",
		c.method, c.target, c.plugin.config.MaxHeldBytes, len(body))
	c.resp.stored = &api.StoredResponse{Status: c.resp.status, Headers: c.resp.headers, Body: body}
	c.queueOutcome(api.PathComplete, 0)
	c.resp.stored, c.resp.headers = nil, nil
	c.resp.phase = respDone
	c.account()
	return types.ActionContinue
}

// cloneHeaders copies every name and value of headers.
func cloneHeaders(headers [][2]string) [][2]string {
	out := make([][2]string, len(headers))
	for i, kv := range headers {
		out[i] = [2]string{strings.Clone(kv[0]), strings.Clone(kv[1])}
	}
	return out
}

// complete stores the response: the headers a replay returns, the body;
// omitted keeps the status only (the control plane's body_omitted).
func (c *httpContext) complete(body []byte, omitted bool) types.Action {
	stored := api.StoredResponse{Status: c.resp.status, Body: body, BodyOmitted: omitted}
	if !omitted {
		stored.Headers = c.resp.headers
	}
	c.resp.stored = &stored
	c.account()
	// The entry complete's answer fills holds what the control plane
	// keeps as of that answer: an operator's change to the record before
	// it makes complete fail (the token no longer holds), one after it
	// changes the epoch known now.
	c.edgeEpoch, c.edgeEpochKnown = c.plugin.edgeEpoch()
	return c.finish(api.PathComplete)
}

// finish sends this reservation's complete, release or abandon (path)
// and holds the response for that one call, the first attempt. If it
// fails, the call goes to the plugin's queue (outbox.go), which retries
// it until acknowledged, and the response flows on; a definitive refusal
// (a stale token) is counted and logged.
func (c *httpContext) finish(path string) types.Action {
	c.resp.phase = respWaiting
	c.resp.outcome = path
	c.resp.inFlight = true
	body := func(b []byte) []byte { return c.appendOutcome(b, path) }
	err := c.plugin.callControlPlane("POST", path, body, func(status int, _ []byte) {
		c.resp.inFlight = false
		switch {
		case status != 200:
			c.finishFailed(path, status)
		case path == api.PathComplete && c.resp.stored != nil:
			c.edgeFill(c.resp.stored, 0) // just completed: the route's TTL
		}
		// The first attempt is over: what it needed is in the edge cache
		// or the queue now.
		c.resp.stored, c.resp.headers = nil, nil
		c.account()
		if c.resp.phase == respWaiting {
			c.resp.phase = respDone
			if err := proxywasm.ResumeHttpResponse(); err != nil {
				proxywasm.LogErrorf("idempotency filter: resume response: %v", err)
			}
		}
	})
	if err != nil {
		c.resp.inFlight = false
		c.plugin.stats.controlPlaneError.Increment(1)
		proxywasm.LogWarnf("idempotency filter: %s: %v; queued for retry", path, err)
		c.queueOutcome(path, 0)
		c.resp.phase = respDone
		return types.ActionContinue
	}
	return types.ActionPause
}

// finishFailed handles a failed first attempt: queued when it may
// succeed later, else (the control plane refused it for good) counted.
func (c *httpContext) finishFailed(path string, status int) {
	st := &c.plugin.stats
	st.controlPlaneError.Increment(1)
	if !retryable(status) {
		st.outcomesRefused.Increment(1)
		proxywasm.LogErrorf("idempotency filter: %s refused by the control plane (%d): not retried", path, status)
		return
	}
	proxywasm.LogWarnf("idempotency filter: %s %s; queued for retry", path, answerReason(status))
	c.queueOutcome(path, 1)
}

// queueOutcome queues the call path of this reservation (complete,
// release or abandon) in a body of its own. tries is how many attempts
// were already made.
func (c *httpContext) queueOutcome(path string, tries int) {
	if path == api.PathComplete && c.resp.stored == nil {
		// Not so today (stored is held while a complete may be queued);
		// should it be, the operation ran and its response is lost: the
		// route's indeterminate path (a release only where the route chose
		// on_indeterminate: release), never a release as if nothing ran.
		path = c.indeterminatePath()
	}
	c.plugin.enqueueOutcome(path, c.appendOutcome(nil, path), c.outcomeDeadline(), tries)
}

// appendOutcome appends the body of this reservation's call path to dst:
// complete with the response in c.resp.stored (set from complete until
// its first attempt is answered, the only time it is sent), abandon, or
// release by token.
func (c *httpContext) appendOutcome(dst []byte, path string) []byte {
	switch path {
	case api.PathComplete:
		req := api.CompleteRequest{Scope: c.scope, Key: c.key, Token: c.token, Response: *c.resp.stored}
		return appendComplete(dst, &req)
	case api.PathAbandon:
		return appendAbandon(dst, c.scope, c.key, c.token)
	}
	return appendRelease(dst, c.scope, c.key, c.token, "")
}

// OnHttpStreamDone implements types.HttpContext. What the stream leaves
// unsaid goes to the plugin's queue, whose tick sends it (the SDK would
// drop the answer to a call this ended stream dispatched):
//
//   - a reserve in flight: release by holder, so that a reservation
//     acquired after the client left is freed, or fenced out should the
//     reserve arrive later (issue 10, case 8);
//   - a request that went upstream without a complete response
//     (none, or cut while buffered): indeterminate, the operation may
//     have run; the route's on_indeterminate decides (abandon or
//     release);
//   - a complete or release whose first attempt is unanswered (the
//     response held for it, or flowing on past the cap): sent again (a
//     duplicate of one that landed changes nothing; the control plane
//     may refuse it as stale).
func (c *httpContext) OnHttpStreamDone() {
	streamEnded()
	defer c.returnHeld()
	switch c.phase {
	case phaseWaiting:
		c.phase = phaseGone // the tick drops it
	case phaseReserving:
		c.phase = phaseGone
		c.releaseAttempt()
	case phaseForwarded:
		switch {
		case c.resp.inFlight:
			c.queueOutcome(c.resp.outcome, 1)
		case c.resp.phase == respNone:
			c.recordIndeterminate("got no response")
		case c.resp.phase == respBuffering:
			c.recordIndeterminate("its response ended before its body did")
		}
		c.phase = phaseGone
	}
}

// recordIndeterminateHeld is recordIndeterminate for a response the client is about
// to get (a proxy's 503, an indeterminate status): the response waits for
// the first attempt of the call, as after a complete, so that a client
// that retries on seeing it finds the key indeterminate, not in progress.
// A failed attempt goes to the queue and the response flows on.
func (c *httpContext) recordIndeterminateHeld(what string) types.Action {
	path := c.indeterminatePath()
	proxywasm.LogWarnf("idempotency filter: %s %s went upstream and %s: indeterminate, %s", c.method, c.target, what, path)
	return c.finish(path)
}

// indeterminatePath is the call for a request that may have run: release
// only where the route opted into running twice; lock and reconcile
// abandon (reconcile's lookup starts from the indeterminate record).
func (c *httpContext) indeterminatePath() string {
	if c.route.OnIndeterminate == policy.ReleaseKey {
		return api.PathRelease
	}
	return api.PathAbandon
}

// recordIndeterminate handles a request that went upstream without an answer
// from the upstream: the route's on_indeterminate decides between abandon
// (lock, reconcile) and release. The call goes through the queue.
func (c *httpContext) recordIndeterminate(what string) {
	path := c.indeterminatePath()
	proxywasm.LogWarnf("idempotency filter: %s %s went upstream and %s: indeterminate, %s", c.method, c.target, what, path)
	c.queueOutcome(path, 0)
}
