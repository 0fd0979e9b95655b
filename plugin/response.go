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
	headers [][2]string
	size    int // body bytes so far (cumulative after a pause)
}

// OnHttpResponseHeaders implements types.HttpContext. Only a request that
// acquired its key has anything to record: the status decides between
// complete (stored statuses, once the body is in) and release.
func (c *httpContext) OnHttpResponseHeaders(_ int, endOfStream bool) types.Action {
	if c.phase != phaseForwarded || c.resp.phase != respNone {
		return types.ActionContinue
	}
	headers, err := proxywasm.GetHttpResponseHeaders()
	if err != nil {
		proxywasm.LogErrorf("idempotency filter: read response headers: %v", err)
	}
	s, _ := header(headers, ":status")
	c.resp.status, _ = strconv.Atoi(s)
	c.resp.headers = headers
	if c.route.Classify(c.resp.status) == policy.Release {
		return c.finish(api.PathRelease, c.releaseRequest())
	}
	if endOfStream {
		return c.complete(nil, false)
	}
	c.resp.phase = respBuffering
	return types.ActionPause
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
	if bodySize > c.route.MaxBodyBytes {
		// Beyond the cap the response is not buffered further: the
		// status alone is stored and the response flows on at once.
		proxywasm.LogWarnf("idempotency filter: response body over %d bytes: storing the status %d only", c.route.MaxBodyBytes, c.resp.status)
		c.complete(nil, true)
		c.resp.phase = respDone
		return types.ActionContinue
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
		stored.Headers = replayHeaders(c.route, c.resp.headers)
	}
	return c.finish(api.PathComplete, api.CompleteRequest{Scope: c.scope, Key: c.key, Token: c.token, Response: stored})
}

func (c *httpContext) releaseRequest() api.ReleaseRequest {
	return api.ReleaseRequest{Scope: c.scope, Key: c.key, Token: c.token}
}

// finish sends complete or release and holds the response for that one
// call. A failure is logged and counted and the response flows on: after
// a failed complete the key stays locked until its lease ends, which is
// safe (never released silently); after a failed release a retry gets 409
// until then.
func (c *httpContext) finish(path string, req any) types.Action {
	c.resp.phase = respWaiting
	err := callControlPlane(&c.plugin.config.ControlPlane, path, req, func(status int, _ []byte) {
		if status != 200 {
			c.finishFailed(path, fmt.Sprintf("answered %d", status))
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
	if c.phase != phaseForwarded {
		return
	}
	cp := &c.plugin.config.ControlPlane
	var path string
	var req any
	switch c.resp.phase {
	case respNone:
		if c.route.OnIndeterminate == policy.ReleaseKey {
			path, req = api.PathRelease, c.releaseRequest()
		} else {
			path, req = api.PathAbandon, api.AbandonRequest{Scope: c.scope, Key: c.key, Token: c.token}
		}
		proxywasm.LogWarnf("idempotency filter: %s %s went upstream and got no response: indeterminate, %s", c.method, c.target, path)
	case respBuffering:
		// The upstream answered, but the stream ended before its body did:
		// the operation ran with that status; keep the status.
		path, req = api.PathComplete, api.CompleteRequest{Scope: c.scope, Key: c.key, Token: c.token,
			Response: api.StoredResponse{Status: c.resp.status, BodyOmitted: true}}
	default:
		return
	}
	if err := callControlPlane(cp, path, req, nil); err != nil {
		c.finishFailed(path, err.Error())
	}
}
