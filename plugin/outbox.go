package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Outcomes always land (issue 10). complete, release and abandon are what
// keep a record honest: lost, a completed operation looks unfinished and,
// on routes that release on expiry, runs again. So the plugin context
// keeps a queue of them and its tick sends each until the control plane
// acknowledges it, with backoff, for at most the record's TTL (after it
// the record is gone and the call means nothing).
//
// The queue lives in the plugin context because of the SDK: it runs a
// callout's callback only while the context that dispatched it exists
// (proxyOnHttpCallResponse checks contextIDToRootID), and a stream's
// context is deleted when the stream ends. A callout dispatched from
// OnTick belongs to the plugin context, which lives as long as the
// configuration, so its answer is heard whenever the stream ended.
// (Envoy itself makes every proxy_http_call on the root context, so the
// answer does arrive: proxy-wasm-cpp-host, src/exports.cc.)
//
// The client's response waits for at most the first complete (or
// release) attempt, which the stream sends itself; if that fails, or the
// stream ends before its answer, the call is queued and the response
// flows on. Abandon and release at stream end are queued at once.
//
// What can still be lost: the queue is memory of one plugin context. A
// VM that restarts (the worker dies, Envoy replaces the module) or a
// filter configuration that is replaced, with calls queued, loses them, as does a call dropped because the queue is full or its
// record's TTL passed. That costs no second execution on a route with
// on_indeterminate lock (the default): the reservation's lease ends
// without word from the holder, and the control plane then makes the
// record indeterminate, never hands it over. Only a route that chose
// on_indeterminate release is taken over on expiry, by its own choice.
// A lost complete costs the stored response (retries get the
// indeterminate 409); a lost release costs a retry its execution until
// the lease ends.

const (
	// maxOutboxCalls and maxOutboxBytes bound the queue of one plugin
	// context: past either, a new call is dropped (and counted). A
	// complete carries a response of up to max_stored_response_bytes.
	maxOutboxCalls = 4096
	maxOutboxBytes = 4 << 20
	// maxOutboxInFlight bounds the calls one plugin context has in flight,
	// so that a queue filled during an outage does not greet the control
	// plane's return with thousands of calls at once from every VM.
	maxOutboxInFlight = 64
	// The first retry comes outboxFirstRetry after a failure, each next
	// one twice as late, at most outboxMaxBackoff.
	outboxFirstRetry = 100 * time.Millisecond
	outboxMaxBackoff = 10 * time.Second
)

// outcomeCall is one queued complete, release or abandon.
type outcomeCall struct {
	path     string
	body     []byte // its JSON, owned by the queue
	deadline int64  // now() after which it is dropped: its record's TTL
	next     int64  // now() of its next attempt
	tries    int    // attempts so far, the stream's own included
	inFlight bool
	done     bool // acknowledged, refused or dropped: removed at the next serve
}

// appendBody appends the call's body to dst: the queue keeps its own
// copy, which the call sends.
func (c *outcomeCall) appendBody(dst []byte) []byte {
	return append(dst, c.body...)
}

// outbox is the queue of one plugin context.
type outbox struct {
	calls    []*outcomeCall
	bytes    int
	inFlight int
	// due is the earliest next among the calls not in flight (0: scan at
	// the next tick), so that a tick with nothing due does not scan.
	due int64
}

// holderRand makes holder ids: ChaCha8, a cryptographically strong
// generator, seeded once per VM from crypto/rand, so that a reserve costs
// no random_get host call. On wasip1 crypto/rand is WASI random_get,
// which Envoy, the local host in e2e/ and wazero provide (wazero's
// default source, which proxytest uses, is deterministic: fine for tests
// only).
var holderRand *mathrand.ChaCha8

// newHolder returns a holder id for one reserve attempt: 128 random bits,
// base64url without padding (22 bytes of [A-Za-z0-9_-]).
func newHolder() string {
	if holderRand == nil {
		var seed [32]byte
		_, _ = rand.Read(seed[:]) // never fails since Go 1.24: it crashes instead
		holderRand = mathrand.NewChaCha8(seed)
	}
	var b [16]byte
	_, _ = holderRand.Read(b[:]) // never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// enqueueOutcome queues a call whose body the queue now owns; tries is
// how many attempts were already made (the stream's own). It returns
// false, having counted and logged the drop, when the queue is full.
func (p *pluginContext) enqueueOutcome(path string, body []byte, deadline int64, tries int) bool {
	q := &p.outbox
	st := &p.stats
	if len(q.calls) >= maxOutboxCalls || q.bytes+len(body) > maxOutboxBytes {
		st.outcomesDropped.Increment(1)
		proxywasm.LogErrorf("idempotency filter: outcome queue full (%d calls, %d bytes): %s dropped; the record's lease decides", len(q.calls), q.bytes, path)
		return false
	}
	t := now()
	q.calls = append(q.calls, &outcomeCall{path: path, body: body, deadline: deadline, next: t, tries: tries})
	q.bytes += len(body)
	q.due = t
	st.outcomesQueued.Increment(1)
	setGauge(st.outcomesPending, uint64(len(q.calls)))
	p.updateTick()
	return true
}

// serveOutbox sends every queued call that is due, drops those past
// their deadline and removes those done. It runs in the plugin context
// (OnTick), so that the answers come back to it.
func (p *pluginContext) serveOutbox(t int64) {
	q := &p.outbox
	if len(q.calls) == 0 || t < q.due {
		return
	}
	st := &p.stats
	due := int64(1<<63 - 1)
	kept := q.calls[:0]
	for _, c := range q.calls {
		if !c.done && !c.inFlight && t >= c.deadline {
			c.done = true
			st.outcomesDropped.Increment(1)
			proxywasm.LogErrorf("idempotency filter: %s not acknowledged after %d attempts within its record's TTL: dropped", c.path, c.tries)
		}
		if c.done {
			q.bytes -= len(c.body)
			continue
		}
		kept = append(kept, c)
		if c.inFlight {
			continue
		}
		if t < c.next {
			due = min(due, c.next)
			continue
		}
		if q.inFlight >= maxOutboxInFlight {
			due = min(due, c.next) // an answer resets due: sent then
			continue
		}
		if c.tries > 0 {
			st.outcomesRetried.Increment(1)
		}
		c.tries++
		c.inFlight = true
		q.inFlight++
		call := c
		if err := p.callControlPlane("POST", c.path, call.appendBody, func(status int, _ []byte) {
			p.outcomeAnswered(call, status)
		}); err != nil {
			c.inFlight = false
			q.inFlight--
			p.outcomeFailed(c, err.Error())
			due = min(due, c.next)
		}
	}
	clear(q.calls[len(kept):]) // let the removed calls go
	q.calls = kept
	q.due = due
	setGauge(st.outcomesPending, uint64(len(q.calls)))
	p.updateTick()
}

// outcomeAnswered acts on the answer to a queued call.
func (p *pluginContext) outcomeAnswered(c *outcomeCall, status int) {
	c.inFlight = false
	p.outbox.inFlight--
	st := &p.stats
	switch {
	case status == 200:
		c.done = true
		st.outcomesDelivered.Increment(1)
	case retryable(status):
		st.controlPlaneError.Increment(1)
		p.outcomeFailed(c, answerReason(status))
	default:
		c.done = true
		st.outcomesRefused.Increment(1)
		proxywasm.LogErrorf("idempotency filter: %s refused by the control plane (%d) after %d attempts: not retried", c.path, status, c.tries)
	}
	p.outbox.due = 0 // the next tick looks at the queue
}

// outcomeFailed schedules a failed call's next attempt.
func (p *pluginContext) outcomeFailed(c *outcomeCall, reason string) {
	c.next = now() + backoff(c.tries).Nanoseconds()
	proxywasm.LogWarnf("idempotency filter: %s attempt %d %s; retrying in %v", c.path, c.tries, reason, backoff(c.tries))
}

// backoff is the wait after the tries-th failed attempt.
func backoff(tries int) time.Duration {
	d := outboxFirstRetry
	for i := 1; i < tries && d < outboxMaxBackoff; i++ {
		d *= 2
	}
	return min(d, outboxMaxBackoff)
}

// retryable reports whether a call answered status may succeed later: no
// answer, a timeout or overload, a server error. Any other answer (a
// stale token's 409, a 4xx) is the control plane's final word.
func retryable(status int) bool {
	switch {
	case status == 0, status == 408, status == 425, status == 429, status >= 500:
		return true
	}
	return false
}

// answerReason says what a failed callout got, for logs.
func answerReason(status int) string {
	if status == 0 {
		return "got no answer (timeout or connection failure)"
	}
	return fmt.Sprintf("answered %d", status)
}
