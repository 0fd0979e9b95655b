//go:build !wasm

package main

import (
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

var waitConfig = []string{`"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "200ms"`}

// tickUntil ticks the plugin (and lets time pass) until cond holds;
// false after 5 s. Natively the clock is real; under wazero the guest's
// clock is the runtime's fake one, which advances on every read.
func tickUntil(host proxytest.HostEmulator, cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		host.Tick()
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// TestOnInProgressWait: with on_in_progress wait, a duplicate of a
// request in progress is held and reserve polled from the plugin's tick
// until the original completes (replay), releases (the duplicate runs),
// or wait_timeout passes (409); a client that leaves stops the polls.
func TestOnInProgressWait(t *testing.T) {
	inProgress := api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500}
	stored := &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"id":"pay_1"}`)}
	tests := []struct {
		name     string
		then     *api.ReserveResponse // the answer to the first poll; nil: in_progress to every poll
		leave    bool                 // the client goes away while held
		counters map[string]uint64
	}{
		{name: "original completes: replay", then: &api.ReserveResponse{Outcome: api.Completed, Response: stored},
			counters: map[string]uint64{"idemgate.replays_controlplane": 1, "idemgate.conflicts": 0, "idemgate.waits": 1}},
		{name: "original released: the duplicate runs", then: &api.ReserveResponse{Outcome: api.Acquired, Token: "t2"},
			counters: map[string]uint64{"idemgate.executions": 1, "idemgate.conflicts": 0, "idemgate.waits": 1}},
		{name: "wait_timeout: 409", counters: map[string]uint64{"idemgate.conflicts": 1}},
		{name: "client leaves: no more polls", leave: true, counters: map[string]uint64{"idemgate.conflicts": 0, "idemgate.waits": 1}},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, waitConfig...))
				defer reset()
				id := host.InitializeHttpContext()
				sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
				answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, inProgress)
				if r := host.GetSentLocalResponse(id); r != nil {
					t.Fatalf("local response %d %s, want the duplicate held", r.StatusCode, r.Data)
				}
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionPause {
					t.Fatalf("stream action = %v, want ActionPause (held)", a)
				}
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 1 {
					t.Fatalf("callouts = %d right after in_progress, want 1: polls wait for the tick", n)
				}
				if p := host.GetTickPeriod(); p != waitTickMS {
					t.Errorf("tick period = %d while held, want %d", p, waitTickMS)
				}
				callouts := func() int { return len(host.GetCalloutAttributesFromContext(id)) }

				if tc.leave {
					host.CompleteHttpContext(id)
					for range 300 {
						host.Tick()
						time.Sleep(time.Millisecond / 4)
					}
					if n := callouts(); n != 1 {
						t.Errorf("callouts = %d after the client left, want 1", n)
					}
				} else if tc.then != nil {
					if !tickUntil(host, func() bool { return callouts() == 2 }) {
						t.Fatal("no poll within 5 s")
					}
					answer(t, host, nthCallout(t, host, id, 1, api.PathReserve), 200, *tc.then)
					if tc.then.Outcome == api.Acquired {
						if r := host.GetSentLocalResponse(id); r != nil {
							t.Fatalf("local response %d %s, want the request resumed", r.StatusCode, r.Data)
						}
						if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
							t.Errorf("stream action = %v, want ActionContinue (resumed)", a)
						}
					} else {
						checkReplay(t, host.GetSentLocalResponse(id), stored)
					}
				} else {
					answered := 1
					ok := tickUntil(host, func() bool {
						for ; answered < callouts(); answered++ {
							answer(t, host, nthCallout(t, host, id, answered, api.PathReserve), 200, inProgress)
						}
						return host.GetSentLocalResponse(id) != nil
					})
					if !ok {
						t.Fatalf("no answer within 5 s; %d polls", callouts()-1)
					}
					checkProblem(t, host.GetSentLocalResponse(id), 409, "A request is outstanding for this Idempotency-Key", "", "2")
					// 200 ms at one poll per 10 ms: about 20 polls, never a busy loop.
					if polls := callouts() - 1; polls < 2 || polls > 25 {
						t.Errorf("polls = %d, want 2..25 (one per 10 ms for 200 ms)", polls)
					}
					t.Logf("%d polls", callouts()-1)
				}
				for name, want := range tc.counters {
					if got := counter(t, host, name); got != want {
						t.Errorf("%s = %d, want %d", name, got, want)
					}
				}
				host.Tick()
				if p := host.GetTickPeriod(); p != 0 {
					t.Errorf("tick period = %d once nobody waits, want 0", p)
				}
				if errs := host.GetErrorLogs(); len(errs) != 0 {
					t.Errorf("error logs: %q", errs)
				}
				if !tc.leave {
					host.CompleteHttpContext(id)
				}
			})
		}
	})
}
