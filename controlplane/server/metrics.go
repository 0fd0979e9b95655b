package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/idemgate/idemgate/controlplane/store"
)

// Operation names: the "op" label of the metrics and the op of log lines.
const (
	opReserve      = "reserve"
	opComplete     = "complete"
	opRelease      = "release"
	opAbandon      = "abandon"
	opAdminGet     = "admin_get"
	opAdminDelete  = "admin_delete"
	opAdminRelease = "admin_release"
	opAdminList    = "admin_list"
	opAdminRecon   = "admin_reconcile"
	opEdgeEpoch    = "edge_epoch"
	opReady        = "ready"
)

// Outcomes beyond the api ones: the "outcome" label.
const (
	outAcquired      = "acquired"
	outInProgress    = "in_progress"
	outMismatch      = "mismatch"
	outCompleted     = "completed"
	outReleased      = "released"
	outIndeterminate = "indeterminate"
	outFenced        = "fenced"
	outListed        = "listed"
	outEpochFailed   = "epoch_not_bumped"
	outStale         = "stale"
	outFound         = "found"
	outNotFound      = "not_found"
	outDeleted       = "deleted"
	outNoop          = "noop"
	outWouldDelete   = "would_delete"
	outWouldRelease  = "would_release"
	outNotInProgress = "not_in_progress"
	outLeaseLive     = "lease_live"
	outInvalid       = "invalid"
	outTooLarge      = "too_large"
	outError         = "error"
	outCanceled      = "canceled"
	outDecryptError  = "decrypt_error"
	outShed          = "shed"
	outWouldComplete = "would_complete"
	outNotReconcile  = "not_reconcilable"
	outLookupFailed  = "lookup_failed"
)

// Reasons a stored response cannot be read: the "reason" label of
// idemgate_stored_response_unreadable_total.
const (
	reasonUndecryptable = "undecryptable" // the sealed body does not open with the configured keys
	reasonCorrupt       = "corrupt"       // the stored headers do not decode
)

// knownOutcomes are created at zero so that dashboards and alerts see every
// series from the start, not only after the first event.
var knownOutcomes = map[string][]string{
	opReserve:      {outAcquired, outInProgress, outIndeterminate, outFenced, outMismatch, outCompleted, outInvalid, outError, outShed},
	opComplete:     {outCompleted, outStale, outInvalid, outError, outShed},
	opRelease:      {outReleased, outFenced, outStale, outInvalid, outError, outShed},
	opAbandon:      {outIndeterminate, outStale, outInvalid, outError, outShed},
	opAdminGet:     {outFound, outNotFound, outInvalid, outError, outDecryptError, outShed},
	opAdminDelete:  {outDeleted, outNoop, outWouldDelete, outLeaseLive, outInvalid, outError, outEpochFailed, outShed},
	opAdminRelease: {outReleased, outNoop, outWouldRelease, outNotInProgress, outLeaseLive, outInvalid, outError, outEpochFailed, outShed},
	opAdminList:    {outListed, outInvalid, outError, outShed},
	opAdminRecon:   {outCompleted, outReleased, outWouldComplete, outWouldRelease, outNoop, outLeaseLive, outNotReconcile, outLookupFailed, outInvalid, outError, outShed},
	opEdgeEpoch:    {outFound, outError, outShed},
}

// shedRoutes are the routes admission control may shed: the series of
// idemgate_shed_total exist at zero for them.
var shedRoutes = []string{"reserve", "complete", "release", "abandon", "edge_epoch", "admin_keys", "admin_release", "admin_list", "admin_reconcile"}

type metrics struct {
	ops       *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	redisErrs *prometheus.CounterVec
	requests  *prometheus.CounterVec
	// unreadable counts stored responses that could not be read, by op
	// and reason; on reserve they were answered completed, body omitted.
	unreadable *prometheus.CounterVec
	// epochBumps counts edge-epoch increments by result (ok, failed);
	// epoch is the last value this instance saw (bumped or served).
	epochBumps *prometheus.CounterVec
	epoch      prometheus.Gauge
	// leasesEnded counts records a reserve found with their lease ended on
	// a route that locks, and made indeterminate: keys that burned.
	leasesEnded prometheus.Counter
	// shed counts requests answered 503 overloaded by admission control,
	// by route; inFlight reads the store operations holding a slot.
	shed     *prometheus.CounterVec
	inFlight prometheus.GaugeFunc
}

// latencyBuckets span a loopback Redis round trip (~100 µs) to the
// operation timeout.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func newMetrics(reg prometheus.Registerer, inFlight func() int64) *metrics {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_operations_total",
			Help: "Operations of the control plane by op (reserve, complete, release, abandon, edge_epoch, admin_*) and outcome.",
		}, []string{"op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idemgate_operation_duration_seconds",
			Help:    "Time to answer an operation, from the request's arrival to its answer, by op.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		redisErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_redis_errors_total",
			Help: "Calls to Redis that failed (network, timeout, server error), by op; each answered 503 (or readyz not ready).",
		}, []string{"op"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_http_requests_total",
			Help: "HTTP requests by route (the API path, or \"other\") and status code.",
		}, []string{"route", "code"}),
		unreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_stored_response_unreadable_total",
			Help: "Completed records whose stored response could not be read (reason: undecryptable, corrupt), by op; a reserve answers them completed with the status and body_omitted.",
		}, []string{"op", "reason"}),
		epochBumps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_edge_epoch_bumps_total",
			Help: "Edge-epoch increments after an admin delete or release, by result (ok, failed); a failed one was answered 503: edges were not told.",
		}, []string{"result"}),
		leasesEnded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idemgate_leases_ended_total",
			Help: "In-progress records whose lease ended without word from the holder on a route that locks, made indeterminate by the reserve that found them: keys that burned.",
		}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idemgate_edge_epoch",
			Help: "The edge epoch this instance last bumped or served.",
		}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_shed_total",
			Help: "Requests answered 503 overloaded by admission control (operations in flight at --max-inflight; reserves, edge-epoch and admin at three quarters of it), by route; none reached the store.",
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idemgate_inflight_operations",
			Help: "Store operations in flight, each holding a slot of --max-inflight.",
		}, func() float64 { return float64(inFlight()) }),
	}
	reg.MustRegister(m.ops, m.duration, m.redisErrs, m.requests, m.unreadable, m.epochBumps, m.epoch, m.leasesEnded, m.shed, m.inFlight)
	for _, r := range shedRoutes {
		m.shed.WithLabelValues(r)
	}
	m.epochBumps.WithLabelValues("ok")
	m.epochBumps.WithLabelValues("failed")
	for op, outs := range knownOutcomes {
		for _, out := range outs {
			m.ops.WithLabelValues(op, out)
		}
		m.duration.WithLabelValues(op)
		m.redisErrs.WithLabelValues(op)
	}
	m.redisErrs.WithLabelValues(opReady)
	for _, op := range []string{opReserve, opAdminGet} {
		for _, reason := range []string{reasonUndecryptable, reasonCorrupt} {
			m.unreadable.WithLabelValues(op, reason)
		}
	}
	return m
}

// NewRegistry returns a private registry with the Go runtime and process
// collectors, for Options.Registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (m *metrics) observe(op, outcome string, d time.Duration) {
	m.ops.WithLabelValues(op, outcome).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
}

// RedisMetrics count what the store sees of Redis: failovers (the topology
// watcher), WAIT shortfalls, the store's retries, the durable round trips.
// Register them on the server's registry and give Observer() to
// store.Options before the store is built.
type RedisMetrics struct {
	failovers  prometheus.Counter
	shortfalls *prometheus.CounterVec
	retries    *prometheus.CounterVec
	wait       prometheus.Histogram
}

// NewRedisMetrics registers the Redis metrics on reg.
func NewRedisMetrics(reg prometheus.Registerer) *RedisMetrics {
	m := &RedisMetrics{
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idemgate_redis_failovers_total",
			Help: "Changes of Redis master (of the set of masters on a Cluster) seen by the topology watcher, which looks every second.",
		}),
		shortfalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_redis_wait_shortfalls_total",
			Help: "Durable mode: state changes fewer replicas acknowledged (WAIT/WAITAOF) than --durable-replicas within --durable-timeout, by store op; each answered 503.",
		}, []string{"op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_redis_retries_total",
			Help: "Operations sent to Redis again (after READONLY, LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, a refused or reset connection, a timeout, or a Cluster MOVED/ASK), by store op.",
		}, []string{"op"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idemgate_redis_durable_wait_seconds",
			Help:    "Durable mode: round trip of a state change's script and its WAIT (WAITAOF), acknowledged or not.",
			Buckets: latencyBuckets,
		}),
	}
	reg.MustRegister(m.failovers, m.shortfalls, m.retries, m.wait)
	for _, op := range store.OpNames {
		m.shortfalls.WithLabelValues(op)
		m.retries.WithLabelValues(op)
	}
	return m
}

// Observer is the store.Observer that feeds these metrics.
func (m *RedisMetrics) Observer() store.Observer {
	return store.Observer{
		Retry:         func(op, _ string) { m.retries.WithLabelValues(op).Inc() },
		WaitShortfall: func(op string, _, _ int) { m.shortfalls.WithLabelValues(op).Inc() },
		Wait:          func(_ string, d time.Duration) { m.wait.Observe(d.Seconds()) },
		Failover:      func(_, _ string) { m.failovers.Inc() },
	}
}
