package main

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

// stats are the filter's metrics, exported through proxy-wasm metrics
// (Envoy shows them under the wasmcustom. prefix). Defining a name twice
// returns the same metric, so every plugin context may define them.
//
// Every governed request ends in exactly one of: executions, replays
// (edge or control plane), mismatches, conflicts, indeterminate,
// fail_open, or an answer of the filter's own (400, 413, 503:
// controlplane_errors or shed_memory counts the last).
//
// Every outcome call (complete, release, abandon) that enters the queue
// (outbox.go) ends as exactly one of outcomes_delivered, outcomes_refused
// or outcomes_dropped, or is still pending (outcomes_pending). A first
// complete or release the stream sent itself and that succeeded counts in
// none of them; one the control plane refused counts in outcomes_refused.
type stats struct {
	governed            proxywasm.MetricCounter // requests a route governs and that carry a key
	executions          proxywasm.MetricCounter // governed requests that acquired their key and went upstream
	replaysEdge         proxywasm.MetricCounter // stored responses replayed from the edge cache, without a callout
	replaysControlPlane proxywasm.MetricCounter // stored responses the control plane's reserve returned
	mismatches          proxywasm.MetricCounter // 422: key reused with another payload (edge or control plane)
	conflicts           proxywasm.MetricCounter // 409: original still in progress, or a rejected duplicate
	indeterminate       proxywasm.MetricCounter // 409: the original's outcome is unknown (reserve answered indeterminate)
	waits               proxywasm.MetricCounter // duplicates held by on_in_progress wait
	polls               proxywasm.MetricCounter // reserves sent for them: one in flight per waiting record (polls.go)
	bypassNoRoute       proxywasm.MetricCounter // requests no route governs: passed through untouched
	bypassNoKey         proxywasm.MetricCounter // requests without a key on a route where it is optional
	routeUnknown        proxywasm.MetricCounter // requests whose Envoy route metadata names no policy route (envoyroute.go)
	failOpen            proxywasm.MetricCounter // forwarded ungoverned because the control plane failed
	controlPlaneError   proxywasm.MetricCounter // callouts that failed, timed out or got a non-200 (edge epoch polls aside)
	edgeEpochErrors     proxywasm.MetricCounter // edge epoch polls that failed (epoch.go): one a second per VM while the control plane is down

	outcomesQueued    proxywasm.MetricCounter // outcome calls that entered the queue
	outcomesRetried   proxywasm.MetricCounter // queued attempts after the call's first
	outcomesDelivered proxywasm.MetricCounter // queued calls the control plane acknowledged
	outcomesRefused   proxywasm.MetricCounter // calls the control plane refused for good (a stale token, a 4xx)
	outcomesDropped   proxywasm.MetricCounter // queued calls given up: the queue was full, or the record's TTL passed
	outcomesPending   proxywasm.MetricGauge   // calls in the queue now (set by each VM: the last to report)
	// heldBytes is what governed streams hold now (held.go; set by each
	// VM: the last to report); shedMemory counts the 503s of requests
	// max_held_bytes had no room for.
	heldBytes  proxywasm.MetricGauge
	shedMemory proxywasm.MetricCounter
	// controlPlaneLatency records every callout's time to its answer (or
	// timeout), in milliseconds.
	controlPlaneLatency proxywasm.MetricHistogram
	// answered counts the filter's own answers (problem+json) by status,
	// idemgate.answered_<status>: what a dashboard shows of 400, 401,
	// 409, 413, 415, 422, 500 and 503 without parsing access logs.
	answered map[int]proxywasm.MetricCounter
}

// answer counts one answer of the filter with status.
func (s *stats) answer(status int) {
	if m, ok := s.answered[status]; ok {
		m.Increment(1)
	}
}

func defineStats() stats {
	// One literal per name: envoy/observability's test reads the names
	// from this source to check the dashboard. The statuses are those of
	// the filter's own answers (responses.go).
	answered := map[int]proxywasm.MetricCounter{
		400: proxywasm.DefineCounterMetric("idemgate.answered_400"),
		401: proxywasm.DefineCounterMetric("idemgate.answered_401"),
		409: proxywasm.DefineCounterMetric("idemgate.answered_409"),
		413: proxywasm.DefineCounterMetric("idemgate.answered_413"),
		415: proxywasm.DefineCounterMetric("idemgate.answered_415"),
		422: proxywasm.DefineCounterMetric("idemgate.answered_422"),
		500: proxywasm.DefineCounterMetric("idemgate.answered_500"),
		503: proxywasm.DefineCounterMetric("idemgate.answered_503"),
	}
	return stats{
		answered:            answered,
		governed:            proxywasm.DefineCounterMetric("idemgate.requests_governed"),
		executions:          proxywasm.DefineCounterMetric("idemgate.executions"),
		replaysEdge:         proxywasm.DefineCounterMetric("idemgate.replays_edge"),
		replaysControlPlane: proxywasm.DefineCounterMetric("idemgate.replays_controlplane"),
		mismatches:          proxywasm.DefineCounterMetric("idemgate.mismatches"),
		conflicts:           proxywasm.DefineCounterMetric("idemgate.conflicts"),
		indeterminate:       proxywasm.DefineCounterMetric("idemgate.indeterminate"),
		waits:               proxywasm.DefineCounterMetric("idemgate.waits"),
		polls:               proxywasm.DefineCounterMetric("idemgate.polls"),
		bypassNoRoute:       proxywasm.DefineCounterMetric("idemgate.bypassed_no_route"),
		bypassNoKey:         proxywasm.DefineCounterMetric("idemgate.bypassed_no_key"),
		routeUnknown:        proxywasm.DefineCounterMetric("idemgate.route_unknown"),
		failOpen:            proxywasm.DefineCounterMetric("idemgate.fail_open"),
		controlPlaneError:   proxywasm.DefineCounterMetric("idemgate.controlplane_errors"),
		edgeEpochErrors:     proxywasm.DefineCounterMetric("idemgate.edge_epoch_errors"),
		controlPlaneLatency: proxywasm.DefineHistogramMetric("idemgate.controlplane_latency_ms"),
		outcomesQueued:      proxywasm.DefineCounterMetric("idemgate.outcomes_queued"),
		outcomesRetried:     proxywasm.DefineCounterMetric("idemgate.outcomes_retried"),
		outcomesDelivered:   proxywasm.DefineCounterMetric("idemgate.outcomes_delivered"),
		outcomesRefused:     proxywasm.DefineCounterMetric("idemgate.outcomes_refused"),
		outcomesDropped:     proxywasm.DefineCounterMetric("idemgate.outcomes_dropped"),
		outcomesPending:     proxywasm.DefineGaugeMetric("idemgate.outcomes_pending"),
		heldBytes:           proxywasm.DefineGaugeMetric("idemgate.held_bytes"),
		shedMemory:          proxywasm.DefineCounterMetric("idemgate.shed_memory"),
	}
}
