//go:build !wasm

package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// acquire sends a governed request and answers its reserve with acquired
// and token t1; the request must then be resumed.
func acquire(t *testing.T, host proxytest.HostEmulator, id uint32, headers [][2]string, body []byte, trailers bool) api.ReserveRequest {
	t.Helper()
	a := host.CallOnRequestHeaders(id, headers, body == nil && !trailers)
	if body != nil {
		a = host.CallOnRequestBody(id, body, !trailers)
	}
	if trailers {
		if a != types.ActionPause {
			t.Fatalf("action before trailers = %v, want ActionPause", a)
		}
		a = host.CallOnRequestTrailers(id, [][2]string{{"x-checksum", "1"}})
	}
	if a != types.ActionPause {
		t.Fatalf("request action = %v, want ActionPause until reserve answers", a)
	}
	c := nthCallout(t, host, id, 0, api.PathReserve)
	req := checkReserve(t, c, string(body), headers)
	answer(t, host, c, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "t1"})
	if r := host.GetSentLocalResponse(id); r != nil {
		t.Fatalf("local response %d %s, want the request resumed", r.StatusCode, r.Data)
	}
	if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
		t.Fatalf("stream action after acquired = %v, want ActionContinue", a)
	}
	if got := string(host.GetCurrentRequestBody(id)); got != string(body) {
		t.Errorf("forwarded body = %q, want unchanged %q", got, body)
	}
	return req
}

// TestResponsePath: after acquired, the upstream response completes or
// releases the key, and the client's response is held for that one call.
func TestResponsePath(t *testing.T) {
	respHeaders := func(status string) [][2]string {
		return [][2]string{{":status", status}, {"content-type", "application/json"}, {"set-cookie", "s=1"}, {"connection", "keep-alive"}, {"location", "/payments/pay_1"}}
	}
	tests := []struct {
		name         string
		reqTrailers  bool
		noReqBody    bool
		status       string
		chunks       []string // response body chunks; nil: headers end the response
		respTrailers bool
		wantPath     string // complete or release
		answerStatus int    // of that call; 0: no answer
		wantErrLog   string
		notExecuted  bool // the upstream marks the response not executed
	}{
		{name: "201 stored", status: "201", chunks: []string{`{"id":`, `"pay_1"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "204 without body stored", status: "204", wantPath: api.PathComplete, answerStatus: 200},
		{name: "response ended by trailers", status: "201", chunks: []string{`{"id":"pay_1"}`}, respTrailers: true, wantPath: api.PathComplete, answerStatus: 200},
		{name: "request ended by trailers", reqTrailers: true, status: "201", chunks: []string{`{"id":"pay_1"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "request without body", noReqBody: true, status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "422 from upstream stored", status: "422", chunks: []string{`{"error":"x"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "503 marked not executed: released", status: "503", notExecuted: true, chunks: []string{`busy`, `!`}, wantPath: api.PathRelease, answerStatus: 200},
		{name: "201 marked not executed: released", status: "201", notExecuted: true, chunks: []string{`{}`}, wantPath: api.PathRelease, answerStatus: 200},
		{name: "500 stored", status: "500", chunks: []string{`{"error":"after commit"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "429 released", status: "429", wantPath: api.PathRelease, answerStatus: 200},
		{name: "complete fails: queued, response resumed", status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 500, wantErrLog: "answered 500; queued for retry"},
		{name: "complete times out: queued, response resumed", status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 0, wantErrLog: "no answer (timeout or connection failure); queued"},
		{name: "stale token on complete", status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 409, wantErrLog: "refused by the control plane (409)"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, demoConfig)
				defer reset()
				id := host.InitializeHttpContext()
				headers := paymentHeaders(keyK1)
				var body []byte
				if !tc.noReqBody {
					body = []byte(paymentBody)
				}
				reserved := acquire(t, host, id, headers, body, tc.reqTrailers)

				// The response is held from its headers until the call.
				rh := respHeaders(tc.status)
				if tc.notExecuted {
					rh = append(rh, [2]string{"Idempotency-Not-Executed", "1"})
				}
				last := host.CallOnResponseHeaders(id, rh, tc.chunks == nil && !tc.respTrailers)
				if _, n := header(host.GetCurrentResponseHeaders(id), "idempotency-not-executed"); n != 0 {
					t.Errorf("the not-executed header reaches the client")
				}
				for i, ch := range tc.chunks {
					if last != types.ActionPause {
						t.Fatalf("response chunk %d: action before = %v, want ActionPause", i, last)
					}
					last = host.CallOnResponseBody(id, []byte(ch), i == len(tc.chunks)-1 && !tc.respTrailers)
				}
				if tc.respTrailers {
					last = host.CallOnResponseTrailers(id, [][2]string{{"x-t", "1"}})
				}
				if last != types.ActionPause {
					t.Fatalf("last response action = %v, want ActionPause until %s answers", last, tc.wantPath)
				}
				c := nthCallout(t, host, id, 1, tc.wantPath)
				wantBody := strings.Join(tc.chunks, "")
				switch tc.wantPath {
				case api.PathComplete:
					var req api.CompleteRequest
					decodeStrict(t, c.Body, &req)
					want := [][2]string{{"content-type", "application/json"}, {"location", "/payments/pay_1"}}
					if req.Token != "t1" || req.Scope != reserved.Scope || req.Key != "k1" ||
						itoa(req.Response.Status) != tc.status || string(req.Response.Body) != wantBody ||
						!slices.Equal(req.Response.Headers, api.Headers(want)) || req.Response.BodyOmitted {
						t.Errorf("complete = %+v, want token t1, scope and key of the reserve, status %s, body %q, headers %q", req, tc.status, wantBody, want)
					}
				case api.PathRelease:
					var req api.ReleaseRequest
					decodeStrict(t, c.Body, &req)
					if req != (api.ReleaseRequest{Scope: reserved.Scope, Key: "k1", Token: "t1"}) {
						t.Errorf("release = %+v, want the reserve's scope and key, token t1", req)
					}
				}
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionPause {
					t.Errorf("stream action before the answer = %v, want ActionPause (held)", a)
				}
				var result any
				if tc.answerStatus == 200 {
					result = api.Result{Outcome: "completed"}
				}
				answer(t, host, c, tc.answerStatus, result)
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
					t.Errorf("stream action after the answer = %v, want ActionContinue (resumed)", a)
				}
				if got := string(host.GetCurrentResponseBody(id)); tc.chunks != nil && got != wantBody {
					t.Errorf("response body = %q, want unchanged %q", got, wantBody)
				}
				errLogs := host.GetErrorLogs()
				if tc.wantErrLog == "" && len(errLogs) != 0 {
					t.Errorf("error logs = %q, want none", errLogs)
				}
				if tc.wantErrLog != "" {
					errLogs = append(errLogs, host.GetWarnLogs()...)
					if !slices.ContainsFunc(errLogs, func(l string) bool { return strings.Contains(l, tc.wantErrLog) }) {
						t.Errorf("error logs = %q, want one containing %q", errLogs, tc.wantErrLog)
					}
					if n := counter(t, host, "idemgate.controlplane_errors"); n != 1 {
						t.Errorf("controlplane_errors = %d, want 1", n)
					}
				}
				host.CompleteHttpContext(id)
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 2 {
					t.Errorf("stream callouts = %d, want reserve and %s only (never a release after a failed complete; retries go from the plugin's queue)", n, tc.wantPath)
				}
			})
		}
	})
}

// TestResponseOverCap: a response whose status, stored headers and body
// exceed max_stored_response_bytes is not buffered beyond the cap (nor at
// all when its headers or content-length already say so): only its status
// is stored (body_omitted) and it flows on at once. The cap counts as the
// control plane does: 3 + header names and values + body.
func TestResponseOverCap(t *testing.T) {
	// Stored headers: content-type: text/plain = 12+10, so the status and
	// headers count 25 of the 64-byte cap and a body may have 39 bytes.
	tests := []struct {
		name      string
		cap       string
		headers   [][2]string
		headerEnd bool     // the headers end the response
		chunks    []int    // body chunk sizes, the last one ends the response
		actions   []string // "pause" or "continue", one per chunk
		headerAct types.Action
		omitted   bool
	}{
		{name: "body over the cap", cap: "64", chunks: []int{30, 30, 10}, actions: []string{"pause", "continue", "continue"}, headerAct: types.ActionPause, omitted: true},
		{name: "body exactly at the cap", cap: "64", chunks: []int{30, 9}, actions: []string{"pause", "pause"}, headerAct: types.ActionPause},
		{name: "one byte over", cap: "64", chunks: []int{40}, actions: []string{"continue"}, headerAct: types.ActionPause, omitted: true},
		{
			name: "content-length over the cap: nothing buffered", cap: "64",
			headers: [][2]string{{"content-length", "40"}}, chunks: []int{20, 20}, actions: []string{"continue", "continue"},
			headerAct: types.ActionContinue, omitted: true,
		},
		{name: "headers alone over the cap", cap: "24", headerEnd: true, headerAct: types.ActionContinue, omitted: true},
		{
			name: "under the default cap of 1 MiB though over a small max_body_bytes", cap: "",
			chunks: []int{200, 200}, actions: []string{"pause", "pause"}, headerAct: types.ActionPause,
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				config := []string{`"max_body_bytes": 1048576`, `"max_body_bytes": 64`}
				if tc.cap != "" {
					config[1] += `, "max_stored_response_bytes": ` + tc.cap
				}
				host, reset := startHost(t, vm, withConfig(t, config...))
				defer reset()
				id := host.InitializeHttpContext()
				acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
				headers := append([][2]string{{":status", "201"}, {"content-type", "text/plain"}, {"x-not-stored", "a long value that a replay never returns"}}, tc.headers...)
				if a := host.CallOnResponseHeaders(id, headers, tc.headerEnd); a != tc.headerAct {
					t.Fatalf("response headers action = %v, want %v", a, tc.headerAct)
				}
				var sent []byte
				for i, n := range tc.chunks {
					chunk := []byte(strings.Repeat(string(rune('a'+i)), n))
					sent = append(sent, chunk...)
					last := i == len(tc.chunks)-1
					want := types.ActionPause
					if tc.actions[i] == "continue" {
						want = types.ActionContinue
					}
					if a := host.CallOnResponseBody(id, chunk, last); a != want {
						t.Fatalf("chunk %d (%d bytes) action = %v, want %v", i, n, a, want)
					}
				}
				var req api.CompleteRequest
				c := nthCallout(t, host, id, 1, api.PathComplete)
				decodeStrict(t, c.Body, &req)
				if tc.omitted {
					if req.Response.Status != 201 || !req.Response.BodyOmitted || req.Response.Body != nil || req.Response.Headers != nil || req.Token != "t1" {
						t.Errorf("complete = %+v, want status 201 body_omitted, no headers or body", req)
					}
					if warn := host.GetWarnLogs(); !slices.ContainsFunc(warn, func(l string) bool { return strings.Contains(l, "over max_stored_response_bytes") }) {
						t.Errorf("warn logs = %q, want one saying the response is over max_stored_response_bytes", warn)
					}
				} else if req.Response.BodyOmitted || string(req.Response.Body) != string(sent) ||
					!slices.Equal(req.Response.Headers, api.Headers{{"content-type", "text/plain"}}) {
					t.Errorf("complete = %+v, want the whole response stored", req)
				}
				answer(t, host, c, 200, api.Result{Outcome: "completed"})
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
					t.Errorf("stream action after the complete = %v, want ActionContinue", a)
				}
				host.CompleteHttpContext(id)
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 2 {
					t.Errorf("callouts = %d, want reserve and complete", n)
				}
				if errs := host.GetErrorLogs(); len(errs) != 0 {
					t.Errorf("error logs = %q, want none", errs)
				}
			})
		}
	})
}

// TestEnvoyAnswers: Envoy runs its own answers through the response
// callbacks, with response.code_details saying why. A reset or a timeout
// after the request went upstream is indeterminate (the route's
// on_indeterminate: abandon by default), never stored nor released; an
// answer given before the request could reach the upstream releases the
// key whatever its status. The upstream's own answers are classified by
// status (issue 10, cases 3 and 4): 502, 503 and 504 — what a proxy
// between the filter and the app answers after the app may have run —
// are indeterminate; 500 and every other 5xx are outcomes, stored; only
// 408, 425, 429 or the not-executed header release the key.
func TestEnvoyAnswers(t *testing.T) {
	notExecuted := [2]string{"idempotency-not-executed", "?1"}
	all5xx := []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "lock", "indeterminate_statuses": ["5xx"]`}
	renamed := []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "lock", "not_executed_header": "X-Nothing-Happened"`}
	tests := []struct {
		name, details, status, wantPath string
		config                          []string
		extra                           [][2]string // response headers
	}{
		{name: "reset after sending", details: "upstream_reset_before_response_started{connection_termination}", status: "503", wantPath: api.PathAbandon},
		{name: "route timeout", details: "upstream_response_timeout", status: "504", wantPath: api.PathAbandon},
		{name: "connect failure", details: "upstream_reset_before_response_started{connection_failure}", status: "503", wantPath: api.PathRelease},
		{name: "rbac after the filter", details: "rbac_access_denied_matched_policy[none]", status: "403", wantPath: api.PathRelease},
		{name: "a proxy's 503 via the upstream (case 3)", details: "via_upstream", status: "503", wantPath: api.PathAbandon},
		{name: "a proxy's 502", details: "via_upstream", status: "502", wantPath: api.PathAbandon},
		{name: "a proxy's 504", details: "via_upstream", status: "504", wantPath: api.PathAbandon},
		{name: "503 without code details", status: "503", wantPath: api.PathAbandon},
		{name: "500 after commit (case 4)", details: "via_upstream", status: "500", wantPath: api.PathComplete},
		{name: "501", details: "via_upstream", status: "501", wantPath: api.PathComplete},
		{name: "505", details: "via_upstream", status: "505", wantPath: api.PathComplete},
		{name: "599", details: "via_upstream", status: "599", wantPath: api.PathComplete},
		{name: "600", details: "via_upstream", status: "600", wantPath: api.PathComplete},
		{name: "429", details: "via_upstream", status: "429", wantPath: api.PathRelease},
		{name: "the upstream's own 201", details: "via_upstream", status: "201", wantPath: api.PathComplete},
		{name: "503 marked not executed", details: "via_upstream", status: "503", wantPath: api.PathRelease, extra: [][2]string{notExecuted}},
		{name: "500 marked not executed", details: "via_upstream", status: "500", wantPath: api.PathRelease, extra: [][2]string{notExecuted}},
		{name: "marked twice", details: "via_upstream", status: "500", wantPath: api.PathRelease, extra: [][2]string{notExecuted, notExecuted}},
		{name: "reset: the mark cannot come from the app", details: "upstream_reset_before_response_started{connection_termination}", status: "503", wantPath: api.PathAbandon, extra: [][2]string{notExecuted}},
		{name: "all 5xx indeterminate: 500", details: "via_upstream", status: "500", wantPath: api.PathAbandon, config: all5xx},
		{name: "all 5xx indeterminate: 429 released", details: "via_upstream", status: "429", wantPath: api.PathRelease, config: all5xx},
		{name: "renamed header", details: "via_upstream", status: "500", wantPath: api.PathRelease, config: renamed, extra: [][2]string{{"x-nothing-happened", "1"}}},
		// on_indeterminate reconcile: what may have run is abandoned as
		// with lock, never released (the control plane then asks the
		// upstream); evidence of not executing still releases.
		{name: "reconcile: reset after sending", details: "upstream_reset_before_response_started{connection_termination}", status: "503", wantPath: api.PathAbandon, config: reconcileRoute},
		{name: "reconcile: route timeout", details: "upstream_response_timeout", status: "504", wantPath: api.PathAbandon, config: reconcileRoute},
		{name: "reconcile: a proxy's 502", details: "via_upstream", status: "502", wantPath: api.PathAbandon, config: reconcileRoute},
		{name: "reconcile: a proxy's 503", details: "via_upstream", status: "503", wantPath: api.PathAbandon, config: reconcileRoute},
		{name: "reconcile: a proxy's 504", details: "via_upstream", status: "504", wantPath: api.PathAbandon, config: reconcileRoute},
		{name: "reconcile: connect failure released", details: "upstream_reset_before_response_started{connection_failure}", status: "503", wantPath: api.PathRelease, config: reconcileRoute},
		{name: "reconcile: 429 released", details: "via_upstream", status: "429", wantPath: api.PathRelease, config: reconcileRoute},
		{name: "reconcile: 201 stored", details: "via_upstream", status: "201", wantPath: api.PathComplete, config: reconcileRoute},
		{name: "renamed: the default name means nothing", details: "via_upstream", status: "500", wantPath: api.PathComplete, config: renamed, extra: [][2]string{notExecuted}},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
				if tc.details != "" {
					if err := host.SetProperty([]string{"response", "code_details"}, []byte(tc.details)); err != nil {
						t.Fatal(err)
					}
				}
				host.CallOnResponseHeaders(id, append([][2]string{{":status", tc.status}, {"content-type", "text/plain"}}, tc.extra...), false)
				name := "idempotency-not-executed"
				if slices.Equal(tc.config, renamed) {
					name = "x-nothing-happened"
				}
				if _, n := header(host.GetCurrentResponseHeaders(id), name); n != 0 {
					t.Errorf("the not-executed header %s reaches the client", name)
				}
				host.CallOnResponseBody(id, []byte("x"), true)
				host.CompleteHttpContext(id)
				calls := host.GetCalloutAttributesFromContext(id)
				// Indeterminate or not: the response waits for the first
				// attempt of the stream's own call (abandon, release or
				// complete), so that a client retrying on it finds the key
				// settled.
				if len(calls) != 2 {
					t.Fatalf("callouts = %d, want reserve and one %s", len(calls), tc.wantPath)
				}
				nthCallout(t, host, id, 1, tc.wantPath)
			})
		}
	})
}

// TestNotExecutedHeaderStripped: the not-executed header never reaches a
// client, whatever the request's journey on a governed route: forwarded
// ungoverned (no key on an optional route), or after the control plane
// failed open. Routes the filter does not govern are left alone.
func TestNotExecutedHeaderStripped(t *testing.T) {
	optional := []string{`"required": true`, `"required": false`}
	open := []string{`"failure_mode": "closed"`, `"failure_mode": "open"`}
	resp := [][2]string{{":status", "201"}, {"idempotency-not-executed", "1"}, {"content-type", "application/json"}}
	tests := []struct {
		name    string
		config  []string
		headers [][2]string
		failCP  bool // the reserve fails (failure_mode open forwards)
		strip   bool
	}{
		{name: "optional key absent", config: optional, headers: paymentHeaders(), strip: true},
		{name: "failed open", config: open, headers: paymentHeaders(keyK1), failCP: true, strip: true},
		{name: "ungoverned path", headers: [][2]string{{":method", "POST"}, {":path", "/orders"}, {":authority", "a"}}, strip: false},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				sendRequest(host, id, tc.headers, []byte(paymentBody))
				if tc.failCP {
					answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 0, nil)
				}
				if a := host.CallOnResponseHeaders(id, slices.Clone(resp), false); a != types.ActionContinue {
					t.Errorf("response headers action = %v, want ActionContinue", a)
				}
				_, n := header(host.GetCurrentResponseHeaders(id), "idempotency-not-executed")
				if tc.strip && n != 0 || !tc.strip && n != 1 {
					t.Errorf("not-executed header values left: %d, want stripped = %v", n, tc.strip)
				}
				if ct, _ := header(host.GetCurrentResponseHeaders(id), "content-type"); ct != "application/json" {
					t.Errorf("content-type = %q, want the other headers untouched", ct)
				}
			})
		}
	})
}
