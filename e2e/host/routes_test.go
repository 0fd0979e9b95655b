package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"testing"
)

// routesPolicy governs by Envoy's route: the route metadata names
// "payments" (a route without a match of its own, with its own replay
// header), and "orders-create" is selected by route name.
const routesPolicy = `{
  "control_plane": {"cluster": "idemgate_controlplane", "authority": "idemgate-controlplane", "token": "demo-token-change-me"},
  "routes": [
    {"name": "payments", "scope": {"headers": ["authorization"]}, "replay_header": "X-Idempotent-Replayed"},
    {"match": {"route_name": "orders-create"}, "scope": {"headers": ["authorization"]}}
  ]
}`

var testRoutes = []Route{
	{Name: "checkout", Prefix: "/checkout/", Metadata: map[string]map[string]any{"idemgate": {"route": "payments"}}},
	{Name: "orders-create", Prefix: "/orders"},
	{Name: "typo", Prefix: "/typo/", Metadata: map[string]map[string]any{"idemgate": {"route": "paymnts"}}},
	{Name: "static", Prefix: "/static/", Metadata: map[string]map[string]any{"other": {"route": "payments"}}},
}

// TestRouteTable: the module sees the route the host's table picks —
// its name and metadata — and governs by it; a request no route matches
// gets the router's 404 and never reaches the upstream.
func TestRouteTable(t *testing.T) {
	cp, up := startControlPlane(t), newTestUpstream(t)
	wasm := readModule(t)
	h, err := New(context.Background(), Config{
		Wasm: wasm, PluginConfig: []byte(routesPolicy), Workers: 1, Routes: testRoutes,
		Clusters: map[string]string{"idemgate_controlplane": cp.addr}, Upstream: up.addr(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	steps := []struct {
		name       string
		path, key  string
		status     int
		executions int64  // upstream executions after the step
		replayed   string // the header that must say "true"; "" none of the two
	}{
		{name: "metadata names payments: governed, key required", path: "/checkout/pay", status: 400},
		{name: "metadata: first call executes", path: "/checkout/pay", key: "k1", status: 201, executions: 1},
		{name: "metadata: retry replayed with the route's header", path: "/checkout/pay", key: "k1", status: 201, executions: 1, replayed: "X-Idempotent-Replayed"},
		{name: "route name orders-create: governed", path: "/orders/7", status: 400, executions: 1},
		{name: "route name: executes", path: "/orders/7", key: "o1", status: 201, executions: 2},
		{name: "route name: retry replayed, default header", path: "/orders/7", key: "o1", status: 201, executions: 2, replayed: "Idempotent-Replayed"},
		{name: "metadata of another namespace: not governed", path: "/static/x", status: 201, executions: 3},
		{name: "metadata names no policy route: 500, not forwarded", path: "/typo/x", key: "t1", status: 500, executions: 3},
		{name: "no route: the router's 404", path: "/nowhere", key: "n1", status: 404, executions: 3},
	}
	for _, s := range steps {
		r := post(t, srv.URL+s.path, s.key, `{"amount":1}`)
		if r.status != s.status {
			t.Fatalf("%s: status %d (%s), want %d", s.name, r.status, r.body, s.status)
		}
		if n := up.executions.Load(); n != s.executions {
			t.Errorf("%s: upstream executions %d, want %d", s.name, n, s.executions)
		}
		for _, hdr := range []string{"Idempotent-Replayed", "X-Idempotent-Replayed"} {
			want := ""
			if hdr == s.replayed {
				want = "true"
			}
			if got := r.header.Get(hdr); got != want {
				t.Errorf("%s: %s = %q, want %q", s.name, hdr, got, want)
			}
		}
	}
	if n, _ := h.Counter("idemgate.route_unknown"); n != 1 {
		t.Errorf("idemgate.route_unknown = %d, want 1", n)
	}
}

func TestRouteProperty(t *testing.T) {
	r := &Route{Name: "checkout", Prefix: "/", Metadata: map[string]map[string]any{
		"idemgate": {"route": "payments", "n": 2.5, "on": true, "nested": map[string]any{"a": "b"}, "null": nil},
	}}
	f64 := binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5))
	tests := []struct {
		name    string
		route   *Route
		path    []string
		want    []byte
		found   bool
		handled bool
	}{
		{"route name", r, []string{"xds", "route_name"}, []byte("checkout"), true, true},
		{"unnamed route", &Route{Prefix: "/"}, []string{"xds", "route_name"}, []byte{}, true, true},
		{"no route", nil, []string{"xds", "route_name"}, nil, false, true},
		{"string", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "route"}, []byte("payments"), true, true},
		{"number", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "n"}, f64, true, true},
		{"bool", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "on"}, []byte{1}, true, true},
		{"nested", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "nested", "a"}, []byte("b"), true, true},
		{"struct as pairs", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "nested"}, serializeMap([][2]string{{"a", "b"}}), true, true},
		{"null", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "null"}, nil, false, true},
		{"missing field", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "x"}, nil, false, true},
		{"below a string", r, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "route", "x"}, nil, false, true},
		{"other namespace", r, []string{"xds", "route_metadata", "filter_metadata", "istio", "config"}, nil, false, true},
		{"no route, metadata", nil, []string{"xds", "route_metadata", "filter_metadata", "idemgate", "route"}, nil, false, true},
		{"not a route property", r, []string{"request", "id"}, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, found, handled := routeProperty(tt.route, tt.path)
			if !bytes.Equal(v, tt.want) || found != tt.found || handled != tt.handled || (found && v == nil) {
				t.Errorf("routeProperty = %q, %v, %v; want %q, %v, %v", v, found, handled, tt.want, tt.found, tt.handled)
			}
		})
	}
	if _, err := New(context.Background(), Config{Upstream: "127.0.0.1:1", Routes: []Route{{Prefix: "payments"}}}); err == nil {
		t.Error("New accepted a route prefix without a leading '/'")
	}
}
