package main

import (
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// on_in_progress wait. proxy-wasm has no timer per stream, so the plugin
// context keeps the held duplicates and, while any waits, ticks every
// waitTickMS: a waiter whose next poll is due gets its reserve sent again
// (from the tick, acting on the stream through its effective context).
// The poll's answer is handled like the first one: acquired (the
// original released the key) forwards, completed replays, in_progress
// waits again until wait_timeout, then 409.

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

// addWaiter keeps c for the tick, starting the tick with the first; false
// when maxWaiters already wait.
func (p *pluginContext) addWaiter(c *httpContext) bool {
	if p.waiters == nil {
		p.waiters = map[uint32]*httpContext{}
	}
	if len(p.waiters) >= maxWaiters {
		return false
	}
	if len(p.waiters) == 0 {
		if err := proxywasm.SetTickPeriodMilliSeconds(waitTickMS); err != nil {
			proxywasm.LogErrorf("idempotency filter: set tick period: %v", err)
			return false
		}
	}
	p.waiters[c.id] = c
	return true
}

// OnTick implements types.PluginContext: polls reserve for every waiter
// whose time has come, drops those whose stream ended, and stops the
// tick when nobody waits.
func (p *pluginContext) OnTick() {
	t := now()
	polled := false
	for id, c := range p.waiters {
		if c.phase != phaseWaiting {
			delete(p.waiters, id)
			continue
		}
		if t < c.nextPoll {
			continue
		}
		delete(p.waiters, id)
		polled = true
		if err := proxywasm.SetEffectiveContext(id); err != nil {
			c.phase = phaseAnswered // the stream is gone
			continue
		}
		if err := c.dispatchReserve(); err != nil {
			c.controlPlaneFailed(err.Error(), true)
		}
	}
	if polled {
		_ = proxywasm.SetEffectiveContext(p.id) // back to the plugin's own context
	}
	if len(p.waiters) == 0 {
		if err := proxywasm.SetTickPeriodMilliSeconds(0); err != nil {
			proxywasm.LogErrorf("idempotency filter: stop tick: %v", err)
		}
	}
}
