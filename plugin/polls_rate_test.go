//go:build !wasm

package main

import (
	"io"
	"log"
	"os"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
)

// pollsOver holds n duplicates of one request in progress (wait_timeout
// 10 s: a poll ceiling of 100 ms) and drives the plugin's tick for d in
// 1 ms steps of a fake clock, answering every poll in_progress at once;
// it returns the polls sent (reserve callouts of the plugin context).
// Natively only: the clock is the package's now.
func pollsOver(t *testing.T, n int, d time.Duration) int {
	t.Helper()
	clock := time.Now().UnixNano()
	defer func(old func() int64) { now = old }(now)
	now = func() int64 { return clock }
	log.SetOutput(io.Discard) // the emulator logs every callout
	defer log.SetOutput(os.Stderr)
	host, reset := startHost(t, &vmContext{}, withConfig(t, `"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "10s"`))
	defer reset()
	inProgress := api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500}
	for range n {
		id := host.InitializeHttpContext()
		sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
		cs := host.GetCalloutAttributesFromContext(id)
		if len(cs) != 1 {
			t.Fatalf("stream %d: %d callouts, want its reserve", id, len(cs))
		}
		answer(t, host, cs[0], 200, inProgress)
	}
	seen := len(host.GetCalloutAttributesFromContext(proxytest.PluginContextID))
	polls := 0
	for range d / time.Millisecond {
		clock += int64(time.Millisecond)
		host.Tick()
		cs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
		// Newest first: the emulator reuses the IDs of answered callouts.
		for i := len(cs) - 1; i >= seen; i-- {
			switch p, _ := header(cs[i].Headers, ":path"); p {
			case api.PathReserve:
				answer(t, host, cs[i], 200, inProgress)
				polls++
			case api.PathEdgeEpoch:
				answer(t, host, cs[i], 200, api.EdgeEpoch{Epoch: 1})
			default:
				t.Fatalf("plugin callout %s, want only polls", p)
			}
		}
		seen = len(cs)
	}
	return polls
}

// TestPollRate (issue 12): waiters on one key cost one poll per
// interval, however many: 1, 100 and 1000 duplicates send the same
// polls, first after 10 ms, then 20, 40, 80 ms later, then every 100 ms
// (the ceiling for wait_timeout 10 s): 12 in the first second of the
// fake clock, 10 in each next. (Before, each duplicate polled on its
// own every 100 ms: 10, 1000 and 10000 a second.)
func TestPollRate(t *testing.T) {
	for _, n := range []int{1, 100, 1000} {
		first, three := pollsOver(t, n, time.Second), pollsOver(t, n, 3*time.Second)
		if first != 12 || three-first != 20 {
			t.Errorf("%d waiters on one key: %d polls in the first second, %d in the next two; want 12 and 20", n, first, three-first)
		}
		t.Logf("%4d waiters on one key: %d polls in the first second, %d a second after", n, first, (three-first)/2)
	}
}

// TestPollAfterTimeout: a waiter whose wait_timeout passes gets its 409
// from the tick that also sends its group's next poll for the waiters
// left; that poll is the plugin context's, whose answer reaches them
// (a poll sent while the ended wait's stream is the effective context
// would be that stream's: its answer lost with it). Fake clock, natively.
func TestPollAfterTimeout(t *testing.T) {
	clock := time.Now().UnixNano()
	defer func(old func() int64) { now = old }(now)
	now = func() int64 { return clock }
	host, reset := startHost(t, &vmContext{}, withConfig(t, `"on_in_progress": "conflict"`, `"on_in_progress": "wait", "wait_timeout": "200ms"`))
	defer reset()
	stored := &api.StoredResponse{Status: 201, Body: []byte(`{"id":"pay_1"}`)}
	seen := len(host.GetCalloutAttributesFromContext(proxytest.PluginContextID))
	// step advances the clock ms by ms, answering each poll with what.
	step := func(ms int, what api.ReserveResponse) int {
		polls := 0
		for range ms {
			clock += int64(time.Millisecond)
			host.Tick()
			cs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
			for i := len(cs) - 1; i >= seen; i-- {
				if p, _ := header(cs[i].Headers, ":path"); p == api.PathReserve {
					polls++
				}
				answer(t, host, cs[i], 200, what)
			}
			seen = len(cs)
		}
		return polls
	}
	inProgress := api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1500}
	w1, _ := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
	step(100, inProgress)
	w2, _ := holdWaiter(t, host, "Bearer alice-secret", paymentBody)
	// w1's wait ends at 200 ms, on a tick that polls (every 10 ms).
	polls := step(101, inProgress)
	checkProblem(t, host.GetSentLocalResponse(w1), 409, "A request is outstanding for this Idempotency-Key", "", "2")
	for _, id := range []uint32{w1, w2} {
		if n := len(host.GetCalloutAttributesFromContext(id)); n != 1 {
			t.Errorf("stream %d: %d callouts, want only its own reserve: polls are the plugin context's", id, n)
		}
	}
	if polls != 10 {
		t.Errorf("polls in 101 ms = %d, want 10 (every 10 ms)", polls)
	}
	if !held(host, w2) {
		t.Fatal("w2 answered, want it waiting")
	}
	step(10, api.ReserveResponse{Outcome: api.Completed, Response: stored})
	checkReplay(t, host.GetSentLocalResponse(w2), stored)
}
