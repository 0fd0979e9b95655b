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
	}{
		{name: "201 stored", status: "201", chunks: []string{`{"id":`, `"pay_1"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "204 without body stored", status: "204", wantPath: api.PathComplete, answerStatus: 200},
		{name: "response ended by trailers", status: "201", chunks: []string{`{"id":"pay_1"}`}, respTrailers: true, wantPath: api.PathComplete, answerStatus: 200},
		{name: "request ended by trailers", reqTrailers: true, status: "201", chunks: []string{`{"id":"pay_1"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "request without body", noReqBody: true, status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "422 from upstream stored", status: "422", chunks: []string{`{"error":"x"}`}, wantPath: api.PathComplete, answerStatus: 200},
		{name: "503 released", status: "503", chunks: []string{`busy`, `!`}, wantPath: api.PathRelease, answerStatus: 200},
		{name: "429 released", status: "429", wantPath: api.PathRelease, answerStatus: 200},
		{name: "complete fails: logged, response resumed", status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 500, wantErrLog: "stays locked"},
		{name: "complete times out: logged, response resumed", status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 0, wantErrLog: "no answer"},
		{name: "stale token on complete", status: "201", chunks: []string{`{}`}, wantPath: api.PathComplete, answerStatus: 409, wantErrLog: "answered 409"},
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
				last := host.CallOnResponseHeaders(id, respHeaders(tc.status), tc.chunks == nil && !tc.respTrailers)
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
					if !slices.ContainsFunc(errLogs, func(l string) bool { return strings.Contains(l, tc.wantErrLog) }) {
						t.Errorf("error logs = %q, want one containing %q", errLogs, tc.wantErrLog)
					}
					if n := counter(t, host, "idemgate.controlplane_errors"); n != 1 {
						t.Errorf("controlplane_errors = %d, want 1", n)
					}
				}
				host.CompleteHttpContext(id)
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 2 {
					t.Errorf("callouts = %d, want reserve and %s only (never a release after a failed complete)", n, tc.wantPath)
				}
			})
		}
	})
}

// TestIndeterminate: the stream ends after the request went upstream and
// before a response came back.
func TestIndeterminate(t *testing.T) {
	tests := []struct {
		name     string
		config   []string
		response bool // the response headers came, its body did not end
		wantPath string
		check    func(t *testing.T, body []byte, reserved api.ReserveRequest)
	}{
		{
			name: "lock: abandon", wantPath: api.PathAbandon,
			check: func(t *testing.T, body []byte, reserved api.ReserveRequest) {
				var req api.AbandonRequest
				decodeStrict(t, body, &req)
				if req != (api.AbandonRequest{Scope: reserved.Scope, Key: "k1", Token: "t1"}) {
					t.Errorf("abandon = %+v", req)
				}
			},
		},
		{
			name: "release", config: []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "release"`}, wantPath: api.PathRelease,
			check: func(t *testing.T, body []byte, reserved api.ReserveRequest) {
				var req api.ReleaseRequest
				decodeStrict(t, body, &req)
				if req != (api.ReleaseRequest{Scope: reserved.Scope, Key: "k1", Token: "t1"}) {
					t.Errorf("release = %+v", req)
				}
			},
		},
		{
			name: "response cut short: status stored", response: true, wantPath: api.PathComplete,
			check: func(t *testing.T, body []byte, reserved api.ReserveRequest) {
				var req api.CompleteRequest
				decodeStrict(t, body, &req)
				want := api.CompleteRequest{Scope: reserved.Scope, Key: "k1", Token: "t1", Response: api.StoredResponse{Status: 201, BodyOmitted: true}}
				if req.Scope != want.Scope || req.Token != "t1" || req.Response.Status != 201 || !req.Response.BodyOmitted || req.Response.Body != nil {
					t.Errorf("complete = %+v, want %+v", req, want)
				}
			},
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				reserved := acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
				if tc.response {
					host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}}, false)
					host.CallOnResponseBody(id, []byte(`{"id":`), false)
				}
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 1 {
					t.Fatalf("callouts before the stream ends = %d, want the reserve only", n)
				}
				host.CompleteHttpContext(id)
				c := nthCallout(t, host, id, 1, tc.wantPath)
				tc.check(t, c.Body, reserved)
			})
		}
	})
}

// TestResponseOverCap: a response body beyond max_body_bytes is not
// buffered further; only its status is stored, and it flows on at once.
func TestResponseOverCap(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, `"max_body_bytes": 1048576`, `"max_body_bytes": 64`))
		defer reset()
		id := host.InitializeHttpContext()
		acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
		if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "text/plain"}}, false); a != types.ActionPause {
			t.Fatalf("response headers action = %v, want ActionPause", a)
		}
		if a := host.CallOnResponseBody(id, make([]byte, 40), false); a != types.ActionPause {
			t.Fatalf("first chunk action = %v, want ActionPause", a)
		}
		if a := host.CallOnResponseBody(id, make([]byte, 40), false); a != types.ActionContinue {
			t.Fatalf("chunk over the cap: action = %v, want ActionContinue", a)
		}
		var req api.CompleteRequest
		c := nthCallout(t, host, id, 1, api.PathComplete)
		decodeStrict(t, c.Body, &req)
		if req.Response.Status != 201 || !req.Response.BodyOmitted || req.Response.Body != nil || req.Response.Headers != nil || req.Token != "t1" {
			t.Errorf("complete = %+v, want status 201 body_omitted, no headers or body", req)
		}
		if a := host.CallOnResponseBody(id, make([]byte, 10), true); a != types.ActionContinue {
			t.Errorf("last chunk action = %v, want ActionContinue", a)
		}
		answer(t, host, c, 200, api.Result{Outcome: "completed"})
		host.CompleteHttpContext(id)
		if n := len(host.GetCalloutAttributesFromContext(id)); n != 2 {
			t.Errorf("callouts = %d, want reserve and complete", n)
		}
	})
}
