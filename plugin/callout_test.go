//go:build !wasm

package main

import (
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// TestBearerOf: the cached header follows the token.
func TestBearerOf(t *testing.T) {
	for i, token := range []string{"t1", "t1", "t2", "t1", "", "t1"} {
		if got, want := bearerOf(token), "Bearer "+token; got != want {
			t.Errorf("call %d: bearerOf(%q) = %q, want %q", i, token, got, want)
		}
	}
}

// TestEveryCallout: every call the filter makes goes through one path
// (callControlPlane): the edge-epoch poll, a stream's reserve and first
// complete, the queue's retry of that complete, and another stream's
// reserve encoded between the two. Each carries the cluster, authority
// and credentials of the configuration (none with insecure_no_auth), a
// JSON content type exactly when it has a body, and the queued retry
// sends the very bytes of the first attempt, although the shared callout
// buffer encoded another call in between.
func TestEveryCallout(t *testing.T) {
	configs := []struct {
		name, config, auth string
	}{
		{"token", demoConfig, "Bearer demo-token-change-me"},
		{"insecure_no_auth", strings.Replace(demoConfig, `"token": "demo-token-change-me"`, `"insecure_no_auth": true`, 1), ""},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, cfg := range configs {
			t.Run(cfg.name, func(t *testing.T) {
				host, reset := startHost(t, vm, cfg.config)
				defer reset()
				// The helpers that check callouts expect the demo token: this
				// test reads them itself.
				nth := func(id uint32, n int) proxytest.HttpCalloutAttribute {
					t.Helper()
					cs := host.GetCalloutAttributesFromContext(id)
					if len(cs) <= n {
						t.Fatalf("stream %d: %d callouts, want at least %d", id, len(cs), n+1)
					}
					return cs[n]
				}
				a := host.InitializeHttpContext()
				sendRequest(host, a, paymentHeaders(keyK1), []byte(paymentBody))
				answer(t, host, nth(a, 0), 200, api.ReserveResponse{Outcome: api.Acquired, Token: "t1"})
				host.CallOnResponseHeaders(a, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
				host.CallOnResponseBody(a, []byte(paymentResponse), true)
				first := nth(a, 1)
				answer(t, host, first, 503, nil) // queued for retry
				b := host.InitializeHttpContext()
				other := paymentHeaders([2]string{"idempotency-key", `"k2"`})
				sendRequest(host, b, other, []byte(`{"amount":`+strings.Repeat("9", 300)+`}`))
				nth(b, 0)
				tickFor(t, host, "complete retry", func() bool {
					cs, _ := pluginCallouts(host, api.PathComplete)
					return len(cs) > 0
				})
				retry, _ := pluginCallouts(host, api.PathComplete)
				if string(retry[0].Body) != string(first.Body) {
					t.Errorf("queued complete sent\n%s\nwant the first attempt's\n%s", retry[0].Body, first.Body)
				}
				all := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
				all = append(all, host.GetCalloutAttributesFromContext(a)...)
				all = append(all, host.GetCalloutAttributesFromContext(b)...)
				paths := map[string]int{}
				for _, c := range all {
					path, _ := header(c.Headers, ":path")
					method, _ := header(c.Headers, ":method")
					paths[method+" "+path]++
					if c.Upstream != "idemgate_controlplane" {
						t.Errorf("%s %s: cluster %q", method, path, c.Upstream)
					}
					if v, _ := header(c.Headers, ":authority"); v != "idemgate-controlplane" {
						t.Errorf("%s %s: authority %q", method, path, v)
					}
					if v, n := header(c.Headers, "authorization"); v != cfg.auth || (n == 0) != (cfg.auth == "") {
						t.Errorf("%s %s: authorization %q (%d), want %q", method, path, v, n, cfg.auth)
					}
					ct, n := header(c.Headers, "content-type")
					switch {
					case method == "POST" && (ct != "application/json" || len(c.Body) == 0):
						t.Errorf("POST %s: content-type %q, %d body bytes; want JSON", path, ct, len(c.Body))
					case method == "GET" && (n != 0 || len(c.Body) != 0):
						t.Errorf("GET %s: content-type %q, %d body bytes; want neither", path, ct, len(c.Body))
					}
				}
				for _, want := range []string{"GET " + api.PathEdgeEpoch, "POST " + api.PathReserve, "POST " + api.PathComplete} {
					if paths[want] == 0 {
						t.Errorf("no %s among the callouts %v", want, paths)
					}
				}
				if paths["POST "+api.PathReserve] != 2 || paths["POST "+api.PathComplete] != 2 {
					t.Errorf("callouts %v, want 2 reserves and 2 completes", paths)
				}
			})
		}
	})
}
