//go:build !wasm

package main

import (
	"context"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// heldStreams is how many streams TestHeldStreamsMemory holds at once,
// and maxHeldGrowth the linear memory they may grow at most: 8 MiB, where
// they grew 112 MB before issue 12 (30 KB headers, 50 KB bodies).
const (
	heldStreams   = 1000
	maxHeldGrowth = 8 << 20
)

// bigHeaders is a governed request's headers with a 30 KB header that
// counts in nothing (a long cookie, say), and bigBody a 50 KB JSON body:
// the shape of issue 12's burst.
func bigHeaders(key string) [][2]string {
	return paymentHeaders([2]string{"idempotency-key", key}, [2]string{"x-pad", strings.Repeat("p", 30<<10)})
}

var bigBody = []byte(`{"amount":1000,"currency":"EUR","note":"` + strings.Repeat("n", 50<<10) + `"}`)

// TestHeldStreamsMemory holds heldStreams governed streams at once in the
// compiled module under wazero and measures what they cost the guest:
// linear memory growth per stream while they are held, and the bytes the
// filter accounts for them (idemgate.held_bytes). Each scenario runs in
// a VM of its own, since linear memory never shrinks:
//
//   - forwarded: distinct keys, reserve answered acquired, the upstream
//     not yet answered (a slow upstream);
//   - waiting: duplicates on 10 keys held by on_in_progress wait.
//
// Every stream then ends, and the accounted bytes must come back to 0.
// Only the wasm runner: the native one has no linear memory of its own.
func TestHeldStreamsMemory(t *testing.T) {
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("read %s (run `make wasm`): %v", wasmPath, err)
	}
	acquired := api.ReserveResponse{Outcome: api.Acquired, Token: "t1"}
	inProgress := api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 30000}
	tests := []struct {
		name    string
		config  []string
		headers func(i int) [][2]string
		body    []byte
		answer  api.ReserveResponse
	}{
		{name: "forwarded, small", headers: func(i int) [][2]string {
			return paymentHeaders([2]string{"idempotency-key", "f" + strconv.Itoa(i)})
		}, body: body1KB, answer: acquired},
		{name: "forwarded, 30 KB headers and 50 KB body", headers: func(i int) [][2]string {
			return bigHeaders("f" + strconv.Itoa(i))
		}, body: bigBody, answer: acquired},
		{name: "waiting, 30 KB headers and 50 KB body", config: []string{`"on_in_progress": "conflict"`, `"on_in_progress": "wait"`},
			headers: func(i int) [][2]string { return bigHeaders("w" + strconv.Itoa(i%10)) },
			body:    bigBody, answer: inProgress},
	}
	log.SetOutput(io.Discard) // the emulator logs every callout
	defer log.SetOutput(os.Stderr)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := proxytest.NewWasmVMContext(wasm)
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			host, reset := startHost(t, vm, withConfig(t, tc.config...))
			defer reset()
			mod := guestModule(t, vm)
			onDelete := mod.ExportedFunction("proxy_on_delete")
			end := func(id uint32) {
				host.CompleteHttpContext(id)
				if _, err := onDelete.Call(context.Background(), uint64(id)); err != nil {
					t.Fatalf("proxy_on_delete(%d): %v", id, err)
				}
			}
			// Warm up: a few streams of the same shape, ended.
			for i := range 20 {
				id := host.InitializeHttpContext()
				sendRequest(host, id, tc.headers(heldStreams+i), tc.body)
				answer(t, host, host.GetCalloutAttributesFromContext(id)[0], 200, tc.answer)
				end(id)
			}
			before := uint64(mod.Memory().Size())
			ids := make([]uint32, heldStreams)
			for i := range ids {
				ids[i] = host.InitializeHttpContext()
				sendRequest(host, ids[i], tc.headers(i), tc.body)
				cs := host.GetCalloutAttributesFromContext(ids[i])
				if len(cs) != 1 {
					t.Fatalf("stream %d: %d callouts, want its reserve", i, len(cs))
				}
				answer(t, host, cs[0], 200, tc.answer)
				if r := host.GetSentLocalResponse(ids[i]); r != nil {
					t.Fatalf("stream %d answered %d %s, want it held", i, r.StatusCode, r.Data)
				}
			}
			held := uint64(mod.Memory().Size())
			heldBytes := gauge(t, host, "idemgate.held_bytes")
			for _, id := range ids {
				end(id)
			}
			after := gauge(t, host, "idemgate.held_bytes")
			perStream := (held - before) / heldStreams
			t.Logf("%d streams held: linear memory %d → %d (%d bytes/stream); accounted %d bytes (%d/stream); after they end: %d",
				heldStreams, before, held, perStream, heldBytes, heldBytes/heldStreams, after)
			// The Go runtime's smallest heap goal is 4 MiB: below that,
			// growth is the collector's, not the streams'.
			if held-before > maxHeldGrowth {
				t.Errorf("linear memory grew %d bytes for %d held streams, want at most %d", held-before, heldStreams, maxHeldGrowth)
			}
			// What a stream counts does not grow with its headers or body.
			if heldBytes < heldStreams*heldBase || heldBytes > heldStreams*2*heldBase {
				t.Errorf("held_bytes = %d while %d streams are held, want %d to %d", heldBytes, heldStreams, heldStreams*heldBase, heldStreams*2*heldBase)
			}
			if after != 0 {
				t.Errorf("held_bytes = %d after every stream ended, want 0", after)
			}
		})
	}
}

// gauge reads a gauge of the filter; a gauge never set reads 0.
func gauge(t testing.TB, host proxytest.HostEmulator, name string) uint64 {
	t.Helper()
	v, _ := host.GetGaugeMetric(name)
	return v
}

// TestHeldBytesReturned: whatever path ends a governed stream, the bytes
// it counted in held_bytes come back when it ends; while it is held they
// are counted.
func TestHeldBytesReturned(t *testing.T) {
	acquired := api.ReserveResponse{Outcome: api.Acquired, Token: "t1"}
	ok := api.Result{Outcome: "completed"}
	tests := []struct {
		name   string
		config []string
		// run drives one or more streams; every stream it starts, it
		// returns, held still (the test ends them).
		run func(t *testing.T, host proxytest.HostEmulator) []uint32
	}{
		{name: "completed: response stored, complete answered", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
			answer(t, host, respond201(t, host, id), 200, ok)
			return []uint32{id}
		}},
		{name: "forwarded, complete in flight, client gone", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
			respond201(t, host, id)
			return []uint32{id}
		}},
		{name: "forwarded, no response: indeterminate", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
			return []uint32{id}
		}},
		{name: "forwarded, response body cut: indeterminate", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
			respondBuffering(t, host, id)
			return []uint32{id}
		}},
		{name: "indeterminate status: abandon answered", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			acquire(t, host, id, paymentHeaders(keyK1), []byte(paymentBody), false)
			host.CallOnResponseHeaders(id, [][2]string{{":status", "503"}}, true)
			answer(t, host, nthCallout(t, host, id, 1, api.PathAbandon), 200, ok)
			return []uint32{id}
		}},
		{name: "answered locally: reserve mismatch", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Mismatch})
			return []uint32{id}
		}},
		{name: "answered locally: edge replay", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			first := host.InitializeHttpContext()
			acquire(t, host, first, paymentHeaders(keyK1), []byte(paymentBody), false)
			answer(t, host, respond201(t, host, first), 200, ok)
			retry := host.InitializeHttpContext()
			sendRequest(host, retry, paymentHeaders(keyK1), []byte(paymentBody))
			if r := host.GetSentLocalResponse(retry); r == nil || r.StatusCode != 201 {
				t.Fatalf("retry: local response %v, want the edge replay", r)
			}
			return []uint32{first, retry}
		}},
		{name: "answered locally: control plane unavailable", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 503, nil)
			return []uint32{id}
		}},
		{name: "fail open: forwarded ungoverned", config: []string{`"failure_mode": "closed"`, `"failure_mode": "open"`}, run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 503, nil)
			return []uint32{id}
		}},
		{name: "client gone: reserve in flight", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			return []uint32{id}
		}},
		{name: "client gone: body still arriving", run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, paymentHeaders(keyK1), false)
			host.CallOnRequestBody(id, []byte(`{"amount":`), false)
			return []uint32{id}
		}},
		{name: "client gone: waiting", config: waitConfig, run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1000})
			if r := host.GetSentLocalResponse(id); r != nil {
				t.Fatalf("local response %d, want the duplicate held", r.StatusCode)
			}
			return []uint32{id}
		}},
		{name: "wait ends: the poll acquires", config: waitConfig, run: func(t *testing.T, host proxytest.HostEmulator) []uint32 {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
			answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 1000})
			var poll int
			tickFor(t, host, "poll", func() bool {
				_, i, found := nextPluginCallout(host, api.PathReserve)
				poll = i
				return found
			})
			answerPlugin(t, host, poll, 200, acquired)
			if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
				t.Fatalf("stream action = %v after the poll acquired, want ActionContinue", a)
			}
			return []uint32{id}
		}},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				ids := tc.run(t, host)
				if n := gauge(t, host, "idemgate.held_bytes"); n < heldBase {
					t.Errorf("held_bytes = %d while the stream is held, want at least %d", n, heldBase)
				}
				for _, id := range ids {
					host.CompleteHttpContext(id)
				}
				if n := gauge(t, host, "idemgate.held_bytes"); n != 0 {
					t.Errorf("held_bytes = %d after the stream ended, want 0", n)
				}
			})
		}
	})
}

// TestMaxHeldBytes: past max_held_bytes a new governed request is
// answered 503 + Retry-After: 1 (overloaded) without a callout and never
// forwarded; a stream that ends makes room again; a response the budget
// has no room for is not refused but queued, and flows on at once.
func TestMaxHeldBytes(t *testing.T) {
	const budget = 64 << 10
	config := []string{`"routes": [`, `"max_held_bytes": 65536, "routes": [`}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, config...))
		defer reset()
		key := func(i int) [2]string { return [2]string{"idempotency-key", "n" + strconv.Itoa(i)} }
		// first is admitted and forwarded before the budget fills.
		first := host.InitializeHttpContext()
		acquire(t, host, first, paymentHeaders(keyK1), []byte(paymentBody), false)
		var held []uint32
		shed := uint32(0)
		for i := 1; i <= budget/heldBase && shed == 0; i++ {
			id := host.InitializeHttpContext()
			sendRequest(host, id, paymentHeaders(key(i)), []byte(paymentBody))
			if r := host.GetSentLocalResponse(id); r != nil {
				shed = id
				break
			}
			held = append(held, id)
		}
		if shed == 0 {
			t.Fatalf("%d streams held and none shed under max_held_bytes %d", len(held)+1, budget)
		}
		checkProblem(t, host.GetSentLocalResponse(shed), 503, "The gateway is overloaded", "memory budget", "1")
		if n := len(host.GetCalloutAttributesFromContext(shed)); n != 0 {
			t.Errorf("shed request made %d callouts, want none", n)
		}
		if a := host.GetCurrentHttpStreamAction(shed); a != types.ActionPause {
			t.Errorf("shed request action = %v, want ActionPause (never forwarded)", a)
		}
		if n := counter(t, host, "idemgate.shed_memory"); n != 1 {
			t.Errorf("shed_memory = %d, want 1", n)
		}
		n := gauge(t, host, "idemgate.held_bytes")
		if n > budget || n < uint64(len(held)+1)*heldBase {
			t.Errorf("held_bytes = %d with %d streams held, want %d to %d", n, len(held)+1, (len(held)+1)*heldBase, budget)
		}
		t.Logf("max_held_bytes %d: %d streams held (%d bytes), the next shed", budget, len(held)+1, n)
		host.CompleteHttpContext(shed)

		// The budget has no room for first's response body: its complete
		// is queued and the response flows on.
		host.CallOnResponseHeaders(first, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
		big := []byte(`{"id":"` + strings.Repeat("x", 4096) + `"}`)
		if a := host.CallOnResponseBody(first, big, true); a != types.ActionContinue {
			t.Errorf("response body action = %v with no room to hold it, want ActionContinue", a)
		}
		if n := len(host.GetCalloutAttributesFromContext(first)); n != 1 {
			t.Errorf("%d callouts of the stream, want its reserve only (the complete is queued)", n)
		}
		tickFor(t, host, "queued complete", func() bool {
			_, _, found := nextPluginCallout(host, api.PathComplete)
			return found
		})
		c, i, _ := nextPluginCallout(host, api.PathComplete)
		var req api.CompleteRequest
		decodeStrict(t, c.Body, &req)
		if req.Response.Status != 201 || string(req.Response.Body) != string(big) || req.Token != "t1" {
			t.Errorf("queued complete = status %d, token %q, %d-byte body; want 201, t1, the response", req.Response.Status, req.Token, len(req.Response.Body))
		}
		answerPlugin(t, host, i, 200, api.Result{Outcome: "completed"})
		host.CompleteHttpContext(first)

		// Ended streams make room: the next request is admitted.
		host.CompleteHttpContext(held[0])
		id := host.InitializeHttpContext()
		sendRequest(host, id, paymentHeaders(key(budget)), []byte(paymentBody))
		if r := host.GetSentLocalResponse(id); r != nil {
			t.Errorf("after two streams ended: answered %d %s, want admitted", r.StatusCode, r.Data)
		}
		held = append(held[1:], id)
		for _, id := range held {
			host.CompleteHttpContext(id)
		}
		if n := gauge(t, host, "idemgate.held_bytes"); n != 0 {
			t.Errorf("held_bytes = %d after every stream ended, want 0", n)
		}
	})
}
