//go:build !wasm

package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

var releaseOnIndeterminate = []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "release"`}

// respond sends a 201 response whose body does not end, so that the
// filter buffers it (the stream then holds a stored status).
func respondBuffering(t *testing.T, host proxytest.HostEmulator, id uint32) {
	t.Helper()
	if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false); a != types.ActionPause {
		t.Fatalf("response headers action = %v, want ActionPause (buffering)", a)
	}
	host.CallOnResponseBody(id, []byte(`{"id":`), false)
}

// respond201 sends a complete 201 response and returns the complete
// callout the stream sent for it (unanswered).
func respond201(t *testing.T, host proxytest.HostEmulator, id uint32) proxytest.HttpCalloutAttribute {
	t.Helper()
	host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
	if a := host.CallOnResponseBody(id, []byte(paymentResponse), true); a != types.ActionPause {
		t.Fatalf("response body action = %v, want ActionPause until complete answers", a)
	}
	return nthCallout(t, host, id, 1, api.PathComplete)
}

// TestOutcomesLand (issue 10, cases 1 and 2): complete, release and
// abandon are retried from the plugin context's queue until the control
// plane acknowledges them; the client's response waits for the first
// complete attempt only; a definitive refusal is not retried.
func TestOutcomesLand(t *testing.T) {
	tests := []struct {
		name   string
		config []string
		// run drives the stream after acquire and returns the body the
		// queue must send, and its path.
		run      func(t *testing.T, host proxytest.HostEmulator, id uint32) (path string, body []byte)
		attempts []int // answers to the queued attempts, in order; the last is 200 unless none
		counters map[string]uint64
		errLog   string
	}{
		{
			name: "complete fails: response flows on, complete retried until acknowledged",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				c := respond201(t, host, id)
				answer(t, host, c, 503, api.Problem{Title: "x", Status: 503})
				if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
					t.Errorf("stream action after the failed complete = %v, want ActionContinue", a)
				}
				host.CompleteHttpContext(id)
				return api.PathComplete, c.Body
			},
			attempts: []int{0, 500, 200},
			counters: map[string]uint64{"idemgate.outcomes_queued": 1, "idemgate.outcomes_retried": 3, "idemgate.outcomes_delivered": 1, "idemgate.outcomes_dropped": 0},
		},
		{
			name: "client leaves while the complete is in flight: queued again",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				c := respond201(t, host, id)
				host.CompleteHttpContext(id) // the SDK drops the stream's late answer
				return api.PathComplete, c.Body
			},
			attempts: []int{200},
			counters: map[string]uint64{"idemgate.outcomes_queued": 1, "idemgate.outcomes_delivered": 1},
		},
		{
			// The response flows on at once (over max_stored_response_bytes):
			// nobody holds it for the complete, whose answer the SDK drops
			// once the stream is gone.
			name:   "response over the cap: its complete in flight when the stream ends is queued again",
			config: []string{`"max_body_bytes": 1048576`, `"max_body_bytes": 1048576, "max_stored_response_bytes": 64`},
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-length", "100"}}, false); a != types.ActionContinue {
					t.Fatalf("response headers action = %v, want ActionContinue (over the cap)", a)
				}
				c := nthCallout(t, host, id, 1, api.PathComplete)
				host.CallOnResponseBody(id, make([]byte, 100), true)
				host.CompleteHttpContext(id)
				return api.PathComplete, c.Body
			},
			attempts: []int{200},
			counters: map[string]uint64{"idemgate.outcomes_queued": 1, "idemgate.outcomes_delivered": 1},
		},
		{
			name: "no response: abandon through the queue",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				host.CompleteHttpContext(id)
				return api.PathAbandon, nil
			},
			attempts: []int{500, 0, 200},
			counters: map[string]uint64{"idemgate.outcomes_queued": 1, "idemgate.outcomes_retried": 2, "idemgate.outcomes_delivered": 1},
		},
		{
			name: "no response, on_indeterminate release: release through the queue", config: releaseOnIndeterminate,
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				host.CompleteHttpContext(id)
				return api.PathRelease, nil
			},
			attempts: []int{200},
		},
		{
			name: "no response, on_indeterminate reconcile: abandon through the queue, never a release", config: reconcileRoute,
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				host.CompleteHttpContext(id)
				return api.PathAbandon, nil
			},
			attempts: []int{0, 200},
			counters: map[string]uint64{"idemgate.outcomes_queued": 1, "idemgate.outcomes_delivered": 1},
		},
		{
			name: "response cut while buffered, on_indeterminate reconcile: abandon", config: reconcileRoute,
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				respondBuffering(t, host, id)
				host.CompleteHttpContext(id)
				return api.PathAbandon, nil
			},
			attempts: []int{200},
		},
		{
			// Issue 10, hole 7: a response cut while buffered is no
			// evidence of what the upstream stored.
			name: "response cut while buffered: abandon, never a status-only complete",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				respondBuffering(t, host, id)
				host.CompleteHttpContext(id)
				return api.PathAbandon, nil
			},
			attempts: []int{200},
		},
		{
			name: "response cut while buffered, on_indeterminate release: release", config: releaseOnIndeterminate,
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				respondBuffering(t, host, id)
				host.CompleteHttpContext(id)
				return api.PathRelease, nil
			},
			attempts: []int{200},
		},
		{
			name: "the proxy replaces a buffered response with its own: abandon",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				respondBuffering(t, host, id)
				host.CallOnResponseHeaders(id, [][2]string{{":status", "500"}, {"content-type", "text/plain"}}, false)
				host.CallOnResponseBody(id, []byte("Internal Server Error"), true)
				host.CompleteHttpContext(id)
				return api.PathAbandon, nil
			},
			attempts: []int{200},
		},
		{
			name: "stale token: refused, never retried",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				c := respond201(t, host, id)
				answer(t, host, c, 409, api.Problem{Title: "Stale token", Status: 409})
				host.CompleteHttpContext(id)
				return api.PathComplete, nil
			},
			counters: map[string]uint64{"idemgate.outcomes_queued": 0, "idemgate.outcomes_refused": 1},
			errLog:   "refused",
		},
		{
			name: "abandon refused (4xx): counted, not retried",
			run: func(t *testing.T, host proxytest.HostEmulator, id uint32) (string, []byte) {
				host.CompleteHttpContext(id)
				return api.PathAbandon, nil
			},
			attempts: []int{400},
			counters: map[string]uint64{"idemgate.outcomes_queued": 1, "idemgate.outcomes_refused": 1, "idemgate.outcomes_delivered": 0},
			errLog:   "refused",
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				reserved := acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
				path, body := tc.run(t, host, id)
				for i, status := range tc.attempts {
					var c proxytest.HttpCalloutAttribute
					var idx int
					tickFor(t, host, "queued "+path+" attempt "+itoa(i+1), func() bool {
						var ok bool
						c, idx, ok = nextPluginCallout(host, path)
						return ok
					})
					if body != nil && string(c.Body) != string(body) {
						t.Errorf("attempt %d body = %s, want the stream's %s", i+1, c.Body, body)
					}
					checkOutcomeBody(t, path, c.Body, reserved.Scope)
					var v any
					if status == 200 {
						v = api.Result{Outcome: "ok"}
					} else if status != 0 {
						v = api.Problem{Title: "x", Status: status}
					}
					answerPlugin(t, host, idx, status, v)
				}
				// Nothing more is sent once acknowledged or refused.
				for range 50 {
					host.Tick()
					answerEpochPolls(t, host)
				}
				if _, _, ok := nextPluginCallout(host, path); ok {
					t.Errorf("a %s sent again after its last answer", path)
				}
				if _, _, ok := nextPluginCallout(host, api.PathRelease); ok && path == api.PathAbandon {
					t.Errorf("a release sent for a request that may have run")
				}
				for name, want := range tc.counters {
					if got := counter(t, host, name); got != want {
						t.Errorf("%s = %d, want %d", name, got, want)
					}
				}
				if tc.errLog != "" {
					logs := append(host.GetErrorLogs(), host.GetWarnLogs()...)
					if !slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, tc.errLog) }) {
						t.Errorf("logs = %q, want one containing %q", logs, tc.errLog)
					}
				}
			})
		}
	})
}

// checkOutcomeBody decodes a queued call strictly and checks it names the
// reservation: token t1, the reserve's scope, key k1.
func checkOutcomeBody(t *testing.T, path string, body []byte, scope string) {
	t.Helper()
	switch path {
	case api.PathComplete:
		var req api.CompleteRequest
		decodeStrict(t, body, &req)
		if req.Token != "t1" || req.Scope != scope || req.Key != "k1" || req.Response.Status != 201 {
			t.Errorf("complete = %+v, want token t1, status 201", req)
		}
	case api.PathAbandon:
		var req api.AbandonRequest
		decodeStrict(t, body, &req)
		if req != (api.AbandonRequest{Scope: scope, Key: "k1", Token: "t1"}) {
			t.Errorf("abandon = %+v, want token t1", req)
		}
	case api.PathRelease:
		var req api.ReleaseRequest
		decodeStrict(t, body, &req)
		if req != (api.ReleaseRequest{Scope: scope, Key: "k1", Token: "t1"}) {
			t.Errorf("release = %+v, want token t1", req)
		}
	}
}

var holderRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22,64}$`)

// TestReserveHolder: reserve carries the route's on_indeterminate (and
// reconcile_target) and a holder id of at least 128 random bits, fresh per attempt.
func TestReserveHolder(t *testing.T) {
	tests := []struct {
		name   string
		config []string
		want   string
		target string
	}{
		{name: "lock", want: api.LeaseLock},
		{name: "release", config: releaseOnIndeterminate, want: api.LeaseRelease},
		{name: "reconcile", config: reconcileRoute, want: api.LeaseReconcile},
		{name: "reconcile with a target", config: []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "reconcile", "reconcile_target": "payments-eu"`},
			want: api.LeaseReconcile, target: "payments-eu"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				seen := map[string]bool{}
				for range 3 {
					id := host.InitializeHttpContext()
					sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
					c := nthCallout(t, host, id, 0, api.PathReserve)
					req := checkReserve(t, c, paymentBody, paymentHeaders(keyK1))
					if req.OnIndeterminate != tc.want || req.ReconcileTarget != tc.target {
						t.Errorf("on_indeterminate = %q, reconcile_target %q; want %q, %q", req.OnIndeterminate, req.ReconcileTarget, tc.want, tc.target)
					}
					if !holderRE.MatchString(req.Holder) || seen[req.Holder] {
						t.Errorf("holder = %q, want 22-64 of [A-Za-z0-9_-], new each time (seen %v)", req.Holder, seen)
					}
					seen[req.Holder] = true
					answer(t, host, c, 200, api.ReserveResponse{Outcome: api.Mismatch})
					host.CompleteHttpContext(id)
				}
			})
		}
	})
}

// TestLateAcquired (issue 10, case 8): a reservation whose answer the
// stream never hears is released: by holder when the stream ends with its
// reserve in flight, by token when a poll answered to the plugin context
// says acquired for a stream that is gone.
func TestLateAcquired(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		t.Run("reserve in flight when the client leaves: release by holder", func(t *testing.T) {
			host, reset := startHost(t, vm, demoConfig)
			defer reset()
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			reserve := nthCallout(t, host, id, 0, api.PathReserve)
			var rq api.ReserveRequest
			decodeStrict(t, reserve.Body, &rq)
			host.CompleteHttpContext(id)
			expectHolderRelease(t, host, rq, "released")
			// The stream's own answer never reaches the filter (the SDK
			// drops it): nothing goes upstream.
			answer(t, host, reserve, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "g1." + rq.Holder})
			if n := counter(t, host, "idemgate.executions"); n != 0 {
				t.Errorf("executions = %d, want 0", n)
			}
		})
		t.Run("poll answered acquired after the client left: release by token", func(t *testing.T) {
			host, reset := startHost(t, vm, withConfig(t, waitConfig...))
			defer reset()
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
			var idx int
			tickFor(t, host, "poll from the plugin context", func() bool {
				var ok bool
				_, idx, ok = nextPluginCallout(host, api.PathReserve)
				return ok
			})
			host.CompleteHttpContext(id)
			answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "g2.h"})
			byToken := false
			tickFor(t, host, "release by token", func() bool {
				for {
					c, i, ok := nextPluginCallout(host, api.PathRelease)
					if !ok {
						return byToken
					}
					var rel api.ReleaseRequest
					decodeStrict(t, c.Body, &rel)
					byToken = byToken || rel.Token == "g2.h"
					answerPlugin(t, host, i, 200, api.Result{Outcome: "released"})
				}
			})
			if n := counter(t, host, "idemgate.executions"); n != 0 {
				t.Errorf("executions = %d, want 0", n)
			}
		})
	})
}

// TestOutboxBounds: the queue holds at most maxOutboxCalls calls and
// maxOutboxBytes bytes, and a call whose record's TTL has passed is
// dropped, not sent. Natively only: it drives the plugin context's
// methods directly (the bounds are constants of the module).
func TestOutboxBounds(t *testing.T) {
	host, reset := startHost(t, &vmContext{}, demoConfig)
	defer reset()
	cfg, err := policy.Parse([]byte(demoConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		calls, size int   // enqueued, each of size bytes
		deadline    int64 // relative to now; 0: an hour
		wantQueued  int
		wantSent    int
	}{
		{name: "calls bound; at most maxOutboxInFlight sent at once", calls: maxOutboxCalls + 3, size: 10, wantQueued: maxOutboxCalls, wantSent: maxOutboxInFlight},
		{name: "bytes bound", calls: 5, size: maxOutboxBytes / 4, wantQueued: 4, wantSent: 4},
		{name: "TTL passed: dropped, not sent", calls: 2, size: 10, deadline: -1, wantQueued: 2, wantSent: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &pluginContext{id: proxytest.PluginContextID, config: cfg, stats: defineStats()}
			before := map[string]uint64{}
			for _, name := range []string{"idemgate.outcomes_queued", "idemgate.outcomes_dropped"} {
				before[name] = counter(t, host, name)
			}
			sentBefore := len(host.GetCalloutAttributesFromContext(proxytest.PluginContextID))
			deadline := now() + int64(time.Hour)
			if tc.deadline != 0 {
				deadline = now() + tc.deadline
			}
			queued := 0
			for range tc.calls {
				if p.enqueueOutcome(api.PathAbandon, make([]byte, tc.size), deadline, 0) {
					queued++
				}
			}
			if queued != tc.wantQueued || len(p.outbox.calls) != tc.wantQueued {
				t.Errorf("queued %d (queue %d), want %d", queued, len(p.outbox.calls), tc.wantQueued)
			}
			p.serveOutbox(now())
			if sent := len(host.GetCalloutAttributesFromContext(proxytest.PluginContextID)) - sentBefore; sent != tc.wantSent {
				t.Errorf("sent %d, want %d", sent, tc.wantSent)
			}
			if got := counter(t, host, "idemgate.outcomes_queued") - before["idemgate.outcomes_queued"]; got != uint64(tc.wantQueued) {
				t.Errorf("outcomes_queued += %d, want %d", got, tc.wantQueued)
			}
			wantDropped := tc.calls - tc.wantQueued
			if tc.deadline < 0 {
				wantDropped += tc.wantQueued // past their TTL
			}
			if got := counter(t, host, "idemgate.outcomes_dropped") - before["idemgate.outcomes_dropped"]; got != uint64(wantDropped) {
				t.Errorf("outcomes_dropped += %d, want %d", got, wantDropped)
			}
			if tc.wantSent == 0 && (len(p.outbox.calls) != 0 || p.outbox.bytes != 0) {
				t.Errorf("queue after the drops: %d calls, %d bytes; want empty", len(p.outbox.calls), p.outbox.bytes)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for tries, w := range want {
		if got := backoff(tries); got != w {
			t.Errorf("backoff(%d) = %v, want %v", tries, got, w)
		}
	}
	if got := backoff(1000); got != outboxMaxBackoff {
		t.Errorf("backoff(1000) = %v, want the cap %v", got, outboxMaxBackoff)
	}
}

// TestFailedReserveReleasesHolder (issue 11): a reserve that got no usable
// answer may still have landed: a control plane that acquired and then
// failed (a durable-mode WAIT shortfall answers 503 after the script
// ran), a timeout after Redis answered, an answer lost on the way. When
// the request is not forwarded, the attempt's holder releases it (or
// fences it out), so the key is not left to burn into indeterminate when
// its lease ends. A refusal that changed nothing (4xx) and a fail-open
// route that forwarded the request release nothing: the latter's
// reservation, if any, is the truth (the request went out).
func TestFailedReserveReleasesHolder(t *testing.T) {
	failOpen := []string{`"failure_mode": "closed"`, `"failure_mode": "open"`}
	tests := []struct {
		name    string
		config  []string
		status  int
		answer  any
		release bool
	}{
		{name: "503 (durable shortfall), fail-closed", status: 503, answer: api.Problem{Title: "x", Status: 503}, release: true},
		{name: "500, fail-closed", status: 500, answer: api.Problem{Title: "x", Status: 500}, release: true},
		{name: "no answer, fail-closed", status: 0, release: true},
		{name: "unreadable answer", status: 200, answer: "not an object", release: true},
		{name: "acquired without a token", status: 200, answer: api.ReserveResponse{Outcome: api.Acquired}, release: true},
		{name: "unknown outcome", status: 200, answer: api.ReserveResponse{Outcome: "maybe"}, release: true},
		{name: "unknown outcome, fail-open (still not forwarded)", config: failOpen, status: 200, answer: api.ReserveResponse{Outcome: "maybe"}, release: true},
		{name: "503 overloaded: shed before the store, nothing reserved", status: 503, answer: api.Problem{Type: api.ProblemOverloaded, Title: "x", Status: 503}},
		{name: "503 of another type: may have landed", status: 503, answer: api.Problem{Type: "urn:idemgate:problem:store-unavailable", Title: "x", Status: 503}, release: true},
		{name: "401: refused, nothing done", status: 401, answer: api.Problem{Title: "x", Status: 401}},
		{name: "400: refused, nothing done", status: 400, answer: api.Problem{Title: "x", Status: 400}},
		{name: "503, fail-open: forwarded", config: failOpen, status: 503, answer: api.Problem{Title: "x", Status: 503}},
		{name: "no answer, fail-open: forwarded", config: failOpen, status: 0},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				id := host.InitializeHttpContext()
				sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
				c := nthCallout(t, host, id, 0, api.PathReserve)
				var rq api.ReserveRequest
				decodeStrict(t, c.Body, &rq)
				answer(t, host, c, tc.status, tc.answer)
				host.CompleteHttpContext(id)
				if !tc.release {
					for range 20 {
						host.Tick()
						answerEpochPolls(t, host)
					}
					if rel, _, ok := nextPluginCallout(host, api.PathRelease); ok {
						t.Fatalf("release %s sent, want none", rel.Body)
					}
					return
				}
				expectHolderRelease(t, host, rq, "fenced")
				if n := counter(t, host, "idemgate.executions"); n != 0 {
					t.Errorf("executions = %d, want 0", n)
				}
			})
		}
	})
}

// TestFailedPollReleasesHolder: on_in_progress wait polls under a new
// holder each time; a poll that got no usable answer may have acquired
// under its holder, which the next poll does not carry: it is released by
// holder, and the wait goes on.
func TestFailedPollReleasesHolder(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, waitConfig...))
		defer reset()
		id := host.InitializeHttpContext()
		sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
		answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
		var poll proxytest.HttpCalloutAttribute
		var idx int
		tickFor(t, host, "poll from the plugin context", func() bool {
			var ok bool
			poll, idx, ok = nextPluginCallout(host, api.PathReserve)
			return ok
		})
		var pq api.ReserveRequest
		decodeStrict(t, poll.Body, &pq)
		answerPlugin(t, host, idx, 503, api.Problem{Title: "x", Status: 503})
		expectHolderRelease(t, host, pq, "fenced")
		if r := host.GetSentLocalResponse(id); r != nil {
			t.Errorf("local response %d after one failed poll, want the wait to go on", r.StatusCode)
		}
		host.CompleteHttpContext(id)
	})
}

// expectHolderRelease ticks until the plugin context sends a release, checks
// that it releases reserve rq by its holder (no token) and answers it with
// outcome.
func expectHolderRelease(t *testing.T, host proxytest.HostEmulator, rq api.ReserveRequest, outcome string) {
	t.Helper()
	var c proxytest.HttpCalloutAttribute
	var idx int
	tickFor(t, host, "release by holder", func() bool {
		var ok bool
		c, idx, ok = nextPluginCallout(host, api.PathRelease)
		return ok
	})
	var rel api.ReleaseRequest
	decodeStrict(t, c.Body, &rel)
	if rel.Holder == "" || rel.Holder != rq.Holder || rel.Token != "" || rel.Scope != rq.Scope || rel.Key != rq.Key {
		t.Errorf("release = %+v, want by holder %q of the reserve", rel, rq.Holder)
	}
	answerPlugin(t, host, idx, 200, api.Result{Outcome: outcome})
}
