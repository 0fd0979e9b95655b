package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// calloutBuf is where the stream's calls encode their bodies: a VM runs
// its callbacks one at a time, and the host copies the body.
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

// dispatchCallout POSTs body (JSON) to the control plane at path through
// Envoy's cluster, and calls done with the answer's status and body:
// status 0 means no answer (the callout timed out or the connection
// failed; Envoy then calls back with no headers). done is not called when
// the dispatch itself fails: the error is returned instead. done may be
// nil for a call whose answer nobody waits for. Every answer (or timeout)
// records its latency in latency, in ms.
//
// The caller encodes body with the request's own encoder (wire.go),
// normally on calloutBuf[:0], which this then keeps for the next call.
func dispatchCallout(cp *policy.ControlPlane, latency proxywasm.MetricHistogram, path string, body []byte, done func(status int, body []byte)) error {
	// The host copies the body during the dispatch: the buffer is reused
	// by the next call, unless it grew beyond what is worth keeping.
	if cap(body) <= maxCalloutBuf {
		calloutBuf = body
	}
	return dispatch(cp, latency, "POST", path, body, done)
}

// dispatch sends method path with body (JSON; nil for none) to the
// control plane, without taking body over: the queue's calls keep
// theirs.
func dispatch(cp *policy.ControlPlane, latency proxywasm.MetricHistogram, method, path string, body []byte, done func(status int, body []byte)) error {
	// On the stack: the SDK serializes the headers during the dispatch.
	var hs [5][2]string
	headers := append(hs[:0],
		[2]string{":method", method},
		[2]string{":path", path},
		[2]string{":authority", cp.Authority},
	)
	if body != nil {
		headers = append(headers, [2]string{"content-type", "application/json"})
	}
	if !cp.InsecureNoAuth {
		headers = append(headers, [2]string{"authorization", bearerOf(cp.Token)})
	}
	timeout := uint32(cp.Timeout.Milliseconds())
	start := time.Now()
	_, err := proxywasm.DispatchHttpCall(cp.Cluster, headers, body, nil, timeout, func(numHeaders, bodySize, _ int) {
		latency.Record(uint64(time.Since(start).Milliseconds()))
		if done == nil {
			return
		}
		status, respBody := readCalloutResponse(numHeaders, bodySize)
		done(status, respBody)
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
