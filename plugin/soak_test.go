//go:build !wasm

package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	wazeroapi "github.com/tetratelabs/wazero/api"
)

// soakRequests is how many requests TestSoak drives through the compiled
// module: 10 000 by default (make test), 100 000 in make check, which
// passes -soak.requests.
var soakRequests = flag.Int("soak.requests", 10_000, "requests TestSoak drives through the compiled module (at least 2000)")

// soakSample: every soakSample requests after warm-up, the test reads the
// guest's memory.
const soakSample = 1000

// TestSoak drives -soak.requests requests through the compiled module
// under wazero (4,500 to 6,000 requests/s measured here) — a rotating mix
// of misses (reserve answered acquired, a 1 KB 201, complete), edge
// replays, edge mismatches and misses the control plane answers completed
// — and shows that the guest's memory stays bounded: the filter's
// heap_alloc_bytes gauge stays under a bound after warm-up, and
// wasm_memory_bytes (the linear memory the Go runtime grew) stops growing.
// Only the wasm runner: the native one has no linear memory to watch.
//
// A leak is caught when what it retains passes the bounds below (a 6 MiB
// heap, 4 MiB of growth): a few hundred bytes a request in 10 000
// requests, a few dozen in 100 000. Streams the host deletes but the
// guest keeps (the proxy_on_delete below left out, about 550 bytes each)
// fail 10 000 requests on both: the heap reaches 8.2 MB, linear memory
// grows 5.2 MB.
func TestSoak(t *testing.T) {
	n := *soakRequests
	if n < 2*soakSample {
		t.Fatalf("-soak.requests=%d: want at least %d (a warm-up and a sample after it)", n, 2*soakSample)
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("read %s (run `make wasm`): %v", wasmPath, err)
	}
	vm, err := proxytest.NewWasmVMContext(wasm)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	// The emulator logs every callout it sees.
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	host, reset := startHost(t, vm, demoConfig)
	defer reset()
	// The emulator never calls the guest's proxy_on_delete (its wasm
	// wrapper lacks it), so the SDK inside the module would keep every
	// stream's context: the test calls it, as Envoy does.
	mod := guestModule(t, vm)
	onDelete := mod.ExportedFunction("proxy_on_delete")
	ctx := context.Background()

	respBody := []byte(`{"id":"pay_1","note":"` + strings.Repeat("x", 1000) + `"}`)
	respHeaders := [][2]string{{":status", "201"}, {"content-type", "application/json"}, {"location", "/payments/pay_1"}}
	acquired, _ := json.Marshal(api.ReserveResponse{Outcome: api.Acquired, Token: "t1"})
	completedAnswer, _ := json.Marshal(api.ReserveResponse{Outcome: api.Completed, Response: &api.StoredResponse{
		Status: 201, Headers: api.Headers{{"content-type", "application/json"}}, Body: respBody}})
	okResult, _ := json.Marshal(api.Result{Outcome: "completed"})
	okHeaders := [][2]string{{":status", "200"}, {"content-type", "application/json"}}
	body := []byte(paymentBody)
	otherBody := []byte(`{"amount":999,"currency":"EUR"}`)

	// answerCallout answers the callout with index i of context id.
	answerCallout := func(id uint32, i int, body []byte) {
		cs := host.GetCalloutAttributesFromContext(id)
		if len(cs) <= i {
			t.Fatalf("context %d: %d callouts, want %d", id, len(cs), i+1)
		}
		host.CallOnHttpCallResponse(cs[i].CalloutID, okHeaders, nil, body)
	}
	// localStatus returns the status the filter answered with, or 0.
	localStatus := func(id uint32) uint32 {
		if r := host.GetSentLocalResponse(id); r != nil {
			return r.StatusCode
		}
		return 0
	}

	// The first tenth (at most 10 000) warms up: the Go runtime grows its
	// heap to its working size, then it must stay there.
	warmUp := min(10_000, n/10)
	// The Go runtime collects when the heap doubles its live part, and
	// not below 4 MB: with the filter's few MB live the gauge stays under
	// 4 MB (3.6 MB at most measured, at 10 000 and at 100 000 requests).
	// Past 6 MiB more than 3 MiB is live: a leak, caught well below the
	// filter's own bound (heapGCBound, where it forces a collection).
	const heapBound = 6 << 20
	const linearBound = 32 << 20
	var sysAfterWarmUp, maxHeap, maxSys, linearAfterWarmUp, maxLinear uint64
	want := map[string]uint64{}
	start := time.Now()
	for i := range n {
		key := [2]string{"idempotency-key", "k" + strconv.Itoa(i/4)}
		id := host.InitializeHttpContext()
		switch i % 4 {
		case 0: // miss: reserve → acquired → 201 → complete (fills the edge cache)
			host.CallOnRequestHeaders(id, paymentHeaders(key), false)
			host.CallOnRequestBody(id, body, true)
			answerCallout(id, 0, acquired)
			host.CallOnResponseHeaders(id, respHeaders, false)
			host.CallOnResponseBody(id, respBody, true)
			answerCallout(id, 1, okResult)
			want["idemgate.executions"]++
		case 1: // retry of the same request: replayed at the edge
			host.CallOnRequestHeaders(id, paymentHeaders(key), false)
			if host.CallOnRequestBody(id, body, true); localStatus(id) != 201 {
				t.Fatalf("request %d: edge replay answered %d, callouts %d", i, localStatus(id), len(host.GetCalloutAttributesFromContext(id)))
			}
			want["idemgate.replays_edge"]++
		case 2: // same key, another payload: 422 at the edge
			host.CallOnRequestHeaders(id, paymentHeaders(key), false)
			if host.CallOnRequestBody(id, otherBody, true); localStatus(id) != 422 {
				t.Fatalf("request %d: mismatch answered %d", i, localStatus(id))
			}
			want["idemgate.mismatches"]++
		case 3: // a key another Envoy completed: the control plane replays it
			host.CallOnRequestHeaders(id, paymentHeaders([2]string{"idempotency-key", "c" + strconv.Itoa(i)}), false)
			host.CallOnRequestBody(id, body, true)
			if answerCallout(id, 0, completedAnswer); localStatus(id) != 201 {
				t.Fatalf("request %d: control-plane replay answered %d", i, localStatus(id))
			}
			want["idemgate.replays_controlplane"]++
		}
		host.CompleteHttpContext(id)
		if _, err := onDelete.Call(ctx, uint64(id)); err != nil {
			t.Fatalf("proxy_on_delete(%d): %v", id, err)
		}
		if i%soakSample == soakSample-1 && i >= warmUp {
			heap, _ := host.GetGaugeMetric("idemgate.heap_alloc_bytes")
			sys, _ := host.GetGaugeMetric("idemgate.wasm_memory_bytes")
			linear := uint64(mod.Memory().Size())
			if linearAfterWarmUp == 0 {
				sysAfterWarmUp, linearAfterWarmUp = sys, linear
			}
			maxHeap, maxSys, maxLinear = max(maxHeap, heap), max(maxSys, sys), max(maxLinear, linear)
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d requests in %v: %.0f requests/s; after warm-up: heap_alloc_bytes ≤ %d, wasm_memory_bytes %d → max %d, linear memory %d → max %d",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), maxHeap, sysAfterWarmUp, maxSys, linearAfterWarmUp, maxLinear)
	want["idemgate.requests_governed"] = uint64(n)
	for name, w := range want {
		if got := counter(t, host, name); got != w {
			t.Errorf("%s = %d, want %d", name, got, w)
		}
	}
	if errs := host.GetErrorLogs(); len(errs) != 0 {
		t.Errorf("error logs: %q", errs[:min(len(errs), 5)])
	}
	if maxHeap == 0 || maxHeap > heapBound {
		t.Errorf("heap_alloc_bytes reached %d after warm-up, want (0, %d]", maxHeap, heapBound)
	}
	// Linear memory may grow a little while the heap settles; it must not
	// keep growing with the request count.
	if maxSys > sysAfterWarmUp+4<<20 {
		t.Errorf("wasm_memory_bytes grew from %d after warm-up to %d", sysAfterWarmUp, maxSys)
	}
	if maxLinear > linearBound {
		t.Errorf("linear memory reached %d, want at most %d", maxLinear, linearBound)
	}
	if maxLinear > linearAfterWarmUp+4<<20 {
		t.Errorf("linear memory grew from %d after warm-up to %d", linearAfterWarmUp, maxLinear)
	}
}

// guestModule digs the filter's wazero module out of a WasmVMContext,
// which does not expose it: the soak test needs its linear memory size
// and its proxy_on_delete. It walks unexported fields (the wrapper's
// runtime, wazero's store and its module list), so a new SDK or wazero
// may break it; it then fails loudly rather than skip.
func guestModule(t testing.TB, vm proxytest.WasmVMContext) wazeroapi.Module {
	t.Helper()
	open := func(v reflect.Value) reflect.Value {
		return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
	}
	field := func(v reflect.Value, name string) reflect.Value {
		for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
			if v.IsNil() {
				t.Fatalf("guestModule: nil before field %s", name)
			}
			v = v.Elem()
		}
		f := v.FieldByName(name)
		if !f.IsValid() {
			t.Fatalf("guestModule: %v has no field %s (SDK or wazero changed)", v.Type(), name)
		}
		return open(f)
	}
	store := field(field(reflect.ValueOf(vm), "runtime"), "store")
	for m := field(store, "moduleList"); !m.IsNil(); m = field(m, "next") {
		if mod, ok := m.Interface().(wazeroapi.Module); ok && mod.ExportedFunction("proxy_on_delete") != nil {
			return mod
		}
	}
	t.Fatal("guestModule: no module exports proxy_on_delete")
	return nil
}

// TestCheckMemoryCollects: past heapGCBound the filter forces a
// collection (natively: the test binary's heap stands in for the VM's).
func TestCheckMemoryCollects(t *testing.T) {
	defer func(b uint64, d bool) { heapGCBound, memWatch.defined = b, d }(heapGCBound, memWatch.defined)
	heapGCBound, memWatch.defined = 1, false // no host: no gauges
	before := memWatch.collections
	checkMemory()
	if memWatch.collections != before+1 {
		t.Errorf("collections = %d, want %d", memWatch.collections, before+1)
	}
	heapGCBound = 1 << 62
	checkMemory()
	if memWatch.collections != before+1 {
		t.Errorf("collected under the bound")
	}
}
