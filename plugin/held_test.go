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
