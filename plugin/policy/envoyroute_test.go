package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// envoyRoutes has one route of each kind Select weighs: named (Envoy
// route metadata), by Envoy route name, by path, and named without any
// match of its own.
const envoyRoutes = `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [
  {"name": "payments", "match": {"path": "/payments", "methods": ["POST"]}, "scope": {"headers": ["a"]}},
  {"match": {"route_name": "orders-create", "methods": ["POST", "PUT"]}, "scope": {"headers": ["a"]}},
  {"match": {"route_name": "orders-create", "prefix": "/v2/", "methods": ["DELETE"]}, "scope": {"headers": ["a"]}},
  {"match": {"prefix": "/"}, "scope": {"headers": ["a"]}},
  {"name": "refunds", "scope": {"headers": ["a"]}},
  {"name": "transfers", "match": {"methods": ["PUT"]}, "scope": {"headers": ["a"]}}
]}`

func TestSelect(t *testing.T) {
	c, err := Parse([]byte(envoyRoutes))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     Request
		want    int // index in c.Routes; -1: none
		wantErr string
	}{
		{"path match", Request{Host: "h", Path: "/payments", Method: "POST"}, 0, ""},
		{"catch-all by path", Request{Host: "h", Path: "/x", Method: "POST"}, 3, ""},
		{"method no route lists", Request{Host: "h", Path: "/x", Method: "GET"}, -1, ""},

		// Envoy route metadata selects the named route, whatever its path.
		{"metadata over path", Request{Host: "h", Path: "/elsewhere?q=1", Method: "POST", PolicyRoute: "payments"}, 0, ""},
		{"metadata over route name", Request{Host: "h", Path: "/x", Method: "POST", RouteName: "orders-create", PolicyRoute: "refunds"}, 4, ""},
		{"metadata, route without match", Request{Path: "/r", Method: "PATCH", PolicyRoute: "refunds"}, 4, ""},
		{"metadata, method the route does not list: no other route", Request{Path: "/payments", Method: "PATCH", PolicyRoute: "payments"}, -1, ""},
		{"metadata, match with methods only", Request{Path: "/t", Method: "PUT", PolicyRoute: "transfers"}, 5, ""},
		{"metadata names no route", Request{Path: "/payments", Method: "POST", PolicyRoute: "payment"}, -1, `"payment" (the policy's route names: "payments", "refunds", "transfers")`},

		// Envoy's route name, before the path match.
		{"route name over path", Request{Host: "h", Path: "/payments", Method: "POST", RouteName: "orders-create"}, 1, ""},
		{"route name, its path and method", Request{Host: "h", Path: "/v2/o/1", Method: "DELETE", RouteName: "orders-create"}, 2, ""},
		{"route name, other path for DELETE", Request{Host: "h", Path: "/v1/o/1", Method: "DELETE", RouteName: "orders-create"}, -1, ""},
		{"route name, method it does not list: path routes", Request{Host: "h", Path: "/payments", Method: "PATCH", RouteName: "orders-create"}, 3, ""},
		{"other route name: path routes", Request{Host: "h", Path: "/payments", Method: "POST", RouteName: "orders-list"}, 0, ""},
		{"route name needed", Request{Host: "h", Path: "/v2/o/1", Method: "DELETE"}, -1, ""},

		// A named route without a path of its own is never matched by path.
		{"no path of its own", Request{Host: "h", Path: "/r", Method: "POST"}, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Select(tt.req)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrUnknownPolicyRoute) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Select error = %v, want ErrUnknownPolicyRoute containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			var want *Route
			if tt.want >= 0 {
				want = &c.Routes[tt.want]
			}
			if got != want {
				t.Errorf("Select = %s, want %s", routeIndex(c, got), routeIndex(c, want))
			}
		})
	}
	if !c.UsesRouteNames() || !c.UsesRouteMetadata() || c.AllFailOpen() {
		t.Errorf("UsesRouteNames %v, UsesRouteMetadata %v, AllFailOpen %v; want true, true, false", c.UsesRouteNames(), c.UsesRouteMetadata(), c.AllFailOpen())
	}
	plain, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if plain.UsesRouteNames() || plain.UsesRouteMetadata() {
		t.Error("a policy without names or route_name reads Envoy's route name or metadata")
	}
	// Metadata naming a route is an error even where no route is named:
	// the request must not pass as if nothing were said.
	if _, err := plain.Select(Request{Path: "/payments", Method: "POST", PolicyRoute: "payments"}); !errors.Is(err, ErrUnknownPolicyRoute) || !strings.Contains(err.Error(), "names: none") {
		t.Errorf("Select on a policy without names = %v, want ErrUnknownPolicyRoute", err)
	}
}

func routeIndex(c *Config, r *Route) string {
	for i := range c.Routes {
		if r == &c.Routes[i] {
			return fmt.Sprintf("routes[%d]", i)
		}
	}
	return "nil"
}

// Selecting by route name and metadata runs on every request: no
// allocation when it succeeds.
func TestSelectAllocs(t *testing.T) {
	c, err := Parse([]byte(envoyRoutes))
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []Request{
		{Host: "h", Path: "/v2/o?x=1", Method: "DELETE", RouteName: "orders-create"},
		{Path: "/t", Method: "PUT", PolicyRoute: "transfers"},
		{Host: "h", Path: "/nothing", Method: "GET", RouteName: "other"},
	} {
		if n := testing.AllocsPerRun(100, func() { _, _ = c.Select(req) }); n != 0 {
			t.Errorf("Select(%+v) allocates %v times per call, want 0", req, n)
		}
	}
}

func TestParseEnvoyRoutes(t *testing.T) {
	route := func(r string) string {
		return `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [` + r + `]}`
	}
	const scope = `"scope": {"headers": ["a"]}`
	tests := []struct {
		name, config, wantErr string
	}{
		{"named, no match", route(`{"name": "p", ` + scope + `}`), ""},
		{"route_name only", route(`{"match": {"route_name": "default.orders.0"}, ` + scope + `}`), ""},
		{"route_name and path", route(`{"match": {"route_name": "r", "glob": "/a/*"}, ` + scope + `}`), ""},
		{"named, methods only", route(`{"name": "p", "match": {"methods": ["PUT"]}, ` + scope + `}`), ""},
		{"no match, no name", route(`{` + scope + `}`), "routes[0].match: required (only a route with a name"},
		{"methods only, no name", route(`{"match": {"methods": ["POST"]}, ` + scope + `}`), "routes[0].match: want one of path, prefix, glob and route_name, got none"},
		{"empty name", route(`{"name": "", "match": {"path": "/"}, ` + scope + `}`), "routes[0].name: must not be empty"},
		{"name with space", route(`{"name": "a b", ` + scope + `}`), "routes[0].name: byte 1 is not visible ASCII"},
		{"long name", route(`{"name": "` + strings.Repeat("n", 257) + `", ` + scope + `}`), "routes[0].name: is 257 bytes, at most 256"},
		{"empty route_name", route(`{"match": {"route_name": ""}, ` + scope + `}`), "routes[0].match.route_name: must not be empty"},
		{"route_name with newline", route(`{"match": {"route_name": "a\nb"}, ` + scope + `}`), "routes[0].match.route_name: byte 1 is not visible ASCII"},
		{"route_name not string", route(`{"match": {"route_name": 1}, ` + scope + `}`), "routes[0].match.route_name: want a string, got a number"},
		{"name twice", route(`{"name": "p", "match": {"path": "/a"}, ` + scope + `}, {"name": "p", ` + scope + `}`), `routes[1].name: "p" is also the name of routes[0]`},
		{"path and glob", route(`{"match": {"path": "/a", "glob": "/a"}, ` + scope + `}`), "routes[0].match: want at most one of path, prefix and glob, got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.config))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Parse: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Parse error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseReplayHeader(t *testing.T) {
	tests := []struct {
		name, extra, want, wantErr string
	}{
		{"default", `"ttl": "24h"`, "idempotent-replayed", ""},
		{"IETF-style name", `"replay_header": "Idempotency-Replayed"`, "idempotency-replayed", ""},
		{"X- name", `"replay_header": "X-Idempotent-Replayed"`, "x-idempotent-replayed", ""},
		{"default spelled out", `"replay_header": "Idempotent-Replayed"`, "idempotent-replayed", ""},
		{"not a header name", `"replay_header": "Replayed: yes"`, "", `routes[0].replay_header: want an HTTP header name, got "Replayed: yes"`},
		{"empty", `"replay_header": ""`, "", "routes[0].replay_header: want an HTTP header name"},
		{"pseudo-header", `"replay_header": ":status"`, "", "routes[0].replay_header: want a response header name, not a pseudo-header"},
		{"framing header", `"replay_header": "Content-Length"`, "", "routes[0].replay_header: content-length is a header the replay frames"},
		{"hop-by-hop", `"replay_header": "Connection"`, "", "routes[0].replay_header: connection is a header the replay"},
		{"set-cookie", `"replay_header": "Set-Cookie"`, "", "routes[0].replay_header: set-cookie is a header the replay"},
		{"a safe replayed header", `"replay_header": "ETag"`, "", "routes[0].replay_header: etag is a replayed header"},
		{"a configured replayed header", `"replay_headers": ["x-replayed"], "replay_header": "X-Replayed"`, "", "routes[0].replay_header: x-replayed is a replayed header"},
		{"the not-executed header", `"not_executed_header": "x-marker", "replay_header": "X-Marker"`, "", "routes[0].replay_header: x-marker is the route's not_executed_header"},
		{"not a string", `"replay_header": true`, "", "routes[0].replay_header: want a string, got a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(withRoute(tt.extra)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Routes[0].ReplayedHeader; got != tt.want {
				t.Errorf("ReplayedHeader = %q, want %q", got, tt.want)
			}
		})
	}
}
