//go:build !wasm

package main

import (
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// TestStats drives one request down each path and reads every metric
// back from the host.
func TestStats(t *testing.T) {
	withKey := func(k string) [][2]string { return paymentHeaders([2]string{"idempotency-key", k}) }
	// reserve sends a governed request and answers its reserve after a
	// pause, so that the latency histogram has something to record.
	reserve := func(t *testing.T, host proxytest.HostEmulator, headers [][2]string, body string, status int, v any) uint32 {
		t.Helper()
		id := host.InitializeHttpContext()
		if a := sendRequest(host, id, headers, []byte(body)); a != types.ActionPause {
			t.Fatalf("action = %v, want ActionPause", a)
		}
		time.Sleep(3 * time.Millisecond)
		answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), status, v)
		return id
	}
	pass := func(t *testing.T, host proxytest.HostEmulator, headers [][2]string) {
		t.Helper()
		id := host.InitializeHttpContext()
		if a := host.CallOnRequestHeaders(id, headers, true); a != types.ActionContinue {
			t.Fatalf("action = %v, want ActionContinue", a)
		}
		host.CompleteHttpContext(id)
	}
	stored := &api.StoredResponse{Status: 201, Body: []byte(paymentResponse)}
	tests := []struct {
		name   string
		config []string
		run    func(t *testing.T, host proxytest.HostEmulator)
		want   map[string]uint64
	}{
		{
			name:   "every outcome, fail-closed",
			config: []string{`"required": true`, `"required": false`},
			run: func(t *testing.T, host proxytest.HostEmulator) {
				pass(t, host, [][2]string{{":method", "GET"}, {":path", "/payments"}, {":authority", "api.example.com"}})
				pass(t, host, paymentHeaders())
				completeOnce(t, host, withKey(`"k1"`), paymentResponse, 200)                                                       // executed
				sendRequest(host, host.InitializeHttpContext(), withKey(`"k1"`), []byte(paymentBody))                              // edge replay
				sendRequest(host, host.InitializeHttpContext(), withKey(`"k1"`), []byte(`{"amount":1}`))                           // edge mismatch
				reserve(t, host, withKey(`"k2"`), paymentBody, 200, api.ReserveResponse{Outcome: api.Completed, Response: stored}) // replay
				reserve(t, host, withKey(`"k3"`), paymentBody, 200, api.ReserveResponse{Outcome: api.Mismatch})
				reserve(t, host, withKey(`"k4"`), paymentBody, 200, api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: 10})
				reserve(t, host, withKey(`"k5"`), paymentBody, 500, api.Problem{Title: "x", Status: 500}) // 503
				reserve(t, host, withKey(`"k6"`), paymentBody, 200, api.ReserveResponse{Outcome: api.Indeterminate, ExpiresInMS: 1000})
			},
			want: map[string]uint64{
				"idemgate.indeterminate":        1,
				"idemgate.requests_governed":    8,
				"idemgate.executions":           1,
				"idemgate.replays_edge":         1,
				"idemgate.replays_controlplane": 1,
				"idemgate.mismatches":           2,
				"idemgate.conflicts":            1,
				"idemgate.bypassed_no_route":    1,
				"idemgate.bypassed_no_key":      1,
				"idemgate.fail_open":            0,
				"idemgate.controlplane_errors":  1,
				"idemgate.answered_422":         2,
				"idemgate.answered_409":         2,
				"idemgate.answered_503":         1,
				"idemgate.answered_400":         0,
			},
		},
		{
			name:   "fail-open",
			config: []string{`"failure_mode": "closed"`, `"failure_mode": "open"`},
			run: func(t *testing.T, host proxytest.HostEmulator) {
				reserve(t, host, withKey(`"k1"`), paymentBody, 0, nil)
				reserve(t, host, withKey(`"k2"`), paymentBody, 503, nil)
			},
			want: map[string]uint64{
				"idemgate.requests_governed":   2,
				"idemgate.executions":          0,
				"idemgate.fail_open":           2,
				"idemgate.controlplane_errors": 2,
				"idemgate.answered_503":        0,
			},
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				tc.run(t, host)
				for name, want := range tc.want {
					if got := counter(t, host, name); got != want {
						t.Errorf("%s = %d, want %d", name, got, want)
					}
				}
				// The emulator keeps a histogram's last value: the last
				// reserve was answered at least 3 ms after it was sent.
				if got, err := host.GetHistogramMetric("idemgate.controlplane_latency_ms"); err != nil || got < 1 {
					t.Errorf("controlplane_latency_ms = %d, %v; want at least 1", got, err)
				}
			})
		}
	})
}
