// The emulator's mock host only exists in native builds (the SDK gates it on
// !wasm), so these tests cannot compile for wasip1.

//go:build !wasm

package main

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// wasmPath is relative to this package's directory, where go test runs.
const wasmPath = "../build/idempotency.wasm"

// vmTest runs f natively ("go") and against the compiled module under wazero
// ("wasm"): the native run gives readable failures, the wasm run proves the
// binary Envoy loads behaves the same. A missing module fails the test
// rather than skipping it, so a green run always means both were exercised.
//
// Every emulator f starts re-creates the plugin context, so cases share
// only VM-level state, like successive configs on one Envoy worker; the
// wasm runs of all the tests share one VM (sharedWasmVM), as they would
// share one worker.
func vmTest(t *testing.T, f func(*testing.T, types.VMContext)) {
	t.Helper()
	t.Run("go", func(t *testing.T) {
		f(t, &vmContext{})
	})
	t.Run("wasm", func(t *testing.T) {
		vm := sharedWasmVM(t)
		defer func() {
			if t.Failed() {
				dropWasmVM(t)
			}
		}()
		f(t, vm)
	})
}

// wasmVM is the VM of the compiled module that every test's wasm run
// shares. Loading the module costs about 1.7 s, several times that on
// loaded cores (wazero compiles it), and proxytest compiles it again for
// each VM: one VM for the process makes it one compilation instead of one
// per test. A test that fails drops the VM (a trap leaves it unusable),
// so the tests after it start on a fresh one.
var wasmVM struct {
	vm    proxytest.WasmVMContext
	loads int // VMs created: sharedWasmVM's test counts them
}

// sharedWasmVM returns the shared VM, loading build/idempotency.wasm the
// first time.
func sharedWasmVM(t *testing.T) types.VMContext {
	t.Helper()
	if wasmVM.vm != nil {
		return wasmVM.vm
	}
	wasm, err := os.ReadFile(wasmPath)
	if errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("build/idempotency.wasm missing: run `make wasm` first")
	}
	if err != nil {
		t.Fatalf("read %s: %v", wasmPath, err)
	}
	vm, err := proxytest.NewWasmVMContext(wasm)
	if err != nil {
		t.Fatalf("load %s: %v", wasmPath, err)
	}
	wasmVM.vm = vm
	wasmVM.loads++
	return vm
}

// dropWasmVM closes the shared VM: the next sharedWasmVM loads a new one.
func dropWasmVM(t *testing.T) {
	t.Helper()
	if wasmVM.vm == nil {
		return
	}
	if err := wasmVM.vm.Close(); err != nil {
		t.Errorf("close wasm VM: %v", err)
	}
	wasmVM.vm = nil
}

// newHost starts the process-wide emulator for vm with the given plugin
// configuration and runs OnVMStart, as Envoy does before OnPluginStart.
// Callers must defer the returned reset before starting another emulator.
func newHost(t testing.TB, vm types.VMContext, config string) (proxytest.HostEmulator, func()) {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(config))
	host, reset := proxytest.NewHostEmulator(opt)
	if st := host.StartVM(); st != types.OnVMStartStatusOK {
		reset()
		t.Fatalf("StartVM() = %v, want OK", st)
	}
	return host, reset
}

func TestPluginStart(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		want    types.OnPluginStartStatus
		wantLog string // substring of an error log; "" means no error logs
	}{
		{name: "demo policy", config: demoConfig, want: types.OnPluginStartStatusOK},
		{name: "empty", config: "", want: types.OnPluginStartStatusFailed, wantLog: "the configuration is empty"},
		{name: "empty object", config: "{}", want: types.OnPluginStartStatusFailed, wantLog: "control_plane"},
		{name: "invalid JSON", config: "{", want: types.OnPluginStartStatusFailed, wantLog: "invalid idempotency configuration"},
		{name: "array", config: "[1]", want: types.OnPluginStartStatusFailed, wantLog: "invalid idempotency configuration"},
		{
			name:    "bad field",
			config:  strings.Replace(demoConfig, `"max_body_bytes": 1048576`, `"max_body_bytes": 0`, 1),
			want:    types.OnPluginStartStatusFailed,
			wantLog: "routes[0].max_body_bytes: must be > 0, got 0",
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := newHost(t, vm, tc.config)
				defer reset()

				if got := host.StartPlugin(); got != tc.want {
					t.Errorf("StartPlugin() = %v, want %v", got, tc.want)
				}
				errLogs := host.GetErrorLogs()
				if tc.wantLog == "" {
					if len(errLogs) != 0 {
						t.Errorf("error logs = %q, want none", errLogs)
					}
					return
				}
				if !slices.ContainsFunc(errLogs, func(l string) bool { return strings.Contains(l, tc.wantLog) }) {
					t.Errorf("error logs = %q, want one containing %q", errLogs, tc.wantLog)
				}
			})
		}
	})
}

// TestPassThrough: requests no route governs pass through untouched.
func TestPassThrough(t *testing.T) {
	// Header names are lower case because the emulator lower-cases them, as
	// Envoy does, and the test compares what the host holds afterwards.
	tests := []struct {
		name                 string
		reqHeaders, respHdrs [][2]string
		reqBody, respBody    []byte // nil: the headers end the stream
	}{
		{
			name: "POST to an ungoverned path",
			reqHeaders: [][2]string{
				{":method", "POST"}, {":path", "/orders"}, {":authority", "example.com"},
				{"content-type", "application/json"}, {"idempotency-key", `"k1"`},
			},
			reqBody:  []byte(`{"amount":100,"currency":"EUR"}`),
			respHdrs: [][2]string{{":status", "201"}, {"content-type", "application/json"}},
			respBody: []byte(`{"id":"pay_1","amount":100}`),
		},
		{
			name:       "GET is not a governed method",
			reqHeaders: [][2]string{{":method", "GET"}, {":path", "/payments/pay_1"}, {":authority", "example.com"}},
			respHdrs:   [][2]string{{":status", "404"}},
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := newHost(t, vm, demoConfig)
				defer reset()
				if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
					t.Fatalf("StartPlugin() = %v, want OK", st)
				}

				id := host.InitializeHttpContext()
				steps := []struct {
					name string
					call func() types.Action
				}{
					{"request headers", func() types.Action { return host.CallOnRequestHeaders(id, tc.reqHeaders, tc.reqBody == nil) }},
					{"request body", func() types.Action { return host.CallOnRequestBody(id, tc.reqBody, true) }},
					{"response headers", func() types.Action { return host.CallOnResponseHeaders(id, tc.respHdrs, tc.respBody == nil) }},
					{"response body", func() types.Action { return host.CallOnResponseBody(id, tc.respBody, true) }},
				}
				for _, s := range steps {
					if (s.name == "request body" && tc.reqBody == nil) || (s.name == "response body" && tc.respBody == nil) {
						continue
					}
					if got := s.call(); got != types.ActionContinue {
						t.Errorf("%s: action = %v, want ActionContinue", s.name, got)
					}
				}
				host.CompleteHttpContext(id)

				if r := host.GetSentLocalResponse(id); r != nil {
					t.Errorf("sent local response %d %q, want none", r.StatusCode, r.Data)
				}
				if got := host.GetCurrentRequestHeaders(id); !slices.Equal(got, tc.reqHeaders) {
					t.Errorf("request headers = %q, want unchanged %q", got, tc.reqHeaders)
				}
				if got := host.GetCurrentResponseHeaders(id); !slices.Equal(got, tc.respHdrs) {
					t.Errorf("response headers = %q, want unchanged %q", got, tc.respHdrs)
				}
				if got := host.GetCurrentRequestBody(id); string(got) != string(tc.reqBody) {
					t.Errorf("request body = %q, want unchanged %q", got, tc.reqBody)
				}
				if got := host.GetCurrentResponseBody(id); string(got) != string(tc.respBody) {
					t.Errorf("response body = %q, want unchanged %q", got, tc.respBody)
				}
			})
		}
	})
}

// TestWasmVMShared: the wasm runs of successive tests get the same VM, and
// it is loaded (the module compiled) at most once for them, not per test.
func TestWasmVMShared(t *testing.T) {
	var vms []types.VMContext
	loads := -1
	for range 3 {
		vmTest(t, func(t *testing.T, vm types.VMContext) {
			if _, native := vm.(*vmContext); native {
				return
			}
			if loads < 0 {
				loads = wasmVM.loads
			}
			vms = append(vms, vm)
			_, reset := startHost(t, vm, demoConfig) // the VM still serves
			reset()
		})
	}
	if len(vms) != 3 || vms[1] != vms[0] || vms[2] != vms[0] {
		t.Fatalf("the wasm runs got %d VMs, not one shared: %v", len(vms), vms)
	}
	if wasmVM.loads != loads {
		t.Fatalf("the module was loaded %d more times for 3 tests, want 0 after the first", wasmVM.loads-loads)
	}
}
