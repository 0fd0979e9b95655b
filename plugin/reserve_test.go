//go:build !wasm

package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/canon"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const paymentBody = `{"amount":100,"currency":"EUR"}`

// checkReserve decodes the reserve callout and checks what it carries.
func checkReserve(t *testing.T, c proxytest.HttpCalloutAttribute, body string, headers [][2]string) api.ReserveRequest {
	t.Helper()
	var req api.ReserveRequest
	decodeStrict(t, c.Body, &req)
	authority, _ := header(headers, ":authority")
	wantFP, err := canon.Fingerprint(canon.Request{Method: "POST", Host: authority, Target: "/payments", Headers: headers, ContentType: "application/json", Body: []byte(body)}, canon.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if req.Key != "k1" || req.Fingerprint != wantFP || req.LeaseMS != 30000 || req.TTLMS != 86400000 {
		t.Errorf("reserve = %+v, want key k1, fingerprint %s, lease 30000, ttl 86400000", req, wantFP)
	}
	if !strings.HasPrefix(req.Scope, "sha256:") || len(req.Scope) != len("sha256:")+64 || strings.Contains(req.Scope, "alice") {
		t.Errorf("scope = %q, want sha256:<hex> of the Authorization header", req.Scope)
	}
	return req
}

// TestReserveOutcomes: what the client gets for each answer to reserve.
func TestReserveOutcomes(t *testing.T) {
	stored := &api.StoredResponse{
		Status: 201,
		Headers: [][2]string{
			{"content-type", "application/json"}, {"set-cookie", "session=1"}, {"location", "/payments/pay_1"},
			{"date", "Mon, 01 Jan 2024 00:00:00 GMT"}, {"connection", "close"}, {"x-internal", "1"},
		},
		Body: []byte(`{"id":"pay_1"}`),
	}
	failOpen := []string{`"failure_mode": "closed"`, `"failure_mode": "open"`}
	tests := []struct {
		name       string
		config     []string // replacements in demoConfig
		status     int      // of the control plane's answer; 0: none (timeout)
		answer     any
		wantResume bool   // the request goes upstream
		want       int    // status of the local response
		title      string // of a problem; "" for a replay
		detail     string // in the problem's detail
		retryAfter string
		counter    string // incremented once
	}{
		{name: "acquired", status: 200, answer: api.ReserveResponse{Outcome: api.Acquired, Token: "t1"}, wantResume: true, counter: "idemgate.executions"},
		{name: "completed: replay", status: 200, answer: api.ReserveResponse{Outcome: api.Completed, Response: stored}, want: 201, counter: "idemgate.replays_controlplane"},
		{
			name: "completed, body omitted: status only", status: 200,
			answer: api.ReserveResponse{Outcome: api.Completed, Response: &api.StoredResponse{Status: 201, BodyOmitted: true}},
			want:   201, counter: "idemgate.replays_controlplane",
		},
		{
			name: "completed, on_duplicate reject", config: []string{`"on_duplicate": "replay"`, `"on_duplicate": "reject"`},
			status: 200, answer: api.ReserveResponse{Outcome: api.Completed, Response: stored},
			want: 409, title: "A request with this Idempotency-Key was already processed", counter: "idemgate.conflicts",
		},
		{name: "mismatch", status: 200, answer: api.ReserveResponse{Outcome: api.Mismatch}, want: 422, title: "Idempotency-Key is already used", counter: "idemgate.mismatches"},
		{
			name: "in progress", status: 200, answer: api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500},
			want: 409, title: "A request is outstanding for this Idempotency-Key", retryAfter: "2", counter: "idemgate.conflicts",
		},
		{
			name: "in progress, lease about to end", status: 200, answer: api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 0},
			want: 409, title: "A request is outstanding for this Idempotency-Key", retryAfter: "1",
		},
		{
			name: "indeterminate: its own 409, no Retry-After", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ExpiresInMS: 86379000},
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown", detail: "retrying will not help: an operator must resolve it", counter: "idemgate.indeterminate",
		},
		// Being reconciled: Retry-After says when the control plane asks
		// the upstream next (seconds, rounded up, at least 1).
		{
			name: "indeterminate, being reconciled: Retry-After", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ExpiresInMS: 86379000, ReconcileInMS: 1500},
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown", retryAfter: "2", counter: "idemgate.indeterminate",
			detail: "the gateway is asking the upstream whether it ran: retry with the same key after 2 s",
		},
		{
			name: "indeterminate, being reconciled, due in 1 ms: Retry-After 1", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ReconcileInMS: 1},
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown", retryAfter: "1", detail: "asking the upstream whether it ran",
		},
		{
			name: "indeterminate, being reconciled, whole seconds", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ReconcileInMS: 60000},
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown", retryAfter: "60", detail: "after 60 s",
		},
		{
			name: "indeterminate, being reconciled, on a reconcile route alike", config: []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "reconcile"`},
			status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ReconcileInMS: 2001},
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown", retryAfter: "3", detail: "asking the upstream",
		},
		{
			name: "indeterminate, negative reconcile_in_ms: as without", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ReconcileInMS: -5},
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown", detail: "an operator must resolve it",
		},
		{name: "control plane 500, fail-closed", status: 500, answer: api.Problem{Title: "x", Status: 500}, want: 503, title: "Idempotency service unavailable", retryAfter: "1", counter: "idemgate.controlplane_errors"},
		{name: "control plane timeout, fail-closed", status: 0, want: 503, title: "Idempotency service unavailable", retryAfter: "1", counter: "idemgate.controlplane_errors"},
		{name: "control plane 401, fail-closed", status: 401, answer: api.Problem{Title: "x", Status: 401}, want: 503, title: "Idempotency service unavailable", retryAfter: "1"},
		{name: "unreadable answer, fail-closed", status: 200, answer: "not an object", want: 503, title: "Idempotency service unavailable", retryAfter: "1"},
		{name: "unknown outcome, fail-closed", status: 200, answer: api.ReserveResponse{Outcome: "maybe"}, want: 503, title: "Idempotency service unavailable", retryAfter: "1"},
		// A control plane that answered may hold the key (a newer version's
		// outcome, say): never forwarded, whatever failure_mode says.
		{name: "unknown outcome, fail-open: still 503", config: failOpen, status: 200, answer: api.ReserveResponse{Outcome: "maybe"}, want: 503, title: "Idempotency service unavailable", retryAfter: "1", counter: "idemgate.controlplane_errors"},
		{name: "control plane 500, fail-open", config: failOpen, status: 500, answer: api.Problem{Title: "x", Status: 500}, wantResume: true, counter: "idemgate.fail_open"},
		{name: "control plane timeout, fail-open", config: failOpen, status: 0, wantResume: true, counter: "idemgate.fail_open"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				headers := paymentHeaders(keyK1)
				if a := sendRequest(host, id, headers, []byte(paymentBody)); a != types.ActionPause {
					t.Fatalf("request action = %v, want ActionPause until reserve answers", a)
				}
				c := nthCallout(t, host, id, 0, api.PathReserve)
				checkReserve(t, c, paymentBody, headers)
				answer(t, host, c, tc.status, tc.answer)

				r := host.GetSentLocalResponse(id)
				if tc.wantResume {
					if r != nil {
						t.Fatalf("local response %d %s, want the request resumed", r.StatusCode, r.Data)
					}
					if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
						t.Errorf("stream action = %v, want ActionContinue (resumed)", a)
					}
					if got := string(host.GetCurrentRequestBody(id)); got != paymentBody {
						t.Errorf("forwarded body = %q, want unchanged %q", got, paymentBody)
					}
					if got := host.GetCurrentRequestHeaders(id); !slices.Equal(got, headers) {
						t.Errorf("forwarded headers = %q, want unchanged %q", got, headers)
					}
				} else if tc.title != "" {
					checkProblem(t, r, tc.want, tc.title, tc.detail, tc.retryAfter)
				} else {
					checkReplay(t, r, tc.answer.(api.ReserveResponse).Response)
				}
				if tc.counter != "" {
					if n := counter(t, host, tc.counter); n != 1 {
						t.Errorf("%s = %d, want 1", tc.counter, n)
					}
				}
				host.CompleteHttpContext(id)
				if !tc.wantResume || tc.counter == "idemgate.fail_open" {
					if n := len(host.GetCalloutAttributesFromContext(id)); n != 1 {
						t.Errorf("callouts = %d, want only the reserve", n)
					}
				}
			})
		}
	})
}

// checkReplay checks a replayed response: the stored status and body, the
// safe headers only, Idempotent-Replayed.
func checkReplay(t *testing.T, r *proxytest.LocalHttpResponse, stored *api.StoredResponse) {
	t.Helper()
	if r == nil {
		t.Fatal("no local response, want a replay")
	}
	if int(r.StatusCode) != stored.Status || string(r.Data) != string(stored.Body) {
		t.Errorf("replay = %d %q, want %d %q", r.StatusCode, r.Data, stored.Status, stored.Body)
	}
	var want [][2]string
	for _, kv := range stored.Headers {
		if kv[0] == "content-type" || kv[0] == "location" {
			want = append(want, kv)
		}
	}
	want = append(want, [2]string{"idempotent-replayed", "true"})
	if !slices.Equal(r.Headers, want) {
		t.Errorf("replay headers = %q, want %q (no set-cookie, date, hop-by-hop or unlisted headers)", r.Headers, want)
	}
}
