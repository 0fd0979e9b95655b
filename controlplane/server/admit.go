package server

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Admission control. Every request that calls the store takes a slot of
// the gate first, right before its first store call (after decoding and
// validation, so a slow upload holds no slot); without a free slot it is
// answered 503 overloaded at once, never queued: latency stays bounded
// under overload and the caller learns it in microseconds, not after
// --op-timeout. /healthz, /readyz and /metrics take no slot.
//
// Two classes share the slots. Outcome calls (complete, release, abandon)
// may take any of the maxInFlight slots; everything else (reserve,
// edge-epoch, the admin endpoints) only while fewer than reserveLimit are
// taken. So a flood of reserves always leaves maxInFlight-reserveLimit
// slots to outcomes, and as load rises reserves are shed first:
//   - an outcome call settles work that already ran upstream; shedding it
//     keeps its key in progress (its waiters keep polling, more reserves)
//     and the filter's outbox sends it again anyway;
//   - a shed reserve has started nothing: no upstream work is lost, and the
//     filter answers its client per the route's failure mode.

// DefaultMaxInFlight is Options.MaxInFlight when zero: measured with
// BenchmarkControlPlane (README, "Admission control").
const DefaultMaxInFlight = 64

// admitClass says which limit a request's store operation is held to.
type admitClass int

const (
	admitLow     admitClass = iota // reserve, edge-epoch, admin: up to reserveLimit
	admitOutcome                   // complete, release, abandon: up to maxInFlight
)

// reserveLimitOf is the share of n slots the low class may take: three
// quarters, at least one. n ≥ 2 leaves outcomes at least one slot of their
// own.
func reserveLimitOf(n int) int { return max(1, n*3/4) }

// gate counts store operations in flight. The zero limit means no bound.
type gate struct {
	limit, low int64 // maxInFlight, reserveLimit; 0: unbounded
	n          atomic.Int64
}

func newGate(n int) *gate {
	if n <= 0 {
		return &gate{}
	}
	return &gate{limit: int64(n), low: int64(reserveLimitOf(n))}
}

// enter takes a slot without waiting; false when the class's limit is
// reached. A compare-and-swap, so that the count never exceeds the limit,
// not even for an instant.
func (g *gate) enter(c admitClass) bool {
	if g.limit == 0 {
		g.n.Add(1)
		return true
	}
	lim := g.low
	if c == admitOutcome {
		lim = g.limit
	}
	for {
		cur := g.n.Load()
		if cur >= lim {
			return false
		}
		if g.n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

func (g *gate) leave() { g.n.Add(-1) }

// inFlight is the number of store operations holding a slot.
func (g *gate) inFlight() int64 { return g.n.Load() }

// shedLogEvery bounds the WARN lines of shedding: one per interval with a
// count, not one per request (which under overload would add load).
const shedLogEvery = time.Second

// admit takes a slot for the request's store operation. When none is free
// it answers 503 overloaded with Retry-After (nothing reached the store),
// counts it and returns false; else the caller must call s.gate.leave()
// when its store calls are done.
func (s *Server) admit(w http.ResponseWriter, ri *reqInfo, c admitClass) bool {
	if s.gate.enter(c) {
		return true
	}
	ri.outcome = outShed
	ri.quiet = true // the per-request line at DEBUG; noteShed warns once a second
	s.m.shed.WithLabelValues(ri.route).Inc()
	s.noteShed(ri.route)
	writeProblem(w, &problem{http.StatusServiceUnavailable, probOverloaded, "Overloaded",
		"the control plane is at its bound of operations in flight (--max-inflight); nothing was done: retry later"})
	return false
}

// noteShed logs at WARN at most once per shedLogEvery, with the number of
// requests shed since the last line.
func (s *Server) noteShed(route string) {
	s.shedSince.Add(1)
	now := time.Now().UnixNano()
	last := s.shedLogged.Load()
	if now-last < int64(shedLogEvery) || !s.shedLogged.CompareAndSwap(last, now) {
		return
	}
	n := s.shedSince.Swap(0)
	s.log.Warn("shedding load: operations in flight at --max-inflight; answering 503 overloaded",
		"route", route, "shed", n, "in_flight", s.gate.inFlight(),
		"max_inflight", s.gate.limit, "reserve_limit", s.gate.low)
}
