package stack

import (
	"os"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/envoy/envoycheck"
	"go.yaml.in/yaml/v2"
)

// get walks a decoded YAML document by map keys and list indexes.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[any]any)
			if !ok {
				t.Fatalf("at %q: not a map: %#v", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at [%d]: not a list that long: %#v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

func TestRenderEnvoy(t *testing.T) {
	policy, err := os.ReadFile("../../plugin/policy/testdata/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderEnvoy(EnvoyParams{
		GatewayAddr:      "127.0.0.1:8080",
		ControlPlaneAddr: "127.0.0.1:8081",
		UpstreamAddr:     "[::1]:9000",
		ControlPlaneName: "idemgate_controlplane",
		Wasm:             "/abs/build/idempotency.wasm",
		Policy:           string(policy),
	})
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	hcm := get(t, doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config")
	wasm := get(t, hcm, "http_filters", 0, "typed_config", "config")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"listener host", get(t, doc, "static_resources", "listeners", 0, "address", "socket_address", "address"), "127.0.0.1"},
		{"listener port", get(t, doc, "static_resources", "listeners", 0, "address", "socket_address", "port_value"), 8080},
		{"plugin configuration verbatim", get(t, wasm, "configuration", "value"), string(policy)},
		{"module", get(t, wasm, "vm_config", "code", "local", "filename"), "/abs/build/idempotency.wasm"},
		{"router last", get(t, hcm, "http_filters", 1, "name"), "envoy.filters.http.router"},
		{"control-plane cluster named as the policy says", get(t, doc, "static_resources", "clusters", 0, "name"), "idemgate_controlplane"},
		{"control-plane port", get(t, doc, "static_resources", "clusters", 0, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address", "port_value"), 8081},
		{"upstream IPv6 host", get(t, doc, "static_resources", "clusters", 1, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address", "address"), "::1"},
		{"route has no retry policy", get(t, hcm, "route_config", "virtual_hosts", 0, "routes", 0, "route", "retry_policy"), nil},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
	// Envoy's own API types and idemctl check-envoy's rules accept it,
	// warnings included.
	for _, f := range envoycheck.Check(out) {
		t.Errorf("check-envoy: %s", f)
	}
}

func TestRenderEnvoyRefusesNames(t *testing.T) {
	_, err := RenderEnvoy(EnvoyParams{GatewayAddr: "localhost:8080", ControlPlaneAddr: "127.0.0.1:1", UpstreamAddr: "127.0.0.1:2"})
	if err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("err = %v, want one naming the gateway address", err)
	}
}

// TestRenderEnvoyRoutes: the e2e route table becomes Envoy routes with the
// same names, prefixes and metadata, which check-envoy finds consistent
// with the e2e policy (it flags a policy route no route reaches).
func TestRenderEnvoyRoutes(t *testing.T) {
	policy, err := os.ReadFile("../testdata/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := readRoutes("../testdata/routes.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := RenderEnvoy(EnvoyParams{
		GatewayAddr: "127.0.0.1:8080", ControlPlaneAddr: "127.0.0.1:8081", UpstreamAddr: "127.0.0.1:9000",
		ControlPlaneName: "idemgate_controlplane", Wasm: "/abs/build/idempotency.wasm", Policy: string(policy), Routes: routes,
	})
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	rs := get(t, doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config", "route_config", "virtual_hosts", 0, "routes")
	if n := len(rs.([]any)); n != len(routes) {
		t.Fatalf("%d routes rendered, want %d", n, len(routes))
	}
	for i, r := range routes {
		if got := get(t, rs, i, "name"); got != r.Name {
			t.Errorf("routes[%d].name = %v, want %q", i, got, r.Name)
		}
		if got := get(t, rs, i, "match", "prefix"); got != r.Prefix {
			t.Errorf("routes[%d].match.prefix = %v, want %q", i, got, r.Prefix)
		}
	}
	if got := get(t, rs, 0, "metadata", "filter_metadata", "idemgate", "route"); got != "routed-payments" {
		t.Errorf("routes[0] idemgate metadata = %v, want routed-payments", got)
	}
	for _, f := range envoycheck.Check(out) {
		t.Errorf("check-envoy: %s", f)
	}
	// Without the table, the same policy's route-picked routes are
	// unreachable: check-envoy says so.
	bare, err := RenderEnvoy(EnvoyParams{
		GatewayAddr: "127.0.0.1:8080", ControlPlaneAddr: "127.0.0.1:8081", UpstreamAddr: "127.0.0.1:9000",
		ControlPlaneName: "idemgate_controlplane", Wasm: "/abs/build/idempotency.wasm", Policy: string(policy),
	})
	if err != nil {
		t.Fatal(err)
	}
	if fs := envoycheck.Check(bare); !envoycheck.HasErrors(fs) {
		t.Errorf("check-envoy without routes: %v, want the route_name that names no route", fs)
	}
}
