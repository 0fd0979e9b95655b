//go:build !wasm

package main

import (
	"slices"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// reconcileRoute turns the demo route's on_indeterminate to reconcile.
var reconcileRoute = []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "reconcile"`}

// reconcileToken is a token as the control plane writes them,
// <generation>.<holder>.
const reconcileToken = "12.Hq2k9x0b3Jc1mN8pLr4TzA"

// headerValues returns every value of name (lower case) in headers.
func headerValues(headers [][2]string, name string) []string {
	var out []string
	for _, kv := range headers {
		if kv[0] == name {
			out = append(out, kv[1])
		}
	}
	return out
}

// withoutHeader returns headers less every value of name.
func withoutHeader(headers [][2]string, name string) [][2]string {
	return slices.DeleteFunc(slices.Clone(headers), func(kv [2]string) bool { return kv[0] == name })
}

// TestAttemptHeader: on a reconcile route the request the filter forwards
// carries the reservation's token in the attempt header, and never a
// value the client sent (one or several); a request forwarded without a
// token (no key on an optional route; a reconcile route never fails open)
// carries none. Lock and
// release routes add nothing and leave the client's header alone.
func TestAttemptHeader(t *testing.T) {
	spoof := [2]string{"idemgate-attempt", "1.someone-elses-attempt"}
	optional := []string{`"required": true`, `"required": false`}
	renamed := []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "reconcile", "attempt_header": "X-Payment-Attempt"`}
	tests := []struct {
		name   string
		config []string
		extra  [][2]string         // request headers beyond the payment's (and its key)
		noKey  bool                // the request carries no key
		how    string              // the reserve's answer: "acquired", "none" (no reserve)
		want   map[string][]string // values upstream of the headers named (none: absent)
	}{
		{name: "reconcile: the token", config: reconcileRoute, how: "acquired", want: map[string][]string{"idemgate-attempt": {reconcileToken}}},
		{name: "reconcile: a client's value replaced", config: reconcileRoute, extra: [][2]string{spoof}, how: "acquired",
			want: map[string][]string{"idemgate-attempt": {reconcileToken}}},
		{name: "reconcile: several client values replaced", config: reconcileRoute, extra: [][2]string{spoof, {"x-other", "1"}, {"idemgate-attempt", ""}, {"idemgate-attempt", "3.c"}},
			how: "acquired", want: map[string][]string{"idemgate-attempt": {reconcileToken}}},
		{name: "reconcile, renamed: the token in its header", config: renamed, extra: [][2]string{{"x-payment-attempt", "9.x"}}, how: "acquired",
			want: map[string][]string{"x-payment-attempt": {reconcileToken}}},
		{name: "reconcile, renamed: the default name is the client's own", config: renamed, extra: [][2]string{spoof}, how: "acquired",
			want: map[string][]string{"idemgate-attempt": {spoof[1]}, "x-payment-attempt": {reconcileToken}}},
		{name: "reconcile, no key on an optional route: stripped", config: append(slices.Clone(reconcileRoute), optional...), extra: [][2]string{spoof},
			noKey: true, how: "none", want: map[string][]string{"idemgate-attempt": nil}},
		{name: "lock: none added", how: "acquired", want: map[string][]string{"idemgate-attempt": nil}},
		{name: "lock: the client's value untouched", extra: [][2]string{spoof}, how: "acquired", want: map[string][]string{"idemgate-attempt": {spoof[1]}}},
		{name: "release: none added", config: releaseOnIndeterminate, how: "acquired", want: map[string][]string{"idemgate-attempt": nil}},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				headers := paymentHeaders(tc.extra...)
				if !tc.noKey {
					headers = append(headers, keyK1)
				}
				a := sendRequest(host, id, slices.Clone(headers), []byte(paymentBody))
				switch tc.how {
				case "acquired":
					answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Acquired, Token: reconcileToken})
				case "none":
					if a != types.ActionContinue {
						t.Fatalf("request action = %v, want ActionContinue (ungoverned)", a)
					}
				}
				if r := host.GetSentLocalResponse(id); r != nil {
					t.Fatalf("local response %d %s, want the request forwarded", r.StatusCode, r.Data)
				}
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
					t.Fatalf("stream action = %v, want ActionContinue (forwarded)", a)
				}
				got, rest := host.GetCurrentRequestHeaders(id), slices.Clone(headers)
				for name, want := range tc.want {
					if v := headerValues(got, name); !slices.Equal(v, want) {
						t.Errorf("%s upstream = %q, want %q", name, v, want)
					}
					got, rest = withoutHeader(got, name), withoutHeader(rest, name)
				}
				if !slices.Equal(got, rest) {
					t.Errorf("other headers upstream = %q, want the client's %q", got, rest)
				}
				if errs := host.GetErrorLogs(); len(errs) != 0 {
					t.Errorf("error logs = %q, want none", errs)
				}
				host.CompleteHttpContext(id)
			})
		}
	})
}

// TestAttemptHeaderAfterWait: the shared poll of duplicates held by
// on_in_progress wait carries the route's reconcile and target, and the
// duplicate it hands the key to goes upstream with that token as its
// attempt id, its client's value removed.
func TestAttemptHeaderAfterWait(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, append([]string{`"on_indeterminate": "lock"`, `"on_indeterminate": "reconcile", "reconcile_target": "payments"`}, waitConfig...)...))
		defer reset()
		id := host.InitializeHttpContext()
		headers := paymentHeaders(keyK1, [2]string{"idemgate-attempt", "1.spoofed"})
		sendRequest(host, id, slices.Clone(headers), []byte(paymentBody))
		answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
		if !held(host, id) {
			t.Fatal("the duplicate is not held")
		}
		poll, idx := nextPoll(t, host)
		if poll.OnIndeterminate != api.LeaseReconcile || poll.ReconcileTarget != "payments" {
			t.Errorf("poll's on_indeterminate %q, reconcile_target %q; want %q, %q", poll.OnIndeterminate, poll.ReconcileTarget, api.LeaseReconcile, "payments")
		}
		answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.Acquired, Token: reconcileToken})
		if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
			t.Fatalf("stream action = %v, want ActionContinue (handed the key)", a)
		}
		got := host.GetCurrentRequestHeaders(id)
		if v := headerValues(got, "idemgate-attempt"); !slices.Equal(v, []string{reconcileToken}) {
			t.Errorf("idemgate-attempt upstream = %q, want the poll's token %q", v, reconcileToken)
		}
		if rest, want := withoutHeader(got, "idemgate-attempt"), withoutHeader(headers, "idemgate-attempt"); !slices.Equal(rest, want) {
			t.Errorf("other headers upstream = %q, want the client's %q", rest, want)
		}
		host.CompleteHttpContext(id)
	})
}
