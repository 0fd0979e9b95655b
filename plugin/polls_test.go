//go:build !wasm

package main

import (
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// holdWaiter sends a request whose reserve is answered in_progress, so
// that on_in_progress wait holds it; it returns the stream's id and its
// reserve.
func holdWaiter(t *testing.T, host proxytest.HostEmulator, auth, body string) (uint32, api.ReserveRequest) {
	t.Helper()
	id := host.InitializeHttpContext()
	headers := [][2]string{
		{":method", "POST"}, {":path", "/payments"}, {":authority", "api.example.com"},
		{"content-type", "application/json"}, {"authorization", auth}, keyK1,
	}
	sendRequest(host, id, headers, []byte(body))
	c := nthCallout(t, host, id, 0, api.PathReserve)
	var rq api.ReserveRequest
	decodeStrict(t, c.Body, &rq)
	answer(t, host, c, 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
	if r := host.GetSentLocalResponse(id); r != nil {
		t.Fatalf("stream %d: local response %d %s, want it held", id, r.StatusCode, r.Data)
	}
	return id, rq
}

// held reports whether stream id is still held: paused, unanswered.
func held(host proxytest.HostEmulator, id uint32) bool {
	return host.GetSentLocalResponse(id) == nil && host.GetCurrentHttpStreamAction(id) == types.ActionPause
}

// pendingPolls returns the plugin context's reserves not yet answered
// (through answerPlugin), with their indexes.
func pendingPolls(host proxytest.HostEmulator) ([]proxytest.HttpCalloutAttribute, []int) {
	cs, idx := pluginCallouts(host, api.PathReserve)
	var out []proxytest.HttpCalloutAttribute
	var outIdx []int
	for i, c := range cs {
		if !stateOf(host).answered[idx[i]] {
			out, outIdx = append(out, c), append(outIdx, idx[i])
		}
	}
	return out, outIdx
}

// nextPoll ticks until the group's next poll is out and checks it is
// the only one in flight; it returns its reserve and index.
func nextPoll(t *testing.T, host proxytest.HostEmulator) (api.ReserveRequest, int) {
	t.Helper()
	tickFor(t, host, "poll", func() bool {
		cs, _ := pendingPolls(host)
		return len(cs) > 0
	})
	cs, idx := pendingPolls(host)
	if len(cs) != 1 {
		t.Fatalf("%d polls in flight for one waiting record, want 1", len(cs))
	}
	var rq api.ReserveRequest
	decodeStrict(t, cs[0].Body, &rq)
	return rq, idx[0]
}

// TestSharedPollAcquiredOnce (issue 12): an acquisition a shared poll
// wins goes to exactly one of the waiters, the oldest still waiting, and
// the others wait on; a waiter that left is skipped; with every waiter
// gone the key is released by its token and nothing goes upstream.
func TestSharedPollAcquiredOnce(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, `"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "10s"`))
		defer reset()
		const n = 5
		var ids []uint32
		for range n {
			id, _ := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
			ids = append(ids, id)
		}
		gone := map[uint32]bool{}
		leave := func(id uint32) {
			host.CompleteHttpContext(id)
			gone[id] = true
		}
		// stillHeld checks that exactly want, of the streams still there, are held.
		stillHeld := func(want ...uint32) {
			t.Helper()
			for _, id := range ids {
				if gone[id] {
					continue
				}
				in := false
				for _, w := range want {
					in = in || w == id
				}
				if held(host, id) != in {
					t.Errorf("stream %d held = %v, want %v", id, !in, in)
				}
			}
		}
		resumed := func(id uint32) {
			t.Helper()
			if r := host.GetSentLocalResponse(id); r != nil || host.GetCurrentHttpStreamAction(id) != types.ActionContinue {
				t.Errorf("stream %d not resumed (action %v)", id, host.GetCurrentHttpStreamAction(id))
			}
		}

		// First acquisition: the oldest, ids[0], and no other.
		_, idx := nextPoll(t, host)
		answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "g1.a"})
		resumed(ids[0])
		stillHeld(ids[1:]...)
		if got := counter(t, host, "idemgate.executions"); got != 1 {
			t.Errorf("executions = %d after one acquisition, want 1", got)
		}

		// The others poll on; in_progress keeps them all.
		_, idx = nextPoll(t, host)
		answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 900})
		stillHeld(ids[1:]...)

		// The oldest remaining left: the acquisition goes to the next.
		leave(ids[1])
		_, idx = nextPoll(t, host)
		answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "g2.b"})
		resumed(ids[2])
		stillHeld(ids[3:]...)
		if got := counter(t, host, "idemgate.executions"); got != 2 {
			t.Errorf("executions = %d after two acquisitions, want 2", got)
		}
		if rel, _ := pluginCallouts(host, api.PathRelease); len(rel) != 0 {
			t.Errorf("%d releases, want none: every acquisition went to a waiter", len(rel))
		}

		// Everyone left while a poll is in flight: release by its token.
		_, idx = nextPoll(t, host)
		leave(ids[3])
		leave(ids[4])
		answerPlugin(t, host, idx, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "g3.c"})
		byToken := 0
		tickFor(t, host, "release by token", func() bool {
			for {
				c, i, ok := nextPluginCallout(host, api.PathRelease)
				if !ok {
					return byToken > 0
				}
				var rel api.ReleaseRequest
				decodeStrict(t, c.Body, &rel)
				if rel.Token == "g3.c" {
					byToken++
				}
				answerPlugin(t, host, i, 200, api.Result{Outcome: "released"})
			}
		})
		if byToken != 1 {
			t.Errorf("releases by the token = %d, want 1", byToken)
		}
		if got := counter(t, host, "idemgate.executions"); got != 2 {
			t.Errorf("executions = %d, want 2: the last acquisition had nobody to forward", got)
		}
		polls, _ := pluginCallouts(host, api.PathReserve)
		if got := counter(t, host, "idemgate.polls"); got != uint64(len(polls)) || got != 4 {
			t.Errorf("idemgate.polls = %d, %d polls sent; want 4 and 4", got, len(polls))
		}
		if got := counter(t, host, "idemgate.waits"); got != n {
			t.Errorf("idemgate.waits = %d, want %d", got, n)
		}
		host.CompleteHttpContext(ids[0])
		host.CompleteHttpContext(ids[2])
	})
}

// TestSharedPollIsolation (issue 12): waiters share a poll only with
// those that would send the same reserve. Two of alice's duplicates, one
// of bob's with the same key and body (another scope) and one of
// alice's with the same key and another body (another fingerprint) make
// three polls, and each answer goes to its own group only: alice's
// replay never reaches bob's or the other body's stream.
func TestSharedPollIsolation(t *testing.T) {
	stored := &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"id":"pay_1"}`)}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, `"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "10s"`))
		defer reset()
		a1, ra := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
		a2, _ := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
		b, rb := holdWaiter(t, host, "Bearer bob-secret", paymentBody)
		c, rc := holdWaiter(t, host, "Bearer alice-secret", `{"amount":200,"currency":"EUR"}`)
		if ra.Scope == rb.Scope || ra.Fingerprint == rc.Fingerprint || ra.Scope != rc.Scope {
			t.Fatalf("scopes %q %q %q, fingerprints %q %q: want bob's scope and the other body's fingerprint to differ", ra.Scope, rb.Scope, rc.Scope, ra.Fingerprint, rc.Fingerprint)
		}
		tickFor(t, host, "three polls", func() bool {
			cs, _ := pendingPolls(host)
			return len(cs) >= 3
		})
		cs, idx := pendingPolls(host)
		if len(cs) != 3 {
			t.Fatalf("%d polls, want 3: one per (scope, fingerprint)", len(cs))
		}
		// Each group's answer; the newest poll first (the emulator's IDs).
		for i := len(cs) - 1; i >= 0; i-- {
			var rq api.ReserveRequest
			decodeStrict(t, cs[i].Body, &rq)
			switch {
			case rq.Scope == ra.Scope && rq.Fingerprint == ra.Fingerprint:
				answerPlugin(t, host, idx[i], 200, api.ReserveResponse{Outcome: api.Completed, Response: stored, ExpiresInMS: 86400000})
			case rq.Scope == rc.Scope && rq.Fingerprint == rc.Fingerprint:
				answerPlugin(t, host, idx[i], 200, api.ReserveResponse{Outcome: api.Mismatch})
			case rq.Scope == rb.Scope && rq.Fingerprint == rb.Fingerprint:
				answerPlugin(t, host, idx[i], 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500})
			default:
				t.Fatalf("poll %+v matches no waiter", rq)
			}
		}
		checkReplay(t, host.GetSentLocalResponse(a1), stored)
		checkReplay(t, host.GetSentLocalResponse(a2), stored)
		checkProblem(t, host.GetSentLocalResponse(c), 422, "Idempotency-Key is already used", "", "")
		if !held(host, b) {
			t.Errorf("bob's stream answered, want it held: its own poll said in_progress")
		}
		for name, want := range map[string]uint64{"idemgate.replays_controlplane": 2, "idemgate.mismatches": 1, "idemgate.executions": 0} {
			if got := counter(t, host, name); got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
		// Bob's group polls on, alone.
		rq, i := nextPoll(t, host)
		if rq.Scope != rb.Scope || rq.Fingerprint != rb.Fingerprint {
			t.Errorf("poll scope %q fingerprint %q, want bob's", rq.Scope, rq.Fingerprint)
		}
		answerPlugin(t, host, i, 200, api.ReserveResponse{Outcome: api.Acquired, Token: "g1.b"})
		if a := host.GetCurrentHttpStreamAction(b); a != types.ActionContinue {
			t.Errorf("bob's stream action = %v, want resumed", a)
		}
		for _, id := range []uint32{a1, a2, b, c} {
			host.CompleteHttpContext(id)
		}
	})
}

// TestSharedPollAnswers (issue 12): a shared poll's answer reaches every
// waiter of its group: completed replays to each (and fills the edge
// cache, so that a retry is answered there), mismatch and indeterminate
// answer each, a failed poll keeps them all waiting and releases its
// holder once when it may have landed.
func TestSharedPollAnswers(t *testing.T) {
	stored := &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"id":"pay_1"}`)}
	tests := []struct {
		name     string
		status   int
		answer   any
		release  bool   // the poll's holder is released
		problem  int    // each waiter's answer; 0: a replay, -1: still held
		title    string // of the problem
		retry    string // its Retry-After
		counters map[string]uint64
	}{
		{name: "completed: every waiter replays", status: 200, answer: api.ReserveResponse{Outcome: api.Completed, Response: stored, ExpiresInMS: 86400000},
			counters: map[string]uint64{"idemgate.replays_controlplane": 3}},
		{name: "mismatch: every waiter 422", status: 200, answer: api.ReserveResponse{Outcome: api.Mismatch}, problem: 422, title: "Idempotency-Key is already used",
			counters: map[string]uint64{"idemgate.mismatches": 3}},
		{name: "indeterminate: every waiter 409", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate}, problem: 409,
			title: "The outcome of the request with this Idempotency-Key is unknown", counters: map[string]uint64{"idemgate.indeterminate": 3}},
		{name: "indeterminate, being reconciled: every waiter 409 + Retry-After", status: 200, answer: api.ReserveResponse{Outcome: api.Indeterminate, ReconcileInMS: 4200}, problem: 409,
			title: "The outcome of the request with this Idempotency-Key is unknown", retry: "5", counters: map[string]uint64{"idemgate.indeterminate": 3}},
		{name: "503: one release by holder, all wait on", status: 503, answer: api.Problem{Title: "x", Status: 503}, release: true, problem: -1,
			counters: map[string]uint64{"idemgate.controlplane_errors": 1}},
		{name: "no answer: one release by holder, all wait on", status: 0, release: true, problem: -1,
			counters: map[string]uint64{"idemgate.controlplane_errors": 1}},
		{name: "acquired without a token: one release by holder, all wait on", status: 200, answer: api.ReserveResponse{Outcome: api.Acquired},
			release: true, problem: -1, counters: map[string]uint64{"idemgate.controlplane_errors": 1, "idemgate.executions": 0}},
		{name: "400: nothing landed, all wait on", status: 400, answer: api.Problem{Title: "x", Status: 400}, problem: -1,
			counters: map[string]uint64{"idemgate.controlplane_errors": 1}},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, `"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "10s"`,
					`"routes": [`, `"edge_cache_slots": 64, "routes": [`))
				defer reset()
				var ids []uint32
				for range 3 {
					id, _ := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
					ids = append(ids, id)
				}
				poll, idx := nextPoll(t, host)
				answerPlugin(t, host, idx, tc.status, tc.answer)
				for _, id := range ids {
					switch r := host.GetSentLocalResponse(id); tc.problem {
					case 0:
						checkReplay(t, r, stored)
					case -1:
						if !held(host, id) {
							t.Errorf("stream %d not held", id)
						}
					default:
						checkProblem(t, r, tc.problem, tc.title, "", tc.retry)
					}
				}
				var releases []api.ReleaseRequest
				for range 20 {
					host.Tick()
					answerEpochPolls(t, host)
					if c, i, ok := nextPluginCallout(host, api.PathRelease); ok {
						var rel api.ReleaseRequest
						decodeStrict(t, c.Body, &rel)
						releases = append(releases, rel)
						answerPlugin(t, host, i, 200, api.Result{Outcome: "fenced"})
					}
				}
				switch {
				case tc.release && (len(releases) != 1 || releases[0].Holder != poll.Holder || releases[0].Token != ""):
					t.Errorf("releases %+v, want one by the poll's holder %q", releases, poll.Holder)
				case !tc.release && len(releases) != 0:
					t.Errorf("releases %+v, want none", releases)
				}
				for name, want := range tc.counters {
					if got := counter(t, host, name); got != want {
						t.Errorf("%s = %d, want %d", name, got, want)
					}
				}
				if tc.problem == 0 {
					// The edge cache holds the response: a retry needs no callout.
					id := host.InitializeHttpContext()
					sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
					if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
						t.Errorf("retry after the shared replay: %d callouts, want an edge replay", n)
					}
					checkReplay(t, host.GetSentLocalResponse(id), stored)
					host.CompleteHttpContext(id)
				}
				for _, id := range ids {
					host.CompleteHttpContext(id)
				}
			})
		}
	})
}

// TestSharedPollOneInFlight (issue 12): 100 duplicates of one request
// held by wait send one poll at a time, not one each: no tick sends more
// than one, and none is sent while another is unanswered (natively and
// in the module, whatever its clock).
func TestSharedPollOneInFlight(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, `"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "10s"`))
		defer reset()
		const n = 100
		var ids []uint32
		for range n {
			id, _ := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
			ids = append(ids, id)
		}
		inProgress := api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500}
		// Every other poll is answered a tick late: meanwhile no other
		// poll may go out.
		polls, late := 0, -1
		for tick := range 400 {
			host.Tick()
			answerEpochPolls(t, host)
			cs, idx := pendingPolls(host)
			switch {
			case len(cs) > 1:
				t.Fatalf("tick %d: %d polls in flight for one record, want at most 1", tick, len(cs))
			case late >= 0:
				if len(cs) != 1 || idx[0] != late {
					t.Fatalf("tick %d: a poll sent while another was in flight", tick)
				}
				answerPlugin(t, host, late, 200, inProgress)
				late = -1
			case len(cs) == 1:
				polls++
				if polls%2 == 0 {
					late = idx[0]
					break
				}
				answerPlugin(t, host, idx[0], 200, inProgress)
			}
			time.Sleep(time.Millisecond / 4)
		}
		sent, _ := pluginCallouts(host, api.PathReserve)
		if polls == 0 || len(sent) != polls || counter(t, host, "idemgate.polls") != uint64(polls) {
			t.Errorf("polls seen %d, sent %d, idemgate.polls %d: want them equal and > 0", polls, len(sent), counter(t, host, "idemgate.polls"))
		}
		t.Logf("%d polls in 400 ticks for %d waiters", polls, n)
		for _, id := range ids {
			if !held(host, id) {
				t.Errorf("stream %d answered, want it held", id)
			}
			host.CompleteHttpContext(id)
		}
	})
}
