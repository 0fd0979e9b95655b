package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Effects: the "effect" label of idemgate_reconcile_applied_total.
const (
	appliedCompleted = "completed"
	appliedReleased  = "released"
	// appliedStale: the answer found the record changed since the claim
	// (completed or released by its holder or an operator, or taken over)
	// and left it alone.
	appliedStale = "stale"
)

// lookupBuckets span a loopback answer (~1 ms) to the lookup timeout.
var lookupBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metrics count the reconciler's lookups and what they changed.
type Metrics struct {
	asked   *prometheus.CounterVec
	answers *prometheus.CounterVec
	applied *prometheus.CounterVec
	lookup  prometheus.Histogram
}

// NewMetrics registers the reconcile metrics on reg, with the series of
// every target in targets at zero.
func NewMetrics(reg prometheus.Registerer, targets []string) *Metrics {
	m := &Metrics{
		asked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_reconcile_asked_total",
			Help: "Lookups sent to an upstream about an indeterminate record, by target (the loop's and the admin endpoint's).",
		}, []string{"target"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_reconcile_answers_total",
			Help: "Lookup answers by target and answer: executed, not_executed, unknown, or failed (no trustworthy answer: transport error, timeout, a status other than 200, a malformed answer; the record stays indeterminate).",
		}, []string{"target", "answer"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idemgate_reconcile_applied_total",
			Help: "Answers applied to records, by effect: completed (executed: the upstream's response is replayed), released (not executed: a retry executes), stale (the record had changed since it was claimed and was left alone).",
		}, []string{"effect"}),
		lookup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idemgate_reconcile_lookup_seconds",
			Help:    "Duration of a lookup, from the request to the decoded answer or the failure.",
			Buckets: lookupBuckets,
		}),
	}
	reg.MustRegister(m.asked, m.answers, m.applied, m.lookup)
	for _, t := range targets {
		m.asked.WithLabelValues(t)
		for _, a := range []string{api.ReconcileExecuted, api.ReconcileNotExecuted, api.ReconcileUnknown, api.ReconcileFailed} {
			m.answers.WithLabelValues(t, a)
		}
	}
	for _, e := range []string{appliedCompleted, appliedReleased, appliedStale} {
		m.applied.WithLabelValues(e)
	}
	return m
}
