package main

import (
	"fmt"
	"strconv"

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
	// route's MaxStoredResponseBytes (see storedSize).
	hdrSize int
	size    int // body bytes so far (cumulative after a pause)
	// stored is what complete sent, for the edge cache once it succeeds.
	stored *api.StoredResponse
}

// storedSize counts a stored response's status and headers as the
// control plane counts them against its --max-stored-response: 3 for the
// status plus the length of every header name and value. The body adds
// its length.
func storedSize(headers [][2]string) int {
	n := 3
	for _, kv := range headers {
		n += len(kv[0]) + len(kv[1])
	}
	return n
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
		c.resp.phase = respDone
		c.indeterminate(fmt.Sprintf("Envoy answered %d (%s)", c.resp.status, details))
		return types.ActionContinue
	case notSent:
		return c.finish(api.PathRelease, c.releaseBody())
	}
	if notExecuted {
		return c.finish(api.PathRelease, c.releaseBody())
	}
	switch c.route.Classify(c.resp.status) {
	case policy.Release:
		return c.finish(api.PathRelease, c.releaseBody())
	case policy.Indeterminate:
		// A 502/503/504 by default: what a proxy between the filter and
		// the app answers after the app may have run.
		c.resp.phase = respDone
		c.indeterminate(fmt.Sprintf("answered %d, an indeterminate status", c.resp.status))
		return types.ActionContinue
	}
	c.resp.headers = replayHeaders(c.route, headers)
	c.resp.hdrSize = storedSize(c.resp.headers)
	if c.resp.hdrSize > c.route.MaxStoredResponseBytes {
		return c.completeOmitted("its headers are")
	}
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
	return c.complete(body, false)
}

// complete stores the response: the headers a replay returns, the body;
// omitted keeps the status only (the control plane's body_omitted).
func (c *httpContext) complete(body []byte, omitted bool) types.Action {
	stored := api.StoredResponse{Status: c.resp.status, Body: body, BodyOmitted: omitted}
	if !omitted {
		stored.Headers = c.resp.headers
	}
	c.resp.stored = &stored
	req := api.CompleteRequest{Scope: c.scope, Key: c.key, Token: c.token, Response: stored}
	return c.finish(api.PathComplete, appendComplete(calloutBuf[:0], &req))
}

func (c *httpContext) releaseRequest() api.ReleaseRequest {
	return api.ReleaseRequest{Scope: c.scope, Key: c.key, Token: c.token}
}

// releaseBody is the JSON of releaseRequest, in calloutBuf.
func (c *httpContext) releaseBody() []byte {
	return appendTokenCall(calloutBuf[:0], c.scope, c.key, c.token)
}

// finish sends complete or release (body: its JSON, in calloutBuf) and
// holds the response for that one call. A failure is logged and counted
// and the response flows on: after a failed complete the key stays
// locked until its lease ends, which is safe (never released silently);
// after a failed release a retry gets 409 until then.
func (c *httpContext) finish(path string, body []byte) types.Action {
	c.resp.phase = respWaiting
	err := dispatchCallout(&c.plugin.config.ControlPlane, c.plugin.stats.controlPlaneLatency, path, body, func(status int, _ []byte) {
		switch {
		case status != 200:
			c.finishFailed(path, fmt.Sprintf("answered %d", status))
		case path == api.PathComplete && c.resp.stored != nil:
			c.edgeFill(c.resp.stored)
		}
		if c.resp.phase == respWaiting {
			c.resp.phase = respDone
			if err := proxywasm.ResumeHttpResponse(); err != nil {
				proxywasm.LogErrorf("idempotency filter: resume response: %v", err)
			}
		}
	})
	if err != nil {
		c.finishFailed(path, err.Error())
		c.resp.phase = respDone
		return types.ActionContinue
	}
	return types.ActionPause
}

func (c *httpContext) finishFailed(path, reason string) {
	c.plugin.stats.controlPlaneError.Increment(1)
	if reason == "answered 0" {
		reason = "got no answer (timeout or connection failure)"
	}
	proxywasm.LogErrorf("idempotency filter: %s %s; the key stays locked until its lease (%v) ends", path, reason, c.route.Lease)
}

// OnHttpStreamDone implements types.HttpContext. A request that went
// upstream and got no response is indeterminate: the operation may have
// run. The route's on_indeterminate decides: lock (abandon: the key is
// marked indeterminate, retries get 409, an operator or the TTL resolves
// it) or release. Nobody waits for these calls.
func (c *httpContext) OnHttpStreamDone() {
	streamEnded()
	if c.phase == phaseWaiting || c.phase == phaseReserving {
		c.phase = phaseAnswered // the client went away: the tick drops it, a late answer is ignored
	}
	if c.phase != phaseForwarded {
		return
	}
	switch c.resp.phase {
	case respNone:
		c.indeterminate("got no response")
	case respBuffering:
		// The upstream answered, but the stream ended before its body did:
		// the operation ran with that status; keep the status.
		path := api.PathComplete
		req := api.CompleteRequest{Scope: c.scope, Key: c.key, Token: c.token,
			Response: api.StoredResponse{Status: c.resp.status, BodyOmitted: true}}
		if err := callControlPlane(&c.plugin.config.ControlPlane, c.plugin.stats.controlPlaneLatency, path, req, nil); err != nil {
			c.finishFailed(path, err.Error())
		}
	}
}

// indeterminate handles a request that went upstream without an answer
// from the upstream: the route's on_indeterminate decides between abandon
// (lock) and release. Nobody waits for the call.
func (c *httpContext) indeterminate(what string) {
	var path string
	var req any
	if c.route.OnIndeterminate == policy.ReleaseKey {
		path, req = api.PathRelease, c.releaseRequest()
	} else {
		path, req = api.PathAbandon, api.AbandonRequest{Scope: c.scope, Key: c.key, Token: c.token}
	}
	proxywasm.LogWarnf("idempotency filter: %s %s went upstream and %s: indeterminate, %s", c.method, c.target, what, path)
	if err := callControlPlane(&c.plugin.config.ControlPlane, c.plugin.stats.controlPlaneLatency, path, req, nil); err != nil {
		c.finishFailed(path, err.Error())
	}
}
