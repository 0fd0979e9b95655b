package envoycheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/internal/envoyfixture"
)

// want is a finding a case expects: its severity, and substrings of its
// path and message.
type want struct {
	sev  Severity
	path string
	msg  string
}

func TestCheckTestdata(t *testing.T) {
	const hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	const wasmCfg = hcm + ".http_filters[0].typed_config.config"
	const route0 = hcm + ".route_config.virtual_hosts[0].routes[0]"
	tests := []struct {
		file string
		want []want
	}{
		{"schema_unknown_field.yaml", []want{{Error, "static_resources.listeners[0].per_connection_buffer_limit_byte", `unknown field "per_connection_buffer_limit_byte"`}}},
		{"schema_bad_enum.yaml", []want{{Error, "static_resources.clusters[0].type", `invalid value for enum field type: "STATICC"`}}},
		{"schema_bad_duration.yaml", []want{{Error, "static_resources.clusters[0].connect_timeout", `invalid google.protobuf.Duration value "1 second"`}}},
		{"schema_bad_typed_config.yaml", []want{{Error, hcm + ".http_filters[1].typed_config.suppress_envoy_headerz", `unknown field "suppress_envoy_headerz"`}}},
		{"schema_unknown_type.yaml", []want{{Error, hcm + ".http_filters[1].typed_config.@type", `unknown type URL "type.googleapis.com/envoy.config.filter.http.router.v2.Router"`}}},
		{"schema_invalid_in_any.yaml", []want{{Error, hcm, "HttpConnectionManager.StatPrefix: value length must be at least 1"}}},
		{"schema_invalid_port.yaml", []want{{Error, "", "SocketAddress.PortValue: value must be less than or equal to 65535"}}},
		{"retry_route.yaml", []want{{Error, route0 + ".route.retry_policy", "re-send a request the upstream may already have executed"}}},
		{"retry_vhost.yaml", []want{{Error, hcm + ".route_config.virtual_hosts[0].retry_policy", "applies to routes[0]"}}},
		{"buffer_listener.yaml", []want{
			{Error, "static_resources.listeners[0].per_connection_buffer_limit_bytes", "is 65536, below the policy's max_body_bytes 1048576"},
			{Error, "static_resources.listeners[0].per_connection_buffer_limit_bytes", "is 65536, below the policy's max_stored_response_bytes 1048576"},
		}},
		{"buffer_listener_default.yaml", []want{{Error, "static_resources.listeners[0].per_connection_buffer_limit_bytes", "Envoy's default 1048576, below the policy's max_body_bytes 4194304"}}},
		{"buffer_route.yaml", []want{{Error, route0 + ".per_request_buffer_limit_bytes", "is 1024, below max_body_bytes 1048576"}}},
		{"missing_cluster.yaml", []want{{Error, wasmCfg + ".configuration", `control_plane.cluster "idemgate_control_plane" is not among static_resources.clusters`}}},
		{"invalid_policy.yaml", []want{{Error, wasmCfg + ".configuration", "routes[0].max_body_bytes: must be > 0, got 0"}}},
		{"after_router.yaml", []want{{Error, hcm + ".http_filters[1]", "comes after the router (http_filters[0])"}}},
		{"fail_open.yaml", []want{{Error, wasmCfg + ".fail_open", "governed requests would pass upstream unchecked"}}},
		{"failure_policy_open.yaml", []want{{Error, wasmCfg + ".failure_policy", "FAIL_OPEN"}}},
		{"idle_timeout_long.yaml", []want{{Warning, "static_resources.clusters[1]", `"idemgate_controlplane" is 10m0s, not below the control plane's own idle close of 5m0s`}}},
		{"idle_timeout_unset.yaml", []want{{Warning, "static_resources.clusters[1]", "is unset (Envoy's default 1h0m0s)"}}},
		{"controlplane_http2.yaml", []want{{Error, "static_resources.clusters[1].typed_extension_protocol_options", "HTTP/1.1 only"}}},
		{"timeout_lease.yaml", []want{{Warning, route0 + ".route.timeout", "is 1m0s, not below the lease 30s"}}},
		// Issue 10, case 5: the principal comes from a filter that must run first.
		{"scope_metadata_missing.yaml", []want{{Error, wasmCfg + ".configuration", `reads dynamic metadata "envoy.filters.http.jwt_authn", but no filter in this http_connection_manager writes it`}}},
		{"scope_metadata_after.yaml", []want{{Error, hcm + ".http_filters[1]", "comes after the idemgate filter (http_filters[0])"}}},
		{"scope_metadata_before.yaml", nil},
		{"scope_metadata_wrong_key.yaml", []want{{Error, hcm + ".http_filters[1].typed_config.config.configuration", `does not write "payload" (its providers write under ["jwt_payload"] only)`}}},
		{"scope_metadata_route_off.yaml", []want{{Error, route0 + `.typed_per_filter_config["envoy.filters.http.jwt_authn"]`, `turns off "envoy.filters.http.jwt_authn" on routes[0]`}}},
		{"scope_metadata_chain_disabled.yaml", []want{{Error, route0, `does not turn on (disabled in the http_filters) "envoy.filters.http.jwt_authn" on routes[0]`}}},
		{"scope_metadata_route_on.yaml", nil},
		{"scope_metadata_lua.yaml", []want{{Warning, hcm + ".http_filters[1].typed_config.config.configuration", "http_filters[0] run code that may"}}},
		// Issue 10, case 11: a stored response must fit the stream's buffer.
		{"stored_listener.yaml", []want{{Error, "static_resources.listeners[0].per_connection_buffer_limit_bytes", "is 2097152, below the policy's max_stored_response_bytes 4194304"}}},
		{"stored_at_limit.yaml", nil},
		{"stored_buffer_filter.yaml", []want{{Error, hcm + ".http_filters[0].typed_config.max_request_bytes", "is 1048576 on routes[0], below max_stored_response_bytes 2097152"}}},
		{"stored_buffer_route.yaml", []want{
			{Error, route0 + `.typed_per_filter_config["envoy.filters.http.buffer"].buffer.max_request_bytes`, "is 65536 on routes[0], below max_body_bytes 1048576"},
			{Error, route0 + `.typed_per_filter_config["envoy.filters.http.buffer"].buffer.max_request_bytes`, "is 65536 on routes[0], below max_stored_response_bytes 2097152"},
		}},
		{"stored_buffer_disabled.yaml", nil},
		// Envoy never sends governed traffic twice on its own.
		{"retry_zero.yaml", nil},
		{"retry_vhost_zero.yaml", nil},
		{"retry_mirror.yaml", []want{{Error, route0 + ".route.request_mirror_policies", `to cluster "upstream"`}}},
		{"retry_hedge.yaml", []want{{Error, route0 + ".route.hedge_policy", "remove initial_requests"}}},
		{"retry_internal_redirect.yaml", []want{{Warning, route0 + ".route", "follows upstream redirects internally"}}},
		// Issue 13: Envoy's router selects policy routes by name and metadata.
		{"route_selection_ok.yaml", nil},
		{"route_metadata_unknown.yaml", []want{
			{Error, route0 + `.metadata.filter_metadata["idemgate"].route`, `names policy route "paymnts", which the idemgate policy does not have (its named routes: "payments")`},
			{Warning, wasmCfg + ".configuration", `policy routes[0] "payments": POST: no route of the route_config sends requests to it`},
		}},
		{"route_metadata_number.yaml", []want{{Error, route0 + `.metadata.filter_metadata["idemgate"].route`, "must be a non-empty string naming a policy route"}}},
		{"route_metadata_retry.yaml", []want{{Error, route0 + ".route.retry_policy", `retries traffic the idemgate policy governs (policy routes[0] "payments": POST)`}}},
		{"route_name_unknown.yaml", []want{{Error, wasmCfg + ".configuration", `routes[1].match.route_name "orders-create" names no route of the route_config that goes upstream through this filter`}}},
		{"unrouted_named.yaml", []want{{Warning, wasmCfg + ".configuration", `no route's metadata.filter_metadata.idemgate.route names "payments"`}}},
		{"unrouted_path.yaml", []want{{Warning, wasmCfg + ".configuration", "policy routes[2]: POST /payments: no route of the route_config sends requests to it"}}},
		{"configuration_struct_type.yaml", []want{{Error, wasmCfg + ".configuration", "google.protobuf.Duration; the idemgate policy is JSON in a google.protobuf.StringValue"}}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			data, err := envoyfixture.Build("testdata", tt.file)
			if err != nil {
				t.Fatal(err)
			}
			got := Check(data)
			for _, f := range got {
				if f.Rule == "" {
					t.Errorf("finding without a rule: %v", f)
				}
			}
			for _, w := range tt.want {
				if !hasFinding(got, w) {
					t.Errorf("no finding %s at %q containing %q; got:\n%s", w.sev, w.path, w.msg, list(got))
				}
			}
			// Each case breaks one thing: nothing else is an error or a
			// warning, so a check that fires too widely fails here.
			if len(got) != len(tt.want) {
				t.Errorf("got %d findings, want %d:\n%s", len(got), len(tt.want), list(got))
			}
		})
	}
	// A case added to testdata/cases without a row here is an error.
	names, err := envoyfixture.Names("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no cases under testdata/cases")
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("testdata/cases/%s has no row in TestCheckTestdata", n)
		}
	}
}

// Every case is base.yaml with a patch: the base must be clean, so that
// what a case reports comes from its patch alone.
func TestBaseIsClean(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", envoyfixture.BaseFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := Check(data); len(got) != 0 {
		t.Errorf("testdata/%s: want no findings, got:\n%s", envoyfixture.BaseFile, list(got))
	}
}

func hasFinding(got []Finding, w want) bool {
	for _, f := range got {
		if f.Severity == w.sev && f.Path == w.path && strings.Contains(f.Message, w.msg) {
			return true
		}
	}
	return false
}

func list(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.String() + "\n")
	}
	return b.String()
}

func TestCheckInput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want want
	}{
		{"not YAML", "a: [1, 2\n", want{Error, "", "not YAML"}},
		{"a list", "- 1\n- 2\n", want{Error, "", "want a YAML mapping"}},
		{"a scalar", "hello\n", want{Error, "", "want a YAML mapping"}},
		{"empty", "", want{Error, "", "want a YAML mapping"}},
		{"no filter", "admin:\n  address:\n    socket_address: {address: 127.0.0.1, port_value: 9901}\n", want{Warning, "", "nothing is governed"}},
		{"wrong type", "static_resources: 3\n", want{Error, "", "schema:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check([]byte(tt.in))
			if !hasFinding(got, tt.want) || len(got) != 1 {
				t.Errorf("Check(%q) =\n%swant one %s containing %q", tt.in, list(got), tt.want.sev, tt.want.msg)
			}
		})
	}
}

// The control plane's idle close lives in its package main, which this
// package cannot import; read it from the source so the two cannot drift.
func TestControlPlaneIdleCloseMatchesServer(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../../controlplane/main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var expr string
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for i, name := range vs.Names {
				if name.Name == "idleTimeout" && i < len(vs.Values) {
					expr = types(vs.Values[i])
				}
			}
		}
		return true
	})
	if expr != "5 * time.Minute" {
		t.Fatalf("controlplane/main.go: idleTimeout = %q; update ControlPlaneIdleClose (and envoy/*.yaml idle_timeout) to match, then this test", expr)
	}
	if ControlPlaneIdleClose != 5*time.Minute {
		t.Errorf("ControlPlaneIdleClose = %v, want 5m0s (controlplane/main.go idleTimeout)", ControlPlaneIdleClose)
	}
}

// types renders the small constant expressions the test expects.
func types(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.BasicLit:
		return e.Value
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return types(e.X) + "." + e.Sel.Name
	case *ast.BinaryExpr:
		return types(e.X) + " " + e.Op.String() + " " + types(e.Y)
	}
	return "?"
}
