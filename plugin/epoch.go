package main

import (
	"encoding/json"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// The edge epoch (issue 10, case 10). An operator who deletes or releases
// a record changes the control plane's edge epoch; each plugin context
// polls it (GET api.PathEdgeEpoch) from its tick every api.EdgeEpochPoll,
// one small callout per second per VM whatever the traffic. An edge entry
// carries the epoch this VM knew when it dispatched the reserve whose
// answer (or whose complete) filled it, and a lookup replays it only
// while the VM still knows that epoch: so an operator's change reaches
// every edge cache within EdgeEpochPoll plus the callout timeout (and a
// tick), while the control plane answers.
//
// Before its first successful poll a VM neither replays from nor fills
// the edge cache (it cannot tell which entries predate a change): every
// governed request then asks the control plane. The first poll goes out
// from OnPluginStart (or, if the host refuses a callout then, at the
// first tick, a few milliseconds later); if it fails, the next comes
// EdgeEpochPoll later, as every poll. A failed poll keeps the last epoch: edge
// replays go on while the control plane is down (DESIGN.md's demo
// contract), and an operator's change made meanwhile (say through a
// control plane this VM cannot reach) is then seen only once a poll
// succeeds again, or when the entry expires: edge_cache_ttl bounds that.

// epochState is a plugin context's view of the edge epoch.
type epochState struct {
	on       bool  // some route uses the edge cache: poll
	known    bool  // a poll has succeeded
	epoch    int64 // the last epoch polled
	inFlight bool
	next     int64 // now() of the next poll
	failing  bool  // the last poll failed (logged once per outage)
}

// edgeEpoch returns the epoch an edge entry must carry to be replayed
// now, and whether the edge cache may be used at all.
func (p *pluginContext) edgeEpoch() (int64, bool) {
	return p.epoch.epoch, p.epoch.known
}

// pollEpoch sends the edge-epoch poll when it is due. It runs in the
// plugin context (OnTick), which hears the answer.
func (p *pluginContext) pollEpoch(t int64) {
	e := &p.epoch
	if !e.on || e.inFlight || t < e.next {
		return
	}
	e.inFlight = true
	if err := p.callControlPlane("GET", api.PathEdgeEpoch, nil, p.onEpoch); err != nil {
		p.epochFailed(err.Error())
	}
}

// firstEpochPoll sends the first poll from OnPluginStart, so that the
// edge cache serves within a round trip of the start. A host that
// refuses a callout there (Envoy's clusters may not be ready) is no
// failure: the first tick polls.
func (p *pluginContext) firstEpochPoll() {
	e := &p.epoch
	if !e.on {
		return
	}
	e.inFlight = true
	if p.callControlPlane("GET", api.PathEdgeEpoch, nil, p.onEpoch) != nil {
		e.inFlight = false
	}
}

// onEpoch takes the poll's answer.
func (p *pluginContext) onEpoch(status int, body []byte) {
	if status != 200 {
		p.epochFailed(answerReason(status))
		return
	}
	var ee api.EdgeEpoch
	if err := json.Unmarshal(body, &ee); err != nil {
		p.epochFailed("answer unreadable: " + err.Error())
		return
	}
	e := &p.epoch
	if e.failing {
		proxywasm.LogInfof("idempotency filter: edge epoch poll answers again")
	}
	e.inFlight, e.failing = false, false
	e.next = now() + api.EdgeEpochPoll.Nanoseconds()
	if e.known && e.epoch != ee.Epoch {
		proxywasm.LogInfof("idempotency filter: edge epoch %d -> %d: edge entries filled before are no longer replayed", e.epoch, ee.Epoch)
	}
	e.epoch, e.known = ee.Epoch, true
}

// epochFailed keeps the last epoch and polls again after EdgeEpochPoll.
func (p *pluginContext) epochFailed(reason string) {
	e := &p.epoch
	p.stats.edgeEpochErrors.Increment(1)
	if !e.failing {
		proxywasm.LogWarnf("idempotency filter: edge epoch poll %s; keeping epoch %d (known: %v) until a poll succeeds", reason, e.epoch, e.known)
	}
	e.inFlight, e.failing = false, true
	e.next = now() + api.EdgeEpochPoll.Nanoseconds()
}

// updateTick sets the tick period to what the plugin context needs now:
// waitTickMS while streams wait, calls are queued or the first edge epoch
// poll is still to be sent (so that the edge cache serves within
// milliseconds of the start, not a second), the edge epoch's period
// otherwise (when a route uses the edge cache), else none. It calls the
// host only when the period changes.
func (p *pluginContext) updateTick() {
	var ms uint32
	switch {
	case p.waiting > 0 || len(p.outbox.calls) > 0:
		ms = waitTickMS
	case p.epoch.on && !p.epoch.known && !p.epoch.failing && !p.epoch.inFlight:
		ms = waitTickMS
	case p.epoch.on:
		ms = uint32(api.EdgeEpochPoll / time.Millisecond)
	}
	if ms == p.tickMS {
		return
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(ms); err != nil {
		proxywasm.LogErrorf("idempotency filter: set tick period %d ms: %v", ms, err)
		return
	}
	p.tickMS = ms
}
