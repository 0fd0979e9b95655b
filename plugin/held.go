package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// Held bytes (issue 12). Linear memory never shrinks, so what streams
// hold at their peak stays with the VM for its life. Each plugin context
// (one per Envoy worker and filter config) counts the bytes its governed
// streams hold — the copies of the strings a stream keeps, its request's
// fingerprint inputs until the fingerprint, a response buffered for its
// complete until that call's first answer — and refuses a new governed
// request that would take the count past the config's max_held_bytes:
// 503 + Retry-After: 1, never forwarded, counted in shed_memory. Request
// bodies are not held: the host buffers them, the guest reads one only
// for the callback that fingerprints it.

// heldBase is what a governed stream counts beyond the strings it keeps:
// its context (httpContext, the SDK's entries for it) and the short
// strings a reserve adds (fingerprint, holder, token, slot name).
const heldBase = 1024

// heldNow is what the stream holds now.
func (c *httpContext) heldNow() int {
	n := heldBase + len(c.host) + len(c.method) + len(c.target) + len(c.key) + len(c.scope) + len(c.contentType) + len(c.image)
	for _, kv := range c.fpHeaders {
		n += len(kv[0]) + len(kv[1])
	}
	if c.resp.headers != nil {
		n += c.resp.hdrSize
	}
	if c.resp.stored != nil {
		n += len(c.resp.stored.Body)
	}
	return n
}

// admit counts a new governed stream; false when it would take the
// plugin's held bytes past max_held_bytes (nothing is counted then).
func (c *httpContext) admit() bool {
	if c.plugin.held+c.heldNow() > c.plugin.config.MaxHeldBytes {
		return false
	}
	c.account()
	setGauge(c.plugin.stats.heldBytes, uint64(c.plugin.held))
	return true
}

// account brings the stream's count to what it holds now; after the
// stream is done it counts nothing. The gauge follows at the next
// admission or stream end: a host call per change would cost every
// request several.
func (c *httpContext) account() {
	if c.heldReturned {
		return
	}
	n := c.heldNow()
	c.plugin.held += n - c.held
	c.held = n
}

// returnHeld returns the stream's bytes for good: at its end, whatever the
// path that ended it.
func (c *httpContext) returnHeld() {
	if c.heldReturned {
		return
	}
	c.heldReturned = true
	if c.held == 0 {
		return // never counted: an ungoverned stream
	}
	p := c.plugin
	p.held -= c.held
	c.held = 0
	setGauge(p.stats.heldBytes, uint64(p.held))
}

// fits says whether n more bytes keep the plugin within max_held_bytes.
func (p *pluginContext) fits(n int) bool {
	return p.held+n <= p.config.MaxHeldBytes
}

// shed answers a governed request the budget has no room for.
func (c *httpContext) shed() types.Action {
	c.plugin.stats.shedMemory.Increment(1)
	return c.answer(probOverloaded, "this gateway holds as many requests as its memory budget allows; retry later", 1)
}
