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
// clock is the runtime's fake one, which advances on every read. Edge
// epoch polls a tick sends are answered at once (the newest callouts:
// see answerPlugin).
func tickUntil(t testing.TB, host proxytest.HostEmulator, cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		host.Tick()
		answerEpochPolls(t, host)
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
				// Polls go out from the plugin's tick and are answered to
				// the plugin context; callouts counts the reserve and them.
				callouts := func() int {
					polls, _ := pluginCallouts(host, api.PathReserve)
					return 1 + len(polls)
				}

				if tc.leave {
					host.CompleteHttpContext(id)
					for range 300 {
						host.Tick()
						answerEpochPolls(t, host)
						time.Sleep(time.Millisecond / 4)
					}
					if n := callouts(); n != 1 {
						t.Errorf("callouts = %d after the client left, want 1", n)
					}
				} else if tc.then != nil {
					if !tickUntil(t, host, func() bool { return callouts() == 2 }) {
						t.Fatal("no poll within 5 s")
					}
					_, idx, _ := nextPluginCallout(host, api.PathReserve)
					answerPlugin(t, host, idx, 200, *tc.then)
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
					ok := tickUntil(t, host, func() bool {
						for ; answered < callouts(); answered++ {
							_, idx, _ := nextPluginCallout(host, api.PathReserve)
							answerPlugin(t, host, idx, 200, inProgress)
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
				answerEpochPolls(t, host)
				if p := host.GetTickPeriod(); p != uint32(api.EdgeEpochPoll.Milliseconds()) {
					t.Errorf("tick period = %d once nobody waits, want %d (the edge epoch poll)", p, api.EdgeEpochPoll.Milliseconds())
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

// TestWaitAfterInProgress (issue 10, cases 9 and 12): once the control
// plane has said "in progress", a failed poll never forwards the request,
// whatever failure_mode says: the duplicate keeps waiting, then gets the
// 409 in progress. A poll answered indeterminate ends the wait at once.
func TestWaitAfterInProgress(t *testing.T) {
	failOpen := []string{`"failure_mode": "closed"`, `"failure_mode": "open"`}
	tests := []struct {
		name     string
		config   []string
		polls    []int // statuses of the poll answers (in_progress for 200), repeated until the wait ends
		indet    bool  // the first poll answers indeterminate
		want     int
		title    string
		counters map[string]uint64
	}{
		{name: "fail-open, polls fail: 409, never forwarded", config: failOpen, polls: []int{503, 0},
			want: 409, title: "A request is outstanding for this Idempotency-Key",
			counters: map[string]uint64{"idemgate.fail_open": 0, "idemgate.executions": 0, "idemgate.conflicts": 1}},
		{name: "fail-closed, polls fail: 409 too", polls: []int{500},
			want: 409, title: "A request is outstanding for this Idempotency-Key",
			counters: map[string]uint64{"idemgate.fail_open": 0, "idemgate.conflicts": 1}},
		{name: "fail-open, polls fail then in progress: 409", config: failOpen, polls: []int{0, 200},
			want: 409, title: "A request is outstanding for this Idempotency-Key",
			counters: map[string]uint64{"idemgate.fail_open": 0, "idemgate.executions": 0}},
		{name: "poll answers indeterminate: 409 indeterminate at once", indet: true,
			want: 409, title: "The outcome of the request with this Idempotency-Key is unknown",
			counters: map[string]uint64{"idemgate.indeterminate": 1, "idemgate.conflicts": 0}},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, append(append([]string{}, waitConfig...), tc.config...)...))
				defer reset()
				id := host.InitializeHttpContext()
				sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
				answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
				n := 0
				tickFor(t, host, "answer to the client", func() bool {
					for {
						c, idx, ok := nextPluginCallout(host, api.PathReserve)
						if !ok {
							break
						}
						var rq api.ReserveRequest
						decodeStrict(t, c.Body, &rq)
						status := 200
						if len(tc.polls) > 0 {
							status = tc.polls[min(n, len(tc.polls)-1)]
						}
						switch {
						case tc.indet:
							answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.Indeterminate, ExpiresInMS: 86379000})
						case status == 200:
							answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
						default:
							answerPlugin(t, host, idx, status, nil)
						}
						n++
						if r := host.GetSentLocalResponse(id); r == nil && host.GetCurrentHttpStreamAction(id) != types.ActionPause {
							t.Fatalf("poll %d: the request was resumed (forwarded)", n)
						}
					}
					return host.GetSentLocalResponse(id) != nil
				})
				retryAfter := "2"
				if tc.indet {
					retryAfter = ""
					if n != 1 {
						t.Errorf("polls = %d, want 1: indeterminate ends the wait", n)
					}
				}
				checkProblem(t, host.GetSentLocalResponse(id), tc.want, tc.title, "", retryAfter)
				for name, want := range tc.counters {
					if got := counter(t, host, name); got != want {
						t.Errorf("%s = %d, want %d", name, got, want)
					}
				}
				host.CompleteHttpContext(id)
			})
		}
	})
}
