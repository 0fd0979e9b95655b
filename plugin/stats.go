package main

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

// stats are the filter's counters, exported through proxy-wasm metrics
// (Envoy shows them under the wasmcustom. prefix). Defining a name twice
// returns the same metric, so every plugin context may define them.
type stats struct {
	governed          proxywasm.MetricCounter // requests a route governs and that carry a key
	replays           proxywasm.MetricCounter // stored responses replayed
	replaysEdge       proxywasm.MetricCounter // stored responses replayed from the edge cache, without a callout
	mismatches        proxywasm.MetricCounter // 422: key reused with another payload
	conflicts         proxywasm.MetricCounter // 409: original still in progress, or a rejected duplicate
	failOpen          proxywasm.MetricCounter // forwarded ungoverned because the control plane failed
	controlPlaneError proxywasm.MetricCounter // callouts that failed, timed out or got a non-200
}

func defineStats() stats {
	return stats{
		governed:          proxywasm.DefineCounterMetric("idemgate.requests_governed"),
		replays:           proxywasm.DefineCounterMetric("idemgate.replays"),
		replaysEdge:       proxywasm.DefineCounterMetric("idemgate.replays_edge"),
		mismatches:        proxywasm.DefineCounterMetric("idemgate.mismatches"),
		conflicts:         proxywasm.DefineCounterMetric("idemgate.conflicts"),
		failOpen:          proxywasm.DefineCounterMetric("idemgate.fail_open"),
		controlPlaneError: proxywasm.DefineCounterMetric("idemgate.controlplane_errors"),
	}
}
