package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/plugin/canon"
)

// minimal is the smallest valid configuration; bad inputs below are built
// by changing one thing in it.
const minimal = `{
  "control_plane": {"cluster": "idemgate", "authority": "idemgate.local", "token": "s3cret"},
  "routes": [{"match": {"path": "/payments"}, "scope": {"headers": ["Authorization"]}}]
}`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	wantCP := ControlPlane{Cluster: "idemgate", Authority: "idemgate.local", Token: "s3cret", Timeout: 500 * time.Millisecond}
	if c.ControlPlane != wantCP {
		t.Errorf("control plane = %+v, want %+v", c.ControlPlane, wantCP)
	}
	if c.EdgeCacheSlots != 1024 || c.MaxHeldBytes != 16<<20 {
		t.Errorf("edge_cache_slots %d, max_held_bytes %d; want 1024, 16 MiB", c.EdgeCacheSlots, c.MaxHeldBytes)
	}
	if len(c.Routes) != 1 {
		t.Fatalf("%d routes, want 1", len(c.Routes))
	}
	got := c.Routes[0]
	want := Route{
		Match:                  RouteMatch{Path: "/payments", Methods: []string{"POST", "PATCH"}},
		KeyHeader:              "idempotency-key",
		KeyFormat:              KeyAny,
		Required:               true,
		MaxKeyLength:           255,
		Scope:                  Scope{Headers: []string{"authorization"}},
		MaxBodyBytes:           1 << 20,
		MaxStoredResponseBytes: 1 << 20,
		EdgeCacheTTL:           5 * time.Minute,
		EdgeCacheMaxEntryBytes: 64 << 10,
		TTL:                    24 * time.Hour,
		Lease:                  30 * time.Second,
		StoreStatuses:          got.StoreStatuses,
		ReleaseStatuses:        got.ReleaseStatuses,
		IndeterminateStatuses:  got.IndeterminateStatuses,
		NotExecutedHeader:      "idempotency-not-executed",
		OnDuplicate:            Replay,
		OnInProgress:           Conflict,
		FailureMode:            FailClosed,
		OnIndeterminate:        Lock,
		ReplayHeaders:          DefaultReplayHeaders,
		ReplayedHeader:         "idempotent-replayed",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("route =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseEverything(t *testing.T) {
	c, err := Parse([]byte(`{
	  "control_plane": {"cluster": "cp", "authority": "cp:8081", "insecure_no_auth": true, "timeout": "250ms"},
	  "max_held_bytes": 65536,
	  "routes": [{
	    "match": {"host": "*.Example.com", "glob": "/v1/accounts/*/transfers/**", "methods": ["POST", "PUT"]},
	    "key_header": "X-Request-Key", "key_format": "sf-string", "required": false, "max_key_length": 64,
	    "scope": {"headers": ["x-api-key"], "metadata": {"filter": "envoy.filters.http.jwt_authn", "path": ["payload", "sub"]}},
	    "fingerprint": {"include": ["amount", "currency"], "exclude": ["amount.note"], "headers": ["Content-Type"]},
	    "max_body_bytes": 4096, "max_stored_response_bytes": 2048, "edge_cache_ttl": "30s", "edge_cache_max_entry_bytes": 4096, "ttl": "1h", "lease": "10s",
	    "release_statuses": ["429"], "indeterminate_statuses": ["5xx"], "store_statuses": ["408"],
	    "not_executed_header": "X-Not-Executed", "allow_anonymous": true,
	    "host_aliases": [{"host": "API.example.com", "aliases": ["api-legacy.example.com:443", "api.example.com:8443"]}],
	    "on_duplicate": "reject", "on_in_progress": "wait", "wait_timeout": "2s",
	    "failure_mode": "open", "on_indeterminate": "release",
	    "replay_headers": ["X-Request-Id", "Content-Type"], "replay_set_cookie": true
	  }]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"timeout", c.ControlPlane.Timeout, 250 * time.Millisecond},
		{"insecure", c.ControlPlane.InsecureNoAuth, true},
		{"max held bytes", c.MaxHeldBytes, 65536},
		{"match", r.Match, RouteMatch{Host: "*.example.com", Glob: "/v1/accounts/*/transfers/**", Methods: []string{"POST", "PUT"}}},
		{"key header", r.KeyHeader, "x-request-key"},
		{"key format", r.KeyFormat, KeySFString},
		{"required", r.Required, false},
		{"max key", r.MaxKeyLength, 64},
		{"scope", r.Scope, Scope{Headers: []string{"x-api-key"}, Metadata: &MetadataScope{Filter: "envoy.filters.http.jwt_authn", Path: []string{"payload", "sub"}}}},
		{"fingerprint", r.Fingerprint, canon.Selection{Include: []string{"amount", "currency"}, Exclude: []string{"amount.note"}, Headers: []string{"content-type"}}},
		{"max body", r.MaxBodyBytes, 4096},
		{"max stored response", r.MaxStoredResponseBytes, 2048},
		{"edge cache ttl", r.EdgeCacheTTL, 30 * time.Second},
		{"edge cache entry", r.EdgeCacheMaxEntryBytes, 4096},
		{"ttl", r.TTL, time.Hour},
		{"lease", r.Lease, 10 * time.Second},
		{"408 stored", r.Classify(408), Store},
		{"429 released", r.Classify(429), Release},
		{"500 indeterminate", r.Classify(500), Indeterminate},
		{"not executed header", r.NotExecutedHeader, "x-not-executed"},
		{"allow anonymous", r.AllowAnonymous, true},
		{"host aliases", r.HostAliases, map[string]string{"api-legacy.example.com": "api.example.com", "api.example.com:8443": "api.example.com"}},
		{"alias host", r.CanonicalHost("API-Legacy.example.com:443"), "api.example.com"},
		{"other host", r.CanonicalHost("api-b.example.com"), "api-b.example.com"},
		{"on duplicate", r.OnDuplicate, Reject},
		{"on in progress", r.OnInProgress, Wait},
		{"wait timeout", r.WaitTimeout, 2 * time.Second},
		{"failure mode", r.FailureMode, FailOpen},
		{"on indeterminate", r.OnIndeterminate, ReleaseKey},
		{"replay x-request-id", r.ReplayHeader("x-request-id"), true},
		{"replay set-cookie", r.ReplayHeader("set-cookie"), true},
		{"replay headers", len(r.ReplayHeaders), len(DefaultReplayHeaders) + 2},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestParseDerivedDefaults(t *testing.T) {
	tests := []struct {
		name  string
		route string
		check func(r *Route) (got, want any)
	}{
		{"lease no longer than a short ttl", `"ttl": "10s"`, func(r *Route) (any, any) { return r.Lease, 10 * time.Second }},
		{"ttl at the maximum (api.MaxTTL)", `"ttl": "8784h"`, func(r *Route) (any, any) { return r.TTL, 8784 * time.Hour }},
		{"wait timeout default", `"on_in_progress": "wait"`, func(r *Route) (any, any) { return r.WaitTimeout, 5 * time.Second }},
		{"wait timeout no longer than the lease", `"on_in_progress": "wait", "lease": "2s"`, func(r *Route) (any, any) { return r.WaitTimeout, 2 * time.Second }},
		{"store only: the others keep their defaults", `"store_statuses": ["2xx", "3xx", "4xx"]`, func(r *Route) (any, any) { return r.Classify(503), Indeterminate }},
		{"store only: an explicit store wins over a default", `"store_statuses": ["2xx", "3xx", "4xx"]`, func(r *Route) (any, any) { return r.Classify(429), Store }},
		{"store only: unnamed statuses stored", `"store_statuses": ["2xx"]`, func(r *Route) (any, any) { return r.Classify(500), Store }},
		{"store 503 alone", `"store_statuses": ["503"]`, func(r *Route) (any, any) {
			return []Outcome{r.Classify(502), r.Classify(503), r.Classify(504)}, []Outcome{Indeterminate, Store, Indeterminate}
		}},
		{"old release default written out keeps releasing 5xx", `"release_statuses": ["5xx", "408", "425", "429"]`, func(r *Route) (any, any) { return r.Classify(503), Release }},
		{"all 5xx indeterminate", `"indeterminate_statuses": ["5xx"]`, func(r *Route) (any, any) {
			return []Outcome{r.Classify(500), r.Classify(599), r.Classify(429)}, []Outcome{Indeterminate, Indeterminate, Release}
		}},
		{"release 409 too", `"release_statuses": ["408", "409", "425", "429"]`, func(r *Route) (any, any) {
			return []Outcome{r.Classify(409), r.Classify(503)}, []Outcome{Release, Indeterminate}
		}},
		{"both, partitioned", `"store_statuses": ["200-499"], "release_statuses": ["5xx"]`, func(r *Route) (any, any) { return r.Classify(408), Store }},
		{"status 600 stored", `"indeterminate_statuses": ["2xx", "3xx", "4xx", "5xx"]`, func(r *Route) (any, any) { return r.Classify(600), Store }},
		{"not executed header default", `"ttl": "24h"`, func(r *Route) (any, any) { return r.NotExecutedHeader, DefaultNotExecutedHeader }},
		{"anonymous refused by default", `"ttl": "24h"`, func(r *Route) (any, any) { return r.AllowAnonymous, false }},
		{"no host aliases", `"ttl": "24h"`, func(r *Route) (any, any) { return r.CanonicalHost("API.Example.com.:443"), "api.example.com" }},
		{"host alias with a port", `"host_aliases": [{"host": "a.example", "aliases": ["a.internal:8080", "B.example", "[::1]:8443"]}]`, func(r *Route) (any, any) {
			return []string{r.CanonicalHost("a.internal:8080"), r.CanonicalHost("a.internal"), r.CanonicalHost("b.example:80"), r.CanonicalHost("[::1]:8443"), r.CanonicalHost("[::1]")},
				[]string{"a.example", "a.internal", "a.example", "a.example", "[::1]"}
		}},
		{"no replay_set_cookie", `"replay_headers": ["x-trace"]`, func(r *Route) (any, any) { return r.ReplayHeader("set-cookie"), false }},
		{"scope metadata only", `"scope": {"metadata": {"filter": "f", "path": ["k"]}}`, func(r *Route) (any, any) { return r.Scope.Headers == nil, true }},
		{"scope unkeyed by default", `"ttl": "24h"`, func(r *Route) (any, any) { return r.Scope.HMACKey == nil && r.Scope.HMACKeyEnv == "", true }},
		{"scope hmac inline", `"scope": {"headers": ["a"], "hmac_key": "0123456789abcdef0123456789abcdef"}`, func(r *Route) (any, any) {
			return string(r.Scope.HMACKey), "0123456789abcdef0123456789abcdef"
		}},
		{"lock: no attempt header, no target", `"on_indeterminate": "lock"`, func(r *Route) (any, any) {
			return [2]string{r.AttemptHeader, r.ReconcileTarget}, [2]string{"", ""}
		}},
		{"release: no attempt header", `"on_indeterminate": "release"`, func(r *Route) (any, any) { return r.AttemptHeader, "" }},
		{"reconcile: default attempt header and target", `"on_indeterminate": "reconcile"`, func(r *Route) (any, any) {
			return []any{r.OnIndeterminate, r.AttemptHeader, r.ReconcileTarget}, []any{Reconcile, "idemgate-attempt", ""}
		}},
		{"reconcile: target and attempt header, lowered", `"on_indeterminate": "reconcile", "reconcile_target": "payments_v2-EU", "attempt_header": "X-Payment-Attempt"`, func(r *Route) (any, any) {
			return [2]string{r.AttemptHeader, r.ReconcileTarget}, [2]string{"x-payment-attempt", "payments_v2-EU"}
		}},
		{"reconcile: 64-byte target", `"on_indeterminate": "reconcile", "reconcile_target": "` + strings.Repeat("t", 64) + `"`, func(r *Route) (any, any) {
			return r.ReconcileTarget, strings.Repeat("t", 64)
		}},
		{"reconcile: target named default", `"on_indeterminate": "reconcile", "reconcile_target": "default"`, func(r *Route) (any, any) { return r.ReconcileTarget, "default" }},
		{"reconcile: a renamed key header frees the default name", `"key_header": "X-Key", "on_indeterminate": "reconcile", "attempt_header": "Idempotency-Key"`, func(r *Route) (any, any) {
			return [2]string{r.KeyHeader, r.AttemptHeader}, [2]string{"x-key", "idempotency-key"}
		}},
		{"scope hmac env", `"scope": {"headers": ["a"], "hmac_key_env": "IDEMGATE_SCOPE_KEY"}`, func(r *Route) (any, any) {
			return r.Scope.HMACKeyEnv + fmt.Sprint(r.Scope.HMACKey == nil), "IDEMGATE_SCOPE_KEY" + "true"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(withRoute(tt.route)))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tt.check(&c.Routes[0]); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// withRoute is minimal with extra members in its route (a later "scope"
// replaces the default one rather than duplicating it).
func withRoute(extra string) string {
	scope := `"scope": {"headers": ["authorization"]}, `
	if strings.Contains(extra, `"scope"`) {
		scope = ""
	}
	return `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"},
	  "routes": [{"match": {"path": "/p"}, ` + scope + extra + `}]}`
}

func withCP(cp string) string {
	return `{"control_plane": {` + cp + `}, "routes": [{"match": {"path": "/p"}, "scope": {"headers": ["authorization"]}}]}`
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, config, want string
	}{
		{"empty", ``, "the configuration is empty"},
		{"blank", " \n\t", "the configuration is empty"},
		{"not JSON", `{"routes": [}`, "not JSON"},
		{"truncated", `{"routes": [`, "not JSON"},
		{"array", `[]`, "want an object, got an array"},
		{"string", `"x"`, "want an object, got a string"},
		{"empty object", `{}`, "control_plane: required"},
		{"null", `null`, "null is not allowed"},
		{"unknown top-level", `{"route": []}`, "route: unknown field"},
		{"wrong case", `{"Routes": []}`, "Routes: unknown field"},
		{"duplicate", `{"routes": [], "routes": []}`, "routes: appears twice"},
		{"no routes", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}}`, "routes: at least one route is required"},
		{"empty routes", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": []}`, "routes: at least one route is required"},

		{"no cluster", withCP(`"authority": "a", "token": "t"`), "control_plane.cluster: required"},
		{"no authority", withCP(`"cluster": "c", "token": "t"`), "control_plane.authority: required"},
		{"authority with path", withCP(`"cluster": "c", "authority": "a/b", "token": "t"`), "control_plane.authority: want host or host:port"},
		{"no token", withCP(`"cluster": "c", "authority": "a"`), "control_plane.token: required: give token_env"},
		{"token and insecure", withCP(`"cluster": "c", "authority": "a", "token": "t", "insecure_no_auth": true`), "control_plane.insecure_no_auth: contradicts"},
		{"token env and insecure", withCP(`"cluster": "c", "authority": "a", "token_env": "T", "insecure_no_auth": true`), "control_plane.insecure_no_auth: contradicts"},
		{"token and token env", withCP(`"cluster": "c", "authority": "a", "token": "t", "token_env": "T"`), "control_plane.token: give token_env or token, not both"},
		{"token env bad name", withCP(`"cluster": "c", "authority": "a", "token_env": "MY-TOKEN"`), "control_plane.token_env: want an environment variable name"},
		{"token env empty name", withCP(`"cluster": "c", "authority": "a", "token_env": ""`), "control_plane.token_env: want an environment variable name"},
		{"empty token", withCP(`"cluster": "c", "authority": "a", "token": ""`), "control_plane.token: required"},
		{"token with newline", withCP(`"cluster": "c", "authority": "a", "token": "t\r\nx: y"`), "control_plane.token: byte 1 is not visible ASCII"},
		{"timeout bad", withCP(`"cluster": "c", "authority": "a", "token": "t", "timeout": "soon"`), `control_plane.timeout: want a duration`},
		{"timeout number", withCP(`"cluster": "c", "authority": "a", "token": "t", "timeout": 250`), `control_plane.timeout: want a string, got a number`},
		{"timeout too long", withCP(`"cluster": "c", "authority": "a", "token": "t", "timeout": "11s"`), "control_plane.timeout: 11s is outside 1ms to 10s"},
		{"timeout zero", withCP(`"cluster": "c", "authority": "a", "token": "t", "timeout": "0s"`), "control_plane.timeout: 0s is outside"},
		{"typo in control plane", withCP(`"cluster": "c", "authority": "a", "tokne": "t"`), "control_plane.tokne: unknown field"},

		{"route typo", withRoute(`"requird": false`), "routes[0].requird: unknown field"},
		{"route not object", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [1]}`, "routes[0]: want an object, got a number"},
		{"second route named", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/a"}, "scope": {"headers": ["a"]}}, {"match": {"path": "/b"}, "scope": {"headers": ["a"]}, "max_body_bytes": 0}]}`, "routes[1].max_body_bytes: must be > 0"},
		{"no match", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"scope": {"headers": ["a"]}}]}`, "routes[0].match: required"},
		{"no path", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {}, "scope": {"headers": ["a"]}}]}`, "routes[0].match: want one of path, prefix, glob and route_name, got none"},
		{"path and prefix", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/a", "prefix": "/a"}, "scope": {"headers": ["a"]}}]}`, "got 2"},
		{"relative path", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"prefix": "a"}, "scope": {"headers": ["a"]}}]}`, "routes[0].match.prefix: must start with '/'"},
		{"query in path", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/a?x=1"}, "scope": {"headers": ["a"]}}]}`, "routes[0].match.path: matches the path only"},
		{"glob ?", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"glob": "/a/?"}, "scope": {"headers": ["a"]}}]}`, `routes[0].match.glob: '?' at byte 3`},
		{"glob ** inside", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"glob": "/a/**/b"}, "scope": {"headers": ["a"]}}]}`, `routes[0].match.glob: "**" is allowed only as the last segment`},
		{"host with port", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"host": "a.com:443", "path": "/"}, "scope": {"headers": ["a"]}}]}`, "routes[0].match.host: leave out the port"},
		{"host inner wildcard", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"host": "a.*.com", "path": "/"}, "scope": {"headers": ["a"]}}]}`, "routes[0].match.host: '*' is not allowed"},
		{"lower-case method", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/", "methods": ["post"]}, "scope": {"headers": ["a"]}}]}`, `routes[0].match.methods[0]: want an upper-case method`},
		{"empty methods", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/", "methods": []}, "scope": {"headers": ["a"]}}]}`, `routes[0].match.methods: must not be empty`},
		{"duplicate method", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/", "methods": ["POST", "POST"]}, "scope": {"headers": ["a"]}}]}`, `routes[0].match.methods[1]: "POST" appears twice`},
		{"method not string", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/", "methods": [1]}, "scope": {"headers": ["a"]}}]}`, `routes[0].match.methods[0]: want a string, got a number`},

		{"no scope", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"path": "/"}}]}`, "routes[0].scope: required"},
		{"empty scope", withRoute(`"scope": {}`), "routes[0].scope: needs headers, metadata or both"},
		{"empty scope headers", withRoute(`"scope": {"headers": []}`), "routes[0].scope.headers: must not be empty"},
		{"bad scope header", withRoute(`"scope": {"headers": ["x api key"]}`), `routes[0].scope.headers[0]: want an HTTP header name`},
		{"metadata without filter", withRoute(`"scope": {"metadata": {"path": ["a"]}}`), "routes[0].scope.metadata.filter: required"},
		{"metadata without path", withRoute(`"scope": {"metadata": {"filter": "f"}}`), "routes[0].scope.metadata.path: required"},
		{"metadata empty key", withRoute(`"scope": {"metadata": {"filter": "f", "path": ["a", ""]}}`), "routes[0].scope.metadata.path[1]: must not be empty"},
		{"hmac key and env", withRoute(`"scope": {"headers": ["a"], "hmac_key_env": "K", "hmac_key": "0123456789abcdef0123456789abcdef"}`), "routes[0].scope.hmac_key: give hmac_key_env or hmac_key, not both"},
		{"hmac env empty", withRoute(`"scope": {"headers": ["a"], "hmac_key_env": ""}`), "routes[0].scope.hmac_key_env: want an environment variable name"},
		{"hmac env bad name", withRoute(`"scope": {"headers": ["a"], "hmac_key_env": "1KEY"}`), "routes[0].scope.hmac_key_env: want an environment variable name"},
		{"hmac env with =", withRoute(`"scope": {"headers": ["a"], "hmac_key_env": "K=V"}`), "routes[0].scope.hmac_key_env: want an environment variable name"},
		{"hmac key empty", withRoute(`"scope": {"headers": ["a"], "hmac_key": ""}`), "routes[0].scope.hmac_key: the key is empty"},
		{"hmac key short", withRoute(`"scope": {"headers": ["a"], "hmac_key": "0123456789abcdef0123456789abcde"}`), "routes[0].scope.hmac_key: the key is 31 bytes, want at least 32"},
		{"hmac key number", withRoute(`"scope": {"headers": ["a"], "hmac_key": 12}`), "routes[0].scope.hmac_key: want a string"},
		{"hmac alone", withRoute(`"scope": {"hmac_key_env": "K"}`), "routes[0].scope: needs headers, metadata or both"},

		{"key header", withRoute(`"key_header": "Idempotency Key"`), "routes[0].key_header: want an HTTP header name"},
		{"key format", withRoute(`"key_format": "sf_string"`), `routes[0].key_format: want "any" or "sf-string", got "sf_string"`},
		{"required string", withRoute(`"required": "true"`), "routes[0].required: want true or false, got a string"},
		{"max key 0", withRoute(`"max_key_length": 0`), "routes[0].max_key_length: must be 1 to 255, got 0"},
		{"max key 256", withRoute(`"max_key_length": 256`), "routes[0].max_key_length: must be 1 to 255, got 256"},
		{"max key float", withRoute(`"max_key_length": 1.5`), "routes[0].max_key_length: want an integer that fits in 64 bits, got 1.5"},
		{"max key exponent", withRoute(`"max_key_length": 1e2`), "routes[0].max_key_length: want an integer"},
		{"max body huge", withRoute(`"max_body_bytes": 99999999999999999999`), "routes[0].max_body_bytes: want an integer that fits in 64 bits"},
		{"max body negative", withRoute(`"max_body_bytes": -1`), "routes[0].max_body_bytes: must be > 0, got -1"},
		{"max body over 64 MiB", withRoute(`"max_body_bytes": 67108865`), "routes[0].max_body_bytes: must be at most 67108864"},
		{"max stored 0", withRoute(`"max_stored_response_bytes": 0`), "routes[0].max_stored_response_bytes: must be 1 to 67108864 (64 MiB), got 0"},
		{"max stored over 64 MiB", withRoute(`"max_stored_response_bytes": 67108865`), "routes[0].max_stored_response_bytes: must be 1 to 67108864"},
		{"max stored string", withRoute(`"max_stored_response_bytes": "1MiB"`), "routes[0].max_stored_response_bytes: want an integer"},
		{"edge ttl negative", withRoute(`"edge_cache_ttl": "-1s"`), "routes[0].edge_cache_ttl: -1s is outside 0s to 1h0m0s"},
		{"edge ttl long", withRoute(`"edge_cache_ttl": "2h"`), "routes[0].edge_cache_ttl: 2h0m0s is outside 0s to 1h0m0s"},
		{"edge entry 0", withRoute(`"edge_cache_max_entry_bytes": 0`), "routes[0].edge_cache_max_entry_bytes: must be 1 to 16777216 (16 MiB), got 0"},
		{"edge slots negative", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "edge_cache_slots": -1, "routes": [{"match": {"path": "/"}, "scope": {"headers": ["a"]}}]}`, "edge_cache_slots: must be 0 (off) to 1048576, got -1"},
		{"edge slots huge", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "edge_cache_slots": 1048577, "routes": [{"match": {"path": "/"}, "scope": {"headers": ["a"]}}]}`, "edge_cache_slots: must be 0 (off) to 1048576"},
		{"max held small", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "max_held_bytes": 65535, "routes": [{"match": {"path": "/"}, "scope": {"headers": ["a"]}}]}`, "max_held_bytes: must be 65536 (64 KiB) to 1073741824 (1 GiB), got 65535"},
		{"max held huge", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "max_held_bytes": 1073741825, "routes": [{"match": {"path": "/"}, "scope": {"headers": ["a"]}}]}`, "max_held_bytes: must be 65536 (64 KiB) to 1073741824 (1 GiB), got 1073741825"},
		{"max held string", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "max_held_bytes": "16MiB", "routes": [{"match": {"path": "/"}, "scope": {"headers": ["a"]}}]}`, "max_held_bytes: want an integer, got a string"},
		{"fingerprint path", withRoute(`"fingerprint": {"include": ["a.*"]}`), `routes[0].fingerprint.include[0]: include path "a.*"`},
		{"fingerprint exclude", withRoute(`"fingerprint": {"exclude": ["a..b"]}`), `routes[0].fingerprint.exclude[0]: exclude path "a..b": empty path component`},
		{"fingerprint header", withRoute(`"fingerprint": {"headers": ["a b"]}`), `routes[0].fingerprint.headers[0]: want an HTTP header name`},
		{"fingerprint unknown", withRoute(`"fingerprint": {"fields": ["a"]}`), `routes[0].fingerprint.fields: unknown field`},
		{"ttl bad", withRoute(`"ttl": "1d"`), `routes[0].ttl: want a duration`},
		{"ttl too long", withRoute(`"ttl": "9000h"`), `routes[0].ttl: 9000h0m0s is outside 1s to 8784h0m0s`},
		{"ttl one millisecond over the maximum", withRoute(`"ttl": "8784h0m0.001s"`), `routes[0].ttl: 8784h0m0.001s is outside 1s to 8784h0m0s`},
		{"lease negative", withRoute(`"lease": "-1s"`), `routes[0].lease: -1s is outside`},
		{"lease over ttl", withRoute(`"ttl": "1m", "lease": "2m"`), `routes[0].lease: 2m0s is longer than the ttl 1m0s`},
		{"lease short", withRoute(`"lease": "500ms"`), `routes[0].lease: 500ms is outside 1s`},
		{"wait timeout without wait", withRoute(`"wait_timeout": "1s"`), `routes[0].wait_timeout: applies only with on_in_progress: "wait"`},
		{"wait timeout over lease", withRoute(`"on_in_progress": "wait", "lease": "5s", "wait_timeout": "6s"`), `routes[0].wait_timeout: 6s is outside 1ms to 5s`},
		{"on in progress", withRoute(`"on_in_progress": "block"`), `routes[0].on_in_progress: want "conflict" or "wait"`},
		{"on duplicate", withRoute(`"on_duplicate": "Replay"`), `routes[0].on_duplicate: want "replay" or "reject", got "Replay"`},
		{"failure mode", withRoute(`"failure_mode": "fail-open"`), `routes[0].failure_mode: want "closed" or "open"`},
		{"on indeterminate", withRoute(`"on_indeterminate": "retry"`), `routes[0].on_indeterminate: want "lock" or "release" or "reconcile", got "retry"`},
		{"on indeterminate upper case", withRoute(`"on_indeterminate": "Reconcile"`), `routes[0].on_indeterminate: want "lock" or "release" or "reconcile", got "Reconcile"`},
		{"target without reconcile", withRoute(`"reconcile_target": "payments"`), `routes[0].reconcile_target: applies only with on_indeterminate: "reconcile"`},
		{"target with release", withRoute(`"on_indeterminate": "release", "reconcile_target": "payments"`), `routes[0].reconcile_target: applies only with on_indeterminate: "reconcile"`},
		{"attempt header without reconcile", withRoute(`"attempt_header": "x-attempt"`), `routes[0].attempt_header: applies only with on_indeterminate: "reconcile"`},
		{"attempt header with lock", withRoute(`"on_indeterminate": "lock", "attempt_header": "idemgate-attempt"`), `routes[0].attempt_header: applies only with on_indeterminate: "reconcile"`},
		{"target empty", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": ""`), `routes[0].reconcile_target: want a target name of 1 to 64 letters, digits, '_' or '-'`},
		{"target 65 bytes", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": "` + strings.Repeat("t", 65) + `"`), `routes[0].reconcile_target: want a target name of 1 to 64`},
		{"target with a dot", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": "pay.eu"`), `routes[0].reconcile_target: want a target name of 1 to 64 letters, digits, '_' or '-' (a --reconcile-url NAME of the control plane), got "pay.eu"`},
		{"target with a space", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": "pay eu"`), `routes[0].reconcile_target: want a target name`},
		{"target not ASCII", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": "paiement-é"`), `routes[0].reconcile_target: want a target name`},
		{"target with a slash", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": "a/b"`), `routes[0].reconcile_target: want a target name`},
		{"target number", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": 1`), `routes[0].reconcile_target: want a string, got a number`},
		{"target null", withRoute(`"on_indeterminate": "reconcile", "reconcile_target": null`), `routes[0].reconcile_target: null is not allowed`},
		{"attempt header bad", withRoute(`"on_indeterminate": "reconcile", "attempt_header": "idemgate attempt"`), `routes[0].attempt_header: want an HTTP header name, got "idemgate attempt"`},
		// Failed open, a request goes upstream without its attempt id while the
		// reservation its lost reserve made may stand: the lookup would ask
		// about an attempt the upstream never saw and release the key on its
		// (true) "not executed", so a retry would run the operation again.
		{"reconcile failed open", withRoute(`"on_indeterminate": "reconcile", "failure_mode": "open"`), `routes[0].failure_mode: "open" cannot go with on_indeterminate: "reconcile"`},
		{"attempt header empty", withRoute(`"on_indeterminate": "reconcile", "attempt_header": ""`), `routes[0].attempt_header: want an HTTP header name`},
		{"attempt header number", withRoute(`"on_indeterminate": "reconcile", "attempt_header": 5`), `routes[0].attempt_header: want a string, got a number`},
		{"attempt header pseudo", withRoute(`"on_indeterminate": "reconcile", "attempt_header": ":authority"`), `routes[0].attempt_header: want a request header name, not a pseudo-header, got ":authority"`},
		{"attempt header is the key header", withRoute(`"on_indeterminate": "reconcile", "attempt_header": "Idempotency-Key"`), `routes[0].attempt_header: idempotency-key is the key header`},
		{"attempt header is a renamed key header", withRoute(`"on_indeterminate": "reconcile", "key_header": "X-Key", "attempt_header": "x-KEY"`), `routes[0].attempt_header: x-key is the key header`},
		{"default attempt header is the key header", withRoute(`"on_indeterminate": "reconcile", "key_header": "Idemgate-Attempt"`), `routes[0].attempt_header: idemgate-attempt (the default) is the key header; name another attempt_header`},
		{"attempt header is a scope header", withRoute(`"on_indeterminate": "reconcile", "scope": {"headers": ["x-api-key", "x-tenant"]}, "attempt_header": "X-Tenant"`), `routes[0].attempt_header: x-tenant is a scope header`},
		{"default attempt header is a scope header", withRoute(`"on_indeterminate": "reconcile", "scope": {"headers": ["idemgate-attempt"]}`), `routes[0].attempt_header: idemgate-attempt (the default) is a scope header`},
		{"attempt header is fingerprinted", withRoute(`"on_indeterminate": "reconcile", "fingerprint": {"headers": ["x-attempt"]}, "attempt_header": "X-Attempt"`), `routes[0].attempt_header: x-attempt counts in the fingerprint (fingerprint.headers)`},
		{"attempt header is framing", withRoute(`"on_indeterminate": "reconcile", "attempt_header": "Content-Length"`), `routes[0].attempt_header: content-length is a header requests need`},
		{"attempt header is a credential", withRoute(`"on_indeterminate": "reconcile", "scope": {"headers": ["x-api-key"]}, "attempt_header": "Authorization"`), `routes[0].attempt_header: authorization is a header requests need`},
		{"attempt header is the host", withRoute(`"on_indeterminate": "reconcile", "attempt_header": "host"`), `routes[0].attempt_header: host is a header requests need`},
		{"status class", withRoute(`"release_statuses": ["6xx"]`), `routes[0].release_statuses[0]: "6xx": the class must be`},
		{"status 1xx", withRoute(`"release_statuses": ["5xx", "100"]`), `routes[0].release_statuses[1]: "100": a final status is 200 to 599`},
		{"status range empty", withRoute(`"release_statuses": ["504-500"]`), `routes[0].release_statuses[0]: "504-500": the range is empty`},
		{"status word", withRoute(`"release_statuses": ["server errors"]`), `routes[0].release_statuses[0]: "server errors": want a status`},
		{"status number", withRoute(`"release_statuses": [503]`), `routes[0].release_statuses[0]: want a string, got a number`},
		{"statuses empty", withRoute(`"store_statuses": []`), `routes[0].store_statuses: must not be empty`},
		{"statuses overlap", withRoute(`"store_statuses": ["2xx", "3xx", "4xx"], "release_statuses": ["5xx", "429"]`), `routes[0].release_statuses: 429 is also in store_statuses`},
		{"indeterminate overlaps release", withRoute(`"release_statuses": ["5xx"], "indeterminate_statuses": ["503"]`), `routes[0].indeterminate_statuses: 503 is also in release_statuses`},
		{"indeterminate overlaps store", withRoute(`"store_statuses": ["500-502"], "indeterminate_statuses": ["5xx"]`), `routes[0].indeterminate_statuses: 500 is also in store_statuses`},
		// Shared only at the ends of the range of final statuses.
		{"overlap only at 599", withRoute(`"release_statuses": ["429", "599"], "indeterminate_statuses": ["502", "599"]`), `routes[0].indeterminate_statuses: 599 is also in release_statuses`},
		{"overlap only at 200", withRoute(`"store_statuses": ["200"], "release_statuses": ["200", "429"]`), `routes[0].release_statuses: 200 is also in store_statuses`},
		{"indeterminate empty", withRoute(`"indeterminate_statuses": []`), `routes[0].indeterminate_statuses: must not be empty`},
		{"indeterminate 600", withRoute(`"indeterminate_statuses": ["600"]`), `routes[0].indeterminate_statuses[0]: "600": a final status is 200 to 599`},
		{"not executed pseudo", withRoute(`"not_executed_header": ":status"`), `routes[0].not_executed_header: want a response header name, not a pseudo-header`},
		{"not executed bad", withRoute(`"not_executed_header": "not executed"`), `routes[0].not_executed_header: want an HTTP header name`},
		{"not executed empty", withRoute(`"not_executed_header": ""`), `routes[0].not_executed_header: want an HTTP header name`},
		{"not executed framing", withRoute(`"not_executed_header": "Content-Length"`), `routes[0].not_executed_header: content-length is a header responses need`},
		{"not executed replayed", withRoute(`"not_executed_header": "Location"`), `routes[0].not_executed_header: location is a replayed header`},
		{"not executed replayed by config", withRoute(`"replay_headers": ["x-done"], "not_executed_header": "X-Done"`), `routes[0].not_executed_header: x-done is a replayed header`},
		{"allow anonymous string", withRoute(`"allow_anonymous": "yes"`), `routes[0].allow_anonymous: want true or false`},
		{"host aliases empty", withRoute(`"host_aliases": []`), `routes[0].host_aliases: must not be empty`},
		{"host alias without aliases", withRoute(`"host_aliases": [{"host": "a.example"}]`), `routes[0].host_aliases[0].aliases: required`},
		{"host alias wildcard", withRoute(`"host_aliases": [{"host": "*.example", "aliases": ["b"]}]`), `routes[0].host_aliases[0].host: want an exact host, not a wildcard`},
		{"host alias bad port", withRoute(`"host_aliases": [{"host": "a", "aliases": ["b:0"]}]`), `routes[0].host_aliases[0].aliases[0]: want host or host:port`},
		{"host alias bad port text", withRoute(`"host_aliases": [{"host": "a", "aliases": ["b:https"]}]`), `routes[0].host_aliases[0].aliases[0]: want host or host:port`},
		{"host alias path", withRoute(`"host_aliases": [{"host": "a", "aliases": ["b/c"]}]`), `routes[0].host_aliases[0].aliases[0]: '/' is not allowed`},
		{"host alias of itself", withRoute(`"host_aliases": [{"host": "a", "aliases": ["A:443"]}]`), `routes[0].host_aliases[0].aliases[0]: "a" is a host of host_aliases itself`},
		{"host alias chain", withRoute(`"host_aliases": [{"host": "a", "aliases": ["b"]}, {"host": "c", "aliases": ["a"]}]`), `routes[0].host_aliases[1].aliases[0]: "a" is a host of host_aliases itself`},
		{"host alias twice", withRoute(`"host_aliases": [{"host": "a", "aliases": ["b"]}, {"host": "c", "aliases": ["B:80"]}]`), `routes[0].host_aliases[1].aliases[0]: "b" is already an alias of "a"`},
		{"host aliases host twice", withRoute(`"host_aliases": [{"host": "a", "aliases": ["b"]}, {"host": "A", "aliases": ["c"]}]`), `routes[0].host_aliases[1].host: "a" appears twice`},
		{"host alias outside match.host", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"host": "*.example.com", "path": "/"}, "scope": {"headers": ["a"]}, "host_aliases": [{"host": "a.example.com", "aliases": ["b.example.com:8080", "b.example.org"]}]}]}`, `routes[0].host_aliases[0].aliases[1]: "b.example.org" is outside match.host "*.example.com"`},
		{"host alias host outside match.host", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [{"match": {"host": "a.example.com", "path": "/"}, "scope": {"headers": ["a"]}, "host_aliases": [{"host": "b.example.com", "aliases": ["a.example.com:8080"]}]}]}`, `routes[0].host_aliases[0].host: "b.example.com" is outside match.host "a.example.com"`},
		{"host alias unknown field", withRoute(`"host_aliases": [{"host": "a", "alias": ["b"]}]`), `routes[0].host_aliases[0].alias: unknown field`},
		{"replay set-cookie", withRoute(`"replay_headers": ["Set-Cookie"]`), `routes[0].replay_headers[0]: set-cookie is replayed only with replay_set_cookie: true`},
		{"replay hop-by-hop", withRoute(`"replay_headers": ["x-a", "Transfer-Encoding"]`), `routes[0].replay_headers[1]: transfer-encoding is never replayed`},
		{"replay duplicate", withRoute(`"replay_headers": ["x-a", "X-A"]`), `routes[0].replay_headers[1]: "X-A" appears twice`},
		{"null field", withRoute(`"ttl": null`), `routes[0].ttl: null is not allowed`},
		{"invalid UTF-8", withRoute(`"scope": {"metadata": {"filter": "f` + "\xff" + `", "path": ["a"]}}`), `not UTF-8 at byte`},
		{"escaped duplicate", withRoute(`"ttl": "1h", "t\u0074l": "2h"`), `routes[0].ttl: appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.config))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFieldErrorPath(t *testing.T) {
	_, err := Parse([]byte(withRoute(`"max_body_bytes": 0`)))
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError", err)
	}
	if got, want := fe.Path, "routes[0].max_body_bytes"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	if got, want := err.Error(), "invalid idempotency configuration: routes[0].max_body_bytes: must be > 0, got 0"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

// Hostile nesting must fail cleanly, also compiled to Wasm where the stack
// is small.
func TestParseDeepNesting(t *testing.T) {
	deep := strings.Repeat("[", 1<<20)
	nested := strings.Repeat("[", 9000) + strings.Repeat("]", 9000)
	for _, tt := range []struct{ name, config, want string }{
		{"unterminated", deep, "not JSON"},
		{"at top", nested, "want an object, got an array"},
		{"in routes", `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [` + nested + `]}`, "routes[0]: want an object, got an array"},
		{"in methods", withRoute(`"scope": {"headers": [` + nested + `]}`), "routes[0].scope.headers[0]: want a string, got an array"},
		{"unknown field", `{"x": ` + nested + `}`, "x: unknown field"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.config))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTokenNotPrinted(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c.ControlPlane), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", *c)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("token printed: %s", s)
		}
	}
}

// TestControlPlaneString: a set token shows as <redacted>, so an operator
// reading a logged configuration can tell a missing token from a hidden one.
func TestControlPlaneString(t *testing.T) {
	for _, tt := range []struct {
		cp   ControlPlane
		want string
	}{
		{ControlPlane{Cluster: "c", Token: "s3cret"}, "Token:<redacted> "},
		{ControlPlane{Cluster: "c", TokenEnv: "IDEM_TOKEN"}, "Token: TokenEnv:IDEM_TOKEN "},
	} {
		if got := tt.cp.String(); !strings.Contains(got, tt.want) || strings.Contains(got, "s3cret") {
			t.Errorf("String() = %s, want it to hold %q and no token", got, tt.want)
		}
	}
}

// TestResolveEnv: hmac_key_env is read at plugin start; a variable that is
// unset, empty or short fails it, naming the field and never the value.
func TestResolveEnv(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef-from-env"
	config := `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [
	  {"match": {"path": "/a"}, "scope": {"headers": ["a"]}},
	  {"match": {"path": "/b"}, "scope": {"headers": ["a"], "hmac_key_env": "SCOPE_KEY"}}]}`
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // "" means success
	}{
		{"set", map[string]string{"SCOPE_KEY": key}, ""},
		{"unset", nil, "routes[1].scope.hmac_key_env: environment variable SCOPE_KEY is not set in the Wasm VM"},
		{"empty", map[string]string{"SCOPE_KEY": ""}, "routes[1].scope.hmac_key_env: environment variable SCOPE_KEY: the key is empty"},
		{"short", map[string]string{"SCOPE_KEY": "short-secret"}, "routes[1].scope.hmac_key_env: environment variable SCOPE_KEY: the key is 12 bytes, want at least 32"},
		{"other variable", map[string]string{"SCOPE_KEY_2": key}, "not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(config))
			if err != nil {
				t.Fatal(err)
			}
			err = c.ResolveEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ResolveEnv() = %v, want an ErrInvalid containing %q", err, tt.wantErr)
				}
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Path != "routes[1].scope.hmac_key_env" {
					t.Errorf("field error %v, want the path routes[1].scope.hmac_key_env", fe)
				}
				if v := tt.env["SCOPE_KEY"]; v != "" && strings.Contains(err.Error(), v) {
					t.Errorf("error %q contains the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(c.Routes[1].Scope.HMACKey); got != key {
				t.Errorf("route 1 key = %q, want the variable's value", got)
			}
			if c.Routes[0].Scope.HMACKey != nil {
				t.Errorf("route 0 has a key; it names none")
			}
		})
	}
}

// TestResolveTokenEnv: control_plane.token_env is read at plugin start;
// a variable that is unset, empty or not visible ASCII fails it, naming
// the field and never the value.
func TestResolveTokenEnv(t *testing.T) {
	config := withCP(`"cluster": "c", "authority": "a", "token_env": "FILTER_TOKEN"`)
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // "" means success
	}{
		{"set", map[string]string{"FILTER_TOKEN": "tok-from-env"}, ""},
		{"unset", nil, "control_plane.token_env: environment variable FILTER_TOKEN is not set in the Wasm VM"},
		{"empty", map[string]string{"FILTER_TOKEN": ""}, "control_plane.token_env: environment variable FILTER_TOKEN is empty"},
		{"newline", map[string]string{"FILTER_TOKEN": "tok\r\nx: y"}, "control_plane.token_env: environment variable FILTER_TOKEN: byte 3 is not visible ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(config))
			if err != nil {
				t.Fatal(err)
			}
			if c.ControlPlane.Token != "" || c.ControlPlane.TokenEnv != "FILTER_TOKEN" {
				t.Fatalf("control plane %v before ResolveEnv, want no token and token_env FILTER_TOKEN", c.ControlPlane)
			}
			err = c.ResolveEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if tt.wantErr == "" {
				if err != nil || c.ControlPlane.Token != "tok-from-env" {
					t.Fatalf("ResolveEnv() = %v, token %q; want the variable's value", err, c.ControlPlane.Token)
				}
				if s := fmt.Sprintf("%v %+v", c.ControlPlane, c); strings.Contains(s, "tok-from-env") {
					t.Errorf("token printed: %s", s)
				}
				return
			}
			var fe *FieldError
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Path != "control_plane.token_env" {
				t.Fatalf("ResolveEnv() = %v, want an ErrInvalid field error containing %q", err, tt.wantErr)
			}
			if v := tt.env["FILTER_TOKEN"]; v != "" && strings.Contains(err.Error(), v) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

// TestSecretRedacted: formatting a route does not print its scope key.
func TestSecretRedacted(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	c, err := Parse([]byte(withRoute(`"scope": {"headers": ["a"], "hmac_key": "` + key + `"}`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(verb, c.Routes[0]); strings.Contains(out, key) || !strings.Contains(out, "<redacted>") {
			t.Errorf("%s of the route: %s", verb, out)
		}
	}
}

// TestParseBounds: each numeric bound of a route is inclusive at both ends
// and refused one past them; an off-by-one here lets a route promise what
// the filter or the control plane then refuses.
func TestParseBounds(t *testing.T) {
	for _, tt := range []struct {
		field  string
		lo, hi int64
	}{
		{"max_key_length", 1, MaxKeyLength},
		{"max_body_bytes", 1, MaxMaxBodyBytes},
		{"max_stored_response_bytes", 1, MaxMaxStoredResponseBytes},
		{"edge_cache_max_entry_bytes", 1, MaxEdgeCacheMaxEntryBytes},
	} {
		for _, c := range []struct {
			n  int64
			ok bool
		}{{tt.lo, true}, {tt.hi, true}, {tt.hi + 1, false}, {tt.lo - 1, false}} {
			_, err := Parse([]byte(withRoute(fmt.Sprintf(`"%s": %d`, tt.field, c.n))))
			if (err == nil) != c.ok {
				t.Errorf("%s = %d: err = %v, want ok=%v", tt.field, c.n, err, c.ok)
			}
		}
	}
	// A host alias's port: 1 to 65535.
	for _, c := range []struct {
		alias string
		ok    bool
	}{{"a.internal:1", true}, {"a.internal:65535", true}, {"a.internal:65536", false}, {"a.internal:0", false}} {
		_, err := Parse([]byte(withRoute(`"host_aliases": [{"host": "a.example", "aliases": ["` + c.alias + `"]}]`)))
		if (err == nil) != c.ok {
			t.Errorf("alias %s: err = %v, want ok=%v", c.alias, err, c.ok)
		}
	}
}
