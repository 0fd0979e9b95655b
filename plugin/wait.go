package main

import (
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// on_in_progress wait. proxy-wasm has no timer per stream, so the plugin
// context keeps the held duplicates and, while any waits, ticks every
// waitTickMS: a waiter whose next poll is due gets its reserve sent again
// from the tick, so that the answer comes to the plugin context (and is
// heard even if the client has left: a poll that acquired the key for a
// stream that is gone is released at once). The poll's answer is handled
// like the first one: acquired (the original released the key) forwards,
// completed replays, indeterminate answers its 409 at once, in_progress
// waits again until wait_timeout, then 409. A poll that fails keeps the
// duplicate waiting, whatever failure_mode says (reserveFailed).

const (
	waitTickMS = 10
	// maxWaiters bounds the streams one VM holds; beyond, 409 at once.
	maxWaiters = 1024
)

// pollInterval is the time between polls of a waiting duplicate:
// wait_timeout/50 within [10 ms, 100 ms], so at most about 50 polls.
func pollInterval(waitTimeout time.Duration) time.Duration {
	return min(max(waitTimeout/50, 10*time.Millisecond), 100*time.Millisecond)
}

// addWaiter keeps c for the tick; false when maxWaiters already wait.
func (p *pluginContext) addWaiter(c *httpContext) bool {
	if p.waiters == nil {
		p.waiters = map[uint32]*httpContext{}
	}
	if len(p.waiters) >= maxWaiters {
		return false
	}
	p.waiters[c.id] = c
	p.updateTick()
	return true
}

// OnTick implements types.PluginContext: polls reserve for every waiter
// whose time has come (dropping those whose stream ended), sends the
// queued outcome calls that are due, and polls the edge epoch. Every
// callout it dispatches belongs to the plugin context, so its answer is
// heard even when the stream that wanted it has ended.
func (p *pluginContext) OnTick() {
	if p.config == nil {
		return
	}
	t := now()
	for id, c := range p.waiters {
		if c.phase != phaseWaiting {
			delete(p.waiters, id)
			continue
		}
		if t < c.nextPoll {
			continue
		}
		delete(p.waiters, id)
		if err := c.dispatchReserve(); err != nil {
			// Answering acts on the stream: make it the effective one.
			if proxywasm.SetEffectiveContext(id) != nil {
				c.phase = phaseGone
				continue
			}
			c.reserveFailed(err.Error(), false)     // never sent
			_ = proxywasm.SetEffectiveContext(p.id) // back to the plugin's own context
		}
	}
	p.serveOutbox(t)
	p.pollEpoch(t)
	p.updateTick()
}
