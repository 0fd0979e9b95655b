//go:build !wasm

package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// TestRequestRefused: governed requests the filter answers itself, before
// any callout.
func TestRequestRefused(t *testing.T) {
	type step struct {
		body     string
		end      bool
		trailers bool // deliver trailers instead of a body chunk
	}
	tests := []struct {
		name    string
		config  string // "" is demoConfig
		headers [][2]string
		steps   []step // after headers that do not end the stream; none: they do
		status  int
		title   string
		detail  string
		header  [2]string // a header the answer carries, beyond checkProblem's
	}{
		{
			name: "missing key", headers: paymentHeaders(), steps: nil,
			status: 400, title: "Idempotency-Key is missing", detail: "requires the idempotency-key header",
		},
		{
			name: "malformed sf-string", headers: paymentHeaders([2]string{"idempotency-key", `"k1`}),
			status: 400, title: "Idempotency-Key is malformed", detail: "malformed",
		},
		{
			name: "key too long", headers: paymentHeaders([2]string{"idempotency-key", strings.Repeat("k", 256)}),
			status: 400, title: "Idempotency-Key is malformed", detail: "too long",
		},
		{
			name: "key twice", headers: paymentHeaders(keyK1, [2]string{"idempotency-key", `"k2"`}),
			status: 400, title: "Idempotency-Key is malformed", detail: "more than once",
		},
		{
			name: "body over the limit in chunks", config: "small", headers: paymentHeaders(keyK1),
			steps:  []step{{body: strings.Repeat("x", 40)}, {body: strings.Repeat("x", 40)}},
			status: 413, title: "Request body is too large", detail: "larger than 64 bytes",
		},
		{
			name: "content-length over the limit", config: "small",
			headers: paymentHeaders(keyK1, [2]string{"content-length", "65"}),
			steps:   []step{}, status: 413, title: "Request body is too large",
		},
		{
			name: "invalid JSON", headers: paymentHeaders(keyK1),
			steps:  []step{{body: `{"amount":`, end: true}},
			status: 400, title: "Request body is not valid JSON", detail: "at byte offset 10",
		},
		{
			name: "invalid JSON ended by trailers", headers: paymentHeaders(keyK1),
			steps:  []step{{body: `{"a":1,"a":2}`}, {trailers: true}},
			status: 400, title: "Request body is not valid JSON", detail: "duplicate member name",
		},
		{
			name: "gzip body", headers: paymentHeaders(keyK1, [2]string{"content-encoding", "gzip"}), steps: []step{},
			status: 415, title: "Content-Encoding is not supported", detail: `content-encoding "gzip"`, header: [2]string{"accept-encoding", "identity"},
		},
		{
			name: "identity then br", headers: paymentHeaders(keyK1, [2]string{"content-encoding", "identity, BR"}), steps: []step{},
			status: 415, title: "Content-Encoding is not supported", detail: `content-encoding "BR"`, header: [2]string{"accept-encoding", "identity"},
		},
		{
			name: "second content-encoding header", headers: paymentHeaders(keyK1, [2]string{"content-encoding", "identity"}, [2]string{"content-encoding", "zstd"}), steps: []step{},
			status: 415, title: "Content-Encoding is not supported", detail: `content-encoding "zstd"`,
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				config := demoConfig
				if tc.config == "small" {
					config = withConfig(t, `"max_body_bytes": 1048576`, `"max_body_bytes": 64`)
				}
				host, reset := startHost(t, vm, config)
				defer reset()
				id := host.InitializeHttpContext()

				a := host.CallOnRequestHeaders(id, tc.headers, tc.steps == nil)
				for i, s := range tc.steps {
					if a != types.ActionPause {
						t.Fatalf("step %d: action = %v before it, want ActionPause", i, a)
					}
					if s.trailers {
						a = host.CallOnRequestTrailers(id, [][2]string{{"x-checksum", "1"}})
					} else {
						a = host.CallOnRequestBody(id, []byte(s.body), s.end)
					}
				}
				if a != types.ActionPause {
					t.Errorf("last action = %v, want ActionPause after a local reply", a)
				}
				r := host.GetSentLocalResponse(id)
				checkProblem(t, r, tc.status, tc.title, tc.detail, "")
				if tc.header[0] != "" {
					if v, _ := header(r.Headers, tc.header[0]); v != tc.header[1] {
						t.Errorf("%s = %q, want %q", tc.header[0], v, tc.header[1])
					}
				}
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
					t.Errorf("callouts = %d, want none", n)
				}
				host.CompleteHttpContext(id)
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
					t.Errorf("callouts after the stream = %d, want none", n)
				}
			})
		}
	})
}

// TestOptionalKey: without a key, a route with required: false passes
// the request through ungoverned.
func TestOptionalKey(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, `"required": true`, `"required": false`))
		defer reset()
		id := host.InitializeHttpContext()
		if a := sendRequest(host, id, paymentHeaders(), []byte(`{"amount":1}`)); a != types.ActionContinue {
			t.Errorf("action = %v, want ActionContinue", a)
		}
		if r := host.GetSentLocalResponse(id); r != nil {
			t.Errorf("local response %d %s, want none", r.StatusCode, r.Data)
		}
		if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
			t.Errorf("callouts = %d, want none", n)
		}
	})
}

// TestIdentityEncoding: content-encoding identity (any case) or empty is
// no compression: the request is governed as usual.
func TestIdentityEncoding(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, v := range []string{"identity", "Identity", "", " identity , identity "} {
			host, reset := startHost(t, vm, demoConfig)
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1, [2]string{"content-encoding", v}), []byte(paymentBody))
			if r := host.GetSentLocalResponse(id); r != nil {
				t.Errorf("content-encoding %q: local response %d %s, want the reserve", v, r.StatusCode, r.Data)
			}
			nthCallout(t, host, id, 0, api.PathReserve)
			reset()
		}
	})
}

// TestHostCounts (issue 10, case 6): one principal, key and body on hosts
// api-a then api-b behind one gateway. The second used to be answered
// with api-a's stored response (from the edge cache: the request image
// had no host). Now the host is in the fingerprint: 422, never a replay;
// a host alias shares the records of its host and replays.
func TestHostCounts(t *testing.T) {
	onHost := func(h string) [][2]string {
		headers := paymentHeaders(keyK1)
		for i := range headers {
			if headers[i][0] == ":authority" {
				headers[i][1] = h
			}
		}
		return headers
	}
	aliases := []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "lock", "host_aliases": [{"host": "api-a", "aliases": ["api-a.internal:8080"]}]`}
	tests := []struct {
		name   string
		config []string
		second string // the second request's :authority
		replay bool   // else 422
	}{
		{"another API", nil, "api-b", false},
		{"another port", nil, "api-a:8443", false},
		{"the same host spelled otherwise", nil, "API-A:443", true},
		{"an alias of the host", aliases, "api-a.internal:8080", true},
		{"not an alias without the port", aliases, "api-a.internal", false},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tt.config...))
				defer reset()
				completeOnce(t, host, onHost("api-a"), paymentResponse, 200)
				id := host.InitializeHttpContext()
				sendRequest(host, id, onHost(tt.second), []byte(paymentBody))
				r := host.GetSentLocalResponse(id)
				if tt.replay {
					checkReplay(t, r, &api.StoredResponse{Status: 201, Headers: api.Headers{{"content-type", "application/json"}}, Body: []byte(paymentResponse)})
					return
				}
				if r != nil && string(r.Data) == paymentResponse {
					t.Fatalf("host %s got api-a's stored response: %d %s", tt.second, r.StatusCode, r.Data)
				}
				checkProblem(t, r, 422, "Idempotency-Key is already used", "another request payload", "")
			})
		}
	})
}

func TestHeader(t *testing.T) {
	headers := [][2]string{
		{":path", "/payments"},
		{"Idempotency-Key", "k1"},
		{"x-a", "1"},
		{"X-A", "2"},
		{"\u212aey", "kelvin"}, // KELVIN SIGN folds to 'k' in Unicode, not in HTTP
	}
	tests := []struct {
		name      string
		wantValue string
		wantN     int
	}{
		{":path", "/payments", 1},
		{"idempotency-key", "k1", 1},
		{"IDEMPOTENCY-KEY", "k1", 1},
		{"x-a", "1", 2},
		{"key", "", 0},
		{"idempotency-ke", "", 0},
		{"absent", "", 0},
	}
	for _, tt := range tests {
		if v, n := header(headers, tt.name); v != tt.wantValue || n != tt.wantN {
			t.Errorf("header(%q) = %q, %d; want %q, %d", tt.name, v, n, tt.wantValue, tt.wantN)
		}
	}
}

// TestRequestSizeLimit (issue 14, item 7): a body of exactly
// max_body_bytes is accepted and forwarded, one byte more is refused with
// 413, whether the size is announced (Content-Length: refused at the
// headers, before any body) or only counted (chunked: no Content-Length).
// A limit compared off by one either way fails one of the two.
func TestRequestSizeLimit(t *testing.T) {
	const limit = 64
	body := func(n int) string { // valid JSON of n bytes
		return `{"a":"` + strings.Repeat("x", n-len(`{"a":""}`)) + `"}`
	}
	withLength := func(n int) [][2]string {
		return paymentHeaders(keyK1, [2]string{"content-length", strconv.Itoa(n)})
	}
	tests := []struct {
		name    string
		headers [][2]string
		chunks  []string // the body, chunk by chunk; the last ends the stream
		refused int      // the callback answering 413 (0: the headers, i: chunk i-1); -1: none
	}{
		{"content-length at the limit", withLength(limit), []string{body(limit)}, -1},
		{"content-length one over", withLength(limit + 1), []string{body(limit + 1)}, 0},
		{"chunked at the limit", paymentHeaders(keyK1), []string{body(limit)[:30], body(limit)[30:]}, -1},
		{"chunked one over", paymentHeaders(keyK1), []string{body(limit + 1)[:30], body(limit + 1)[30:]}, 2},
		{"chunked one over in one chunk", paymentHeaders(keyK1), []string{body(limit + 1)}, 1},
		{"content-length at the limit, body one over", withLength(limit), []string{body(limit + 1)}, 1},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, `"max_body_bytes": 1048576`, `"max_body_bytes": `+strconv.Itoa(limit)))
				defer reset()
				id := host.InitializeHttpContext()
				a := host.CallOnRequestHeaders(id, tc.headers, false)
				answeredAt := -1 // the callback after which the filter answered
				for i := 0; answeredAt < 0; i++ {
					if host.GetSentLocalResponse(id) != nil {
						answeredAt = i
						break
					}
					if i == len(tc.chunks) {
						break
					}
					if a != types.ActionPause {
						t.Fatalf("action = %v before chunk %d, want ActionPause", a, i)
					}
					a = host.CallOnRequestBody(id, []byte(tc.chunks[i]), i == len(tc.chunks)-1)
				}
				if answeredAt != tc.refused {
					t.Fatalf("answered after callback %d, want %d (0: the headers, i: chunk i-1; -1: not answered)", answeredAt, tc.refused)
				}
				if tc.refused >= 0 {
					checkProblem(t, host.GetSentLocalResponse(id), 413, "Request body is too large", "larger than 64 bytes", "")
					if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
						t.Errorf("callouts = %d, want none", n)
					}
					return
				}
				if r := host.GetSentLocalResponse(id); r != nil {
					t.Fatalf("local response %d %s, want the request reserved", r.StatusCode, r.Data)
				}
				c := nthCallout(t, host, id, 0, api.PathReserve)
				answer(t, host, c, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "t1"})
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
					t.Fatalf("stream action after acquired = %v, want ActionContinue (forwarded)", a)
				}
				if got := string(host.GetCurrentRequestBody(id)); got != body(limit) {
					t.Errorf("forwarded body = %q, want the %d bytes sent", got, limit)
				}
			})
		}
	})
}
