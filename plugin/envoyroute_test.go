//go:build !wasm

package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// TestReplayHeaderName: every replay, from the control plane or from the
// edge cache, carries the route's replay_header and no other marker.
func TestReplayHeaderName(t *testing.T) {
	stored := &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(paymentResponse)}
	tests := []struct {
		name   string
		config []string // replacements in demoConfig
		want   string   // the marker
		edge   bool     // replayed from the edge cache (else from the control plane's reserve)
	}{
		{name: "default, control plane", want: "idempotent-replayed"},
		{name: "default, edge", want: "idempotent-replayed", edge: true},
		{name: "Idempotency-Replayed, control plane", config: []string{`"on_duplicate": "replay"`, `"on_duplicate": "replay", "replay_header": "Idempotency-Replayed"`}, want: "idempotency-replayed"},
		{name: "X-Idempotent-Replayed, edge", config: []string{`"on_duplicate": "replay"`, `"on_duplicate": "replay", "replay_header": "X-Idempotent-Replayed"`}, want: "x-idempotent-replayed", edge: true},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				headers := paymentHeaders(keyK1)
				if tc.edge {
					completeOnce(t, host, headers, paymentResponse, 200)
				}
				id := host.InitializeHttpContext()
				if a := sendRequest(host, id, headers, []byte(paymentBody)); a != types.ActionPause {
					t.Fatalf("request action = %v, want ActionPause", a)
				}
				callouts := host.GetCalloutAttributesFromContext(id)
				switch {
				case tc.edge && len(callouts) != 0:
					t.Fatalf("%d callouts, want none: replayed at the edge", len(callouts))
				case !tc.edge:
					answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Completed, Response: stored})
				}
				r := host.GetSentLocalResponse(id)
				if r == nil {
					t.Fatal("no local response, want a replay")
				}
				want := [][2]string{{"content-type", "application/json"}, {tc.want, "true"}}
				if !slices.Equal(r.Headers, want) || int(r.StatusCode) != 201 || string(r.Data) != paymentResponse {
					t.Errorf("replay = %d %q %s, want 201 %q %s", r.StatusCode, r.Headers, r.Data, want, paymentResponse)
				}
				host.CompleteHttpContext(id)
			})
		}
	})
}

// routesConfig: a route Envoy route metadata selects by its name, one
// that selects Envoy's route "orders-create" by name, and one matched by
// path alone.
const routesConfig = `{
  "control_plane": {"cluster": "idemgate_controlplane", "authority": "idemgate-controlplane", "token": "demo-token-change-me"},
  "routes": [
    {"name": "payments", "match": {"path": "/payments", "methods": ["POST"]}, "scope": {"headers": ["authorization"]}},
    {"match": {"route_name": "orders-create", "methods": ["POST", "PUT"]}, "scope": {"headers": ["authorization"]}, "failure_mode": "closed"},
    {"match": {"prefix": "/legacy/"}, "scope": {"headers": ["authorization"]}}
  ]
}`

// TestEnvoyRouteSelection: the filter asks Envoy which route routed the
// request (xds.route_name, and the policy route its metadata names) and
// governs what policy.Select picks.
func TestEnvoyRouteSelection(t *testing.T) {
	metadata := []string{"xds", "route_metadata", "filter_metadata", "idemgate", "route"}
	allOpen := strings.NewReplacer(`"failure_mode": "closed"`, `"failure_mode": "open"`, `"scope": {"headers": ["authorization"]}}`, `"scope": {"headers": ["authorization"]}, "failure_mode": "open"}`).Replace(routesConfig)
	tests := []struct {
		name      string
		config    string
		method    string
		path      string
		routeName string // xds.route_name; "" unset
		policy    string // the metadata's route; "" unset
		want      string // "governed", "passed" or "refused"
		counter   string // incremented once
		log       string // in an error log
	}{
		{name: "metadata selects a route at another path", method: "POST", path: "/checkout/pay", policy: "payments", want: "governed", counter: "idemgate.requests_governed"},
		{name: "metadata wins over the route name", method: "POST", path: "/x", routeName: "orders-create", policy: "payments", want: "governed"},
		{name: "metadata, method the route does not list", method: "PUT", path: "/payments", routeName: "orders-create", policy: "payments", want: "passed", counter: "idemgate.bypassed_no_route"},
		{name: "route name selects", method: "PUT", path: "/orders/7", routeName: "orders-create", want: "governed", counter: "idemgate.requests_governed"},
		{name: "other route name: the path decides", method: "POST", path: "/legacy/a", routeName: "orders-list", want: "governed"},
		{name: "no route name: a route_name route never matches", method: "PUT", path: "/orders/7", want: "passed", counter: "idemgate.bypassed_no_route"},
		{name: "no Envoy route information: own match", method: "POST", path: "/payments", want: "governed"},
		{
			name: "metadata names no policy route: refused", method: "POST", path: "/payments", policy: "payment", want: "refused",
			counter: "idemgate.route_unknown", log: `"payment" (the policy's route names: "payments")`,
		},
		{
			name: "metadata names no policy route, every route fail-open: passed", config: allOpen, method: "POST", path: "/payments", policy: "payment", want: "passed",
			counter: "idemgate.route_unknown", log: "metadata.filter_metadata.idemgate.route",
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				config := tc.config
				if config == "" {
					config = routesConfig
				}
				host, reset := startHost(t, vm, config)
				defer reset()
				if tc.routeName != "" {
					if err := host.SetProperty([]string{"xds", "route_name"}, []byte(tc.routeName)); err != nil {
						t.Fatal(err)
					}
				}
				if tc.policy != "" {
					if err := host.SetProperty(metadata, []byte(tc.policy)); err != nil {
						t.Fatal(err)
					}
				}
				id := host.InitializeHttpContext()
				headers := [][2]string{{":method", tc.method}, {":path", tc.path}, {":authority", "api.example.com"},
					{"content-type", "application/json"}, {"authorization", "Bearer alice"}, keyK1}
				a := sendRequest(host, id, headers, []byte(paymentBody))
				callouts := host.GetCalloutAttributesFromContext(id)
				r := host.GetSentLocalResponse(id)
				switch tc.want {
				case "governed":
					if a != types.ActionPause || len(callouts) != 1 || r != nil {
						t.Fatalf("action %v, %d callouts, local response %v; want paused on a reserve", a, len(callouts), r)
					}
					nthCallout(t, host, id, 0, api.PathReserve)
				case "passed":
					if a != types.ActionContinue || len(callouts) != 0 || r != nil {
						t.Fatalf("action %v, %d callouts, local response %v; want passed through", a, len(callouts), r)
					}
				case "refused":
					if len(callouts) != 0 {
						t.Fatalf("%d callouts, want none", len(callouts))
					}
					checkProblem(t, r, 500, "The gateway's idempotency policy is misconfigured", "names an idempotency policy route that does not exist", "")
				}
				if tc.counter != "" {
					if n := counter(t, host, tc.counter); n != 1 {
						t.Errorf("%s = %d, want 1", tc.counter, n)
					}
				}
				if logs := host.GetErrorLogs(); tc.log == "" && len(logs) != 0 {
					t.Errorf("error logs = %q, want none", logs)
				} else if tc.log != "" {
					checkErrorLog(t, logs, tc.log)
				}
				host.CompleteHttpContext(id)
			})
		}
	})
}
