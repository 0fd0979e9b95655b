package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Every call to the control plane goes through callControlPlane: a
// stream's reserve and the first attempt of its complete, release or
// abandon, the shared polls' reserve, the outcome queue's attempts and
// the edge-epoch poll. So every call carries the same headers, timeout
// and cluster, and records its latency.

// calloutBuf is where callControlPlane has a call's body encoded: a VM
// runs its callbacks one at a time, and the host copies the body during
// the dispatch. Only callControlPlane touches it.
var calloutBuf []byte

const maxCalloutBuf = 64 << 10

// bearer is the authorization header of the last token used: the same
// on every call, not worth a concatenation each time.
var bearer struct{ token, value string }

// bearerOf returns "Bearer " and token.
func bearerOf(token string) string {
	if bearer.value == "" || bearer.token != token {
		bearer.token, bearer.value = token, "Bearer "+token
	}
	return bearer.value
}

// callControlPlane sends method path to the control plane through
// Envoy's cluster, and calls done with the answer's status and body:
// status 0 means no answer (the callout timed out or the connection
// failed; Envoy then calls back with no headers). done is not called when
// the dispatch itself fails: the error is returned instead.
//
// body appends the call's JSON to the buffer it is given and returns it
// (one of the hand encoders of wire.go, or a queued call's bytes); nil
// sends no body. The callout belongs to the effective context: the
// stream's in its callbacks, the plugin's in its tick.
func (p *pluginContext) callControlPlane(method, path string, body func(dst []byte) []byte, done func(status int, body []byte)) error {
	cp := &p.config.ControlPlane
	// On the stack: the SDK serializes the headers during the dispatch.
	var hs [5][2]string
	headers := append(hs[:0],
		[2]string{":method", method},
		[2]string{":path", path},
		[2]string{":authority", cp.Authority},
	)
	var b []byte
	if body != nil {
		b = body(calloutBuf[:0])
		// Kept for the next call, unless it grew beyond what is worth
		// keeping.
		if cap(b) <= maxCalloutBuf {
			calloutBuf = b[:0]
		}
		headers = append(headers, [2]string{"content-type", "application/json"})
	}
	if !cp.InsecureNoAuth {
		headers = append(headers, [2]string{"authorization", bearerOf(cp.Token)})
	}
	latency := p.stats.controlPlaneLatency
	start := time.Now()
	_, err := proxywasm.DispatchHttpCall(cp.Cluster, headers, b, nil, uint32(cp.Timeout.Milliseconds()), func(numHeaders, bodySize, _ int) {
		latency.Record(uint64(time.Since(start).Milliseconds()))
		done(readCalloutResponse(numHeaders, bodySize))
	})
	if err != nil {
		return fmt.Errorf("dispatch %s %s to cluster %q: %w", method, path, cp.Cluster, err)
	}
	return nil
}

// readCalloutResponse returns the :status and body of the callout being
// answered; 0 when there is no status.
func readCalloutResponse(numHeaders, bodySize int) (int, []byte) {
	if numHeaders == 0 {
		return 0, nil
	}
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		return 0, nil
	}
	status := 0
	for _, kv := range headers {
		if kv[0] == ":status" {
			status, _ = strconv.Atoi(kv[1])
			break
		}
	}
	var body []byte
	if bodySize > 0 {
		if body, err = proxywasm.GetHttpCallResponseBody(0, bodySize); err != nil {
			return status, nil
		}
	}
	return status, body
}
