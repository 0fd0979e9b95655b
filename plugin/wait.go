package main

import "time"

// on_in_progress wait. proxy-wasm has no timer per stream, so the plugin
// context keeps the held duplicates and, while any waits, ticks every
// waitTickMS. Duplicates of one record share one poll (polls.go), sent
// from the tick so that the answer comes to the plugin context (and is
// heard even if every client has left: a poll that acquired the key for
// streams that are gone is released at once). The poll's answer is
// handled like the first one: acquired (the original released the key)
// forwards one duplicate, completed replays, indeterminate answers its
// 409 at once, in_progress waits again until each duplicate's
// wait_timeout, then 409. A poll that fails keeps the duplicates
// waiting, whatever failure_mode says (reserveFailed's rule).

const (
	waitTickMS = 10
	// maxWaiters bounds the streams one plugin context holds; beyond, 409 at once.
	maxWaiters = 1024
)

// pollInterval is the ceiling of the time between polls of a waiting
// record: wait_timeout/50 within [10 ms, 100 ms].
func pollInterval(waitTimeout time.Duration) time.Duration {
	return min(max(waitTimeout/50, 10*time.Millisecond), 100*time.Millisecond)
}

// OnTick implements types.PluginContext: sends the polls that are due
// (and ends the waits that are over), the queued outcome calls that are
// due, and polls the edge epoch. Every callout it dispatches belongs to
// the plugin context, so its answer is heard even when the streams that
// wanted it have ended.
func (p *pluginContext) OnTick() {
	if p.config == nil {
		return
	}
	t := now()
	p.servePolls(t)
	p.serveOutbox(t)
	p.pollEpoch(t)
	p.updateTick()
}
