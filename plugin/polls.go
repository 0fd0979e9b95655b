package main

import (
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// One poll per waiting record per VM (issue 12). Duplicates held by
// on_in_progress wait that would send the same reserve (same route,
// scope, key and fingerprint) form a group; the group polls, one reserve
// in flight at a time, first firstPoll after it formed, then twice as
// late each time up to the route's pollInterval, and its answer goes to
// every member:
//
//   - completed: every member replays (the edge cache is filled once);
//   - mismatch, indeterminate: every member gets that answer;
//   - acquired: exactly one member, the oldest still waiting, takes the
//     token and goes upstream; the others wait on (their next poll finds
//     it in progress). With none left, the key is released by the token;
//   - in_progress: every member waits on;
//   - no usable answer: the poll's holder is released if the reserve may
//     have landed, and every member waits on (reserveFailed's rule: once
//     in progress was heard, the failure mode does not apply).
//
// Each member still ends at its own wait_timeout with the 409. Grouping
// by fingerprint and scope is what keeps the answer its own: a member
// only ever gets the answer to the reserve it would have sent itself.

// firstPoll is when a new group polls first.
const firstPoll = 10 * time.Millisecond

// pollKey names a group: what its reserve carries.
type pollKey struct {
	route          *policy.Route
	scope, key, fp string
}

// pollGroup is the duplicates waiting on one record, oldest first, and
// their shared poll.
type pollGroup struct {
	key     pollKey
	members []*httpContext
	next    int64         // now() of the next poll, when none is in flight
	every   time.Duration // the wait after the next answer
	// The poll in flight: its holder, when it was sent (its record lives
	// at most its TTL from then) and the edge epoch known then.
	inFlight       bool
	holder         string
	reservedAt     int64
	edgeEpoch      int64
	edgeEpochKnown bool
}

// addWaiter puts c into the group of its record; false when maxWaiters
// already wait in this plugin context.
func (p *pluginContext) addWaiter(c *httpContext) bool {
	if p.waiting >= maxWaiters {
		return false
	}
	k := pollKey{route: c.route, scope: c.scope, key: c.key, fp: c.fp}
	g := p.polls[k]
	if g == nil {
		if p.polls == nil {
			p.polls = map[pollKey]*pollGroup{}
		}
		g = &pollGroup{key: k, every: firstPoll}
		p.schedule(g, now())
		p.polls[k] = g
	}
	g.members = append(g.members, c)
	p.waiting++
	p.updateTick()
	return true
}

// servePolls sends the polls that are due and ends the waits that are
// over; it runs in the plugin context (OnTick), so that the answers
// come back to it.
func (p *pluginContext) servePolls(t int64) {
	for k, g := range p.polls {
		p.sweep(g, t)
		if len(g.members) == 0 {
			if !g.inFlight {
				delete(p.polls, k)
			}
			continue
		}
		if g.inFlight || t < g.next {
			continue
		}
		if err := p.dispatchPoll(g, t); err != nil {
			// Never sent: nothing to release; the members wait on.
			p.stats.controlPlaneError.Increment(1)
			proxywasm.LogWarnf("idempotency filter: poll for %d waiting request(s): %v; waiting on", len(g.members), err)
			p.schedule(g, t)
		}
	}
}

// dispatchPoll sends the group's reserve under a new holder id.
func (p *pluginContext) dispatchPoll(g *pollGroup, t int64) error {
	g.holder = newHolder()
	req := reserveRequest(g.key.route, g.key.scope, g.key.key, g.key.fp, g.holder)
	g.reservedAt = t
	g.edgeEpoch, g.edgeEpochKnown = p.edgeEpoch()
	err := p.callControlPlane("POST", api.PathReserve, func(b []byte) []byte { return appendReserve(b, &req) },
		func(status int, body []byte) { p.pollAnswered(g, status, body) })
	if err == nil {
		g.inFlight = true
		p.stats.polls.Increment(1)
	}
	return err
}

// schedule sets the group's next poll after an answer (or a failed
// dispatch) at t: the interval doubles up to the route's ceiling.
func (p *pluginContext) schedule(g *pollGroup, t int64) {
	g.next = t + g.every.Nanoseconds()
	g.every = min(2*g.every, pollInterval(g.key.route.WaitTimeout))
}

// sweep drops the members whose stream ended and answers the 409 to
// those whose wait_timeout has passed. It leaves the plugin's own
// context the effective one: a callout dispatched while a stream's is
// would be that stream's, and its answer lost when the stream ends.
func (p *pluginContext) sweep(g *pollGroup, t int64) {
	kept := g.members[:0]
	for _, c := range g.members {
		switch {
		case c.phase != phaseWaiting:
		case t >= c.waitUntil:
			if p.onStream(c) {
				c.inProgress()
				_ = proxywasm.SetEffectiveContext(p.id)
			}
		default:
			kept = append(kept, c)
			continue
		}
		p.waiting--
	}
	clear(g.members[len(kept):])
	g.members = kept
}

// onStream makes c's stream the effective context, to answer or resume
// it; false (and c gone) when the stream has ended.
func (p *pluginContext) onStream(c *httpContext) bool {
	if proxywasm.SetEffectiveContext(c.id) != nil {
		c.phase = phaseGone
		return false
	}
	return true
}

// pollAnswered hands the answer of the group's poll to its members; it
// runs in the plugin context.
func (p *pluginContext) pollAnswered(g *pollGroup, status int, body []byte) {
	g.inFlight = false
	t := now()
	p.sweep(g, t)
	rr, reason, mayHold := readReserve(status, body)
	switch {
	case reason != "":
		p.pollFailed(g, reason, mayHold)
	case rr.Outcome == api.Acquired:
		p.handOver(g, rr.Token)
	case rr.Outcome == api.InProgress:
		for _, c := range g.members {
			c.lastLeaseMS = rr.LeaseRemainingMS
		}
	default: // completed, mismatch, indeterminate: the answer of every member
		p.answerAll(g, rr)
	}
	_ = proxywasm.SetEffectiveContext(p.id) // back to the plugin's own context
	p.schedule(g, t)
	if len(g.members) == 0 && p.polls[g.key] == g {
		delete(p.polls, g.key)
	}
	p.updateTick()
}

// pollFailed: the members wait on; a poll that may have acquired is
// released by its holder.
func (p *pluginContext) pollFailed(g *pollGroup, reason string, mayHold bool) {
	if mayHold {
		p.enqueueOutcome(api.PathRelease, appendRelease(nil, g.key.scope, g.key.key, "", g.holder), g.deadline(), 0)
	}
	p.stats.controlPlaneError.Increment(1)
	proxywasm.LogWarnf("idempotency filter: control plane failed (%s) while %d request(s) wait for a request in progress: waiting on", reason, len(g.members))
}

// handOver gives the acquired key to the oldest member still waiting,
// and to no other: it alone goes upstream. With none left, the key is
// released by its token at once.
func (p *pluginContext) handOver(g *pollGroup, token string) {
	for len(g.members) > 0 {
		c := g.members[0]
		g.members[0] = nil
		g.members = g.members[1:]
		p.waiting--
		if c.phase != phaseWaiting || !p.onStream(c) {
			continue
		}
		c.holder, c.reservedAt = g.holder, g.reservedAt
		c.edgeEpoch, c.edgeEpochKnown = g.edgeEpoch, g.edgeEpochKnown
		c.forward(token)
		return
	}
	proxywasm.LogWarnf("idempotency filter: a poll acquired a key after every request waiting for it left: releasing it")
	_ = proxywasm.SetEffectiveContext(p.id) // the release is the plugin context's call
	if p.enqueueOutcome(api.PathRelease, appendRelease(nil, g.key.scope, g.key.key, token, ""), g.deadline(), 0) {
		p.serveOutbox(now())
	}
}

// answerAll answers every member a completed, mismatch or indeterminate
// poll; a completed response fills the edge cache once, from the first
// member (its request image: every member has the fingerprint).
func (p *pluginContext) answerAll(g *pollGroup, rr api.ReserveResponse) {
	filled := false
	for _, c := range g.members {
		p.waiting--
		if !p.onStream(c) {
			continue
		}
		switch rr.Outcome {
		case api.Completed:
			if rr.Response != nil && !filled {
				filled = true
				c.edgeEpoch, c.edgeEpochKnown = g.edgeEpoch, g.edgeEpochKnown
				c.edgeFill(rr.Response, time.Duration(rr.ExpiresInMS)*time.Millisecond)
			}
			c.image = nil // held only until now
			c.replayStored(rr.Response, false)
		case api.Mismatch:
			c.mismatch()
		case api.Indeterminate:
			c.answerIndeterminate(rr.ReconcileInMS)
		}
	}
	clear(g.members)
	g.members = g.members[:0]
}

// deadline is when the record of the group's last poll ends at the
// latest: its TTL from the poll.
func (g *pollGroup) deadline() int64 {
	return g.reservedAt + g.key.route.TTL.Nanoseconds()
}
