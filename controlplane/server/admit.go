package server

import (
	"net/http"
	"sync"
	"time"
)

// Admission control. Every request that calls the store takes a slot of
// the gate first, right before its first store call (after decoding and
// validation, so a slow upload holds no slot). A reserve, edge-epoch or
// admin request that finds no slot is answered 503 overloaded at once,
// never queued: latency stays bounded under overload and the caller learns
// it in microseconds, not after --op-timeout. /healthz, /readyz and
// /metrics take no slot.
//
// Outcome calls (complete, release, abandon) come first:
//   - they may take any of the maxInFlight slots; the other requests only
//     while fewer than reserveLimit (three quarters) are taken;
//   - one that finds every slot taken waits, up to outcomeWait, and a slot
//     freed while outcome calls wait is handed to the oldest of them, never
//     to a reserve; past the wait it is answered 503 overloaded.
//
// Why: an outcome call settles work that already ran upstream; shedding it
// keeps its key in progress (its waiters keep polling: more reserves), and
// the filter's outbox sends it again anyway, 100 ms later at the soonest.
// A shed reserve has started nothing: no upstream work is lost, and the
// filter answers its client per the route's failure mode. Without the
// hand-over, under a flood of reserves every freed slot went to the next
// reserve before the complete of the one that freed it arrived.

// DefaultMaxInFlight is Options.MaxInFlight when zero: measured with
// BenchmarkControlPlane (README, "Admission control").
const DefaultMaxInFlight = 64

// outcomeWait bounds how long an outcome call waits for a slot: a slot
// frees every fraction of a millisecond at saturation, so a wait this long
// means outcome calls alone are over the bound.
const outcomeWait = 50 * time.Millisecond

// admitClass says which limit a request's store operation is held to.
type admitClass int

const (
	admitLow     admitClass = iota // reserve, edge-epoch, admin: up to reserveLimit, no wait
	admitOutcome                   // complete, release, abandon: up to maxInFlight, waiting up to outcomeWait
)

// reserveLimitOf is the share of n slots the low class may take: three
// quarters, at least one. n ≥ 2 leaves outcomes at least one slot of their
// own.
func reserveLimitOf(n int) int { return max(1, n*3/4) }

// gate counts store operations in flight. The zero limit means no bound
// (counted all the same, for the gauge).
type gate struct {
	limit, low int // maxInFlight, reserveLimit; 0: unbounded
	mu         sync.Mutex
	n          int             // slots taken
	waiting    []chan struct{} // outcome calls waiting, oldest first; closed: handed a slot
}

func newGate(n int) *gate {
	if n <= 0 {
		return &gate{}
	}
	return &gate{limit: n, low: reserveLimitOf(n)}
}

// tryEnter takes a slot without waiting; false when the class's limit is
// reached (or, for the low class, outcome calls are waiting).
func (g *gate) tryEnter(c admitClass) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	lim := g.low
	if c == admitOutcome {
		lim = g.limit
	}
	if g.limit != 0 && (g.n >= lim || len(g.waiting) > 0) {
		return false
	}
	g.n++
	return true
}

// enter takes a slot for class c: at once, or for an outcome call after
// waiting up to wait for one to be handed over (false when none came, or
// done closed first).
func (g *gate) enter(c admitClass, wait time.Duration, done <-chan struct{}) bool {
	if g.tryEnter(c) {
		return true
	}
	if c != admitOutcome || wait <= 0 {
		return false
	}
	g.mu.Lock()
	if g.n < g.limit && len(g.waiting) == 0 { // freed meanwhile
		g.n++
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	g.waiting = append(g.waiting, ch)
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-done:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, w := range g.waiting {
		if w == ch {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			return false
		}
	}
	return true // handed a slot as the wait ended: it is ours
}

// leave gives a slot back: to the oldest waiting outcome call, else to
// the pool.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) > 0 {
		close(g.waiting[0])
		g.waiting = g.waiting[1:]
		return
	}
	g.n--
}

// inFlight is the number of store operations holding a slot.
func (g *gate) inFlight() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return int64(g.n)
}

// shedLogEvery bounds the WARN lines of shedding: one per interval with a
// count, not one per request (which under overload would add load).
const shedLogEvery = time.Second

// admit takes a slot for the request's store operation. When none is free
// (an outcome call: none came within outcomeWait) it answers 503
// overloaded with Retry-After (nothing reached the store), counts it and
// returns false; else the caller must call s.gate.leave() when its store
// calls are done.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, ri *reqInfo, c admitClass) bool {
	if s.gate.enter(c, s.outcomeWait, r.Context().Done()) {
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
