//go:build !wasm

package main

import (
	"testing"
	"unicode/utf8"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// retryOutcome sends a retry of the demo request and says how it was
// answered: "edge" (a local replay without a callout) or "callout".
func retryOutcome(t *testing.T, host proxytest.HostEmulator) string {
	t.Helper()
	id := host.InitializeHttpContext()
	defer host.CompleteHttpContext(id)
	sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
	if r := host.GetSentLocalResponse(id); r != nil && r.StatusCode == 201 {
		return "edge"
	}
	if n := len(host.GetCalloutAttributesFromContext(id)); n == 1 {
		answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Mismatch})
		return "callout"
	}
	return "neither"
}

// TestEdgeEpoch (issue 10, case 10): every VM polls the control plane's
// edge epoch from its tick; an edge entry filled under another epoch than
// the one the VM knows now is never replayed. A failed poll keeps the
// last epoch; before the first answer the edge cache is not used.
func TestEdgeEpoch(t *testing.T) {
	tests := []struct {
		name string
		// then changes what the next polls answer, after the entry was
		// filled; 0: no poll is answered before the retry.
		epoch, status int
		want          string
	}{
		{name: "same epoch: replayed", epoch: 1, status: 200, want: "edge"},
		{name: "operator changed records: new epoch, not replayed", epoch: 2, status: 200, want: "callout"},
		{name: "epoch poll fails: last epoch kept, replayed", epoch: 2, status: 503, want: "edge"},
		{name: "epoch poll times out: last epoch kept, replayed", epoch: 2, status: 0, want: "edge"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, demoConfig)
				defer reset()
				polls, _ := pluginCallouts(host, api.PathEdgeEpoch)
				if len(polls) != 1 {
					t.Fatalf("edge epoch polls after the first tick = %d, want 1", len(polls))
				}
				if p := host.GetTickPeriod(); p != uint32(api.EdgeEpochPoll.Milliseconds()) {
					t.Errorf("tick period = %d with nothing to do, want %d (the edge epoch poll)", p, api.EdgeEpochPoll.Milliseconds())
				}
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
				if got := retryOutcome(t, host); got != "edge" {
					t.Fatalf("retry before any change: %s, want an edge replay", got)
				}
				st := stateOf(host)
				st.epoch, st.epochStatus = int64(tc.epoch), tc.status
				// The next poll is due EdgeEpochPoll after the last.
				tickFor(t, host, "second edge epoch poll", func() bool {
					polls, _ := pluginCallouts(host, api.PathEdgeEpoch)
					return len(polls) >= 2
				})
				if got := retryOutcome(t, host); got != tc.want {
					t.Errorf("retry: %s, want %s", got, tc.want)
				}
			})
		}
		t.Run("epoch learnt between reserve and complete: the complete fills", func(t *testing.T) {
			host, reset := newHost(t, vm, demoConfig)
			defer reset()
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				t.Fatalf("StartPlugin() = %v", st)
			}
			id := host.InitializeHttpContext()
			acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
			// The poll OnPluginStart sent is the newest pending callout.
			if n := answerEpochPolls(t, host); n != 1 {
				t.Fatalf("edge epoch polls answered = %d, want the one sent at plugin start", n)
			}
			host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
			host.CallOnResponseBody(id, []byte(paymentResponse), true)
			answer(t, host, nthCallout(t, host, id, 1, api.PathComplete), 200, api.Result{Outcome: "completed"})
			host.CompleteHttpContext(id)
			if got := retryOutcome(t, host); got != "edge" {
				t.Errorf("retry: %s, want an edge replay", got)
			}
		})
		t.Run("before the first epoch: no edge replay", func(t *testing.T) {
			host, reset := newHost(t, vm, demoConfig)
			defer reset()
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				t.Fatalf("StartPlugin() = %v", st)
			}
			completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			if got := retryOutcome(t, host); got != "callout" {
				t.Errorf("retry: %s, want a callout (the edge epoch is not known yet)", got)
			}
		})
	})
}

// TestReplayHeaderBytes (issue 10): a stored header value that is not
// valid UTF-8 replays the same bytes from the edge cache and from the
// control plane.
func TestReplayHeaderBytes(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, demoConfig)
		defer reset()
		id := host.InitializeHttpContext()
		acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
		host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "application/json"}, {"location", "/payments/\xff\xfe-\xe2\x82"}}, false)
		host.CallOnResponseBody(id, []byte(paymentResponse), true)
		c := nthCallout(t, host, id, 1, api.PathComplete)
		var req api.CompleteRequest
		decodeStrict(t, c.Body, &req)
		answer(t, host, c, 200, api.Result{Outcome: "completed"})
		host.CompleteHttpContext(id)

		location := func(r *proxytest.LocalHttpResponse) string {
			t.Helper()
			if r == nil {
				t.Fatal("no replay")
			}
			v, _ := header(r.Headers, "location")
			return v
		}
		// From the edge: the same key again.
		id = host.InitializeHttpContext()
		sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
		fromEdge := location(host.GetSentLocalResponse(id))
		host.CompleteHttpContext(id)
		// From the control plane: another key (no edge entry), answered
		// with what complete stored.
		id = host.InitializeHttpContext()
		sendRequest(host, id, paymentHeaders([2]string{"idempotency-key", `"k2"`}), []byte(paymentBody))
		answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Completed, Response: &req.Response})
		fromControlPlane := location(host.GetSentLocalResponse(id))
		host.CompleteHttpContext(id)

		if fromEdge != fromControlPlane || !utf8.ValidString(fromEdge) {
			t.Errorf("location from the edge %q, from the control plane %q: want the same valid UTF-8", fromEdge, fromControlPlane)
		}
		if want := "/payments/\ufffd\ufffd-\ufffd\ufffd"; fromControlPlane != want {
			t.Errorf("location = %q, want %q (each invalid byte as U+FFFD, as JSON carries it)", fromControlPlane, want)
		}
	})
}
