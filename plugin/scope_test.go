//go:build !wasm

package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// wantScope recomputes the documented scope framing (scope.go) for one
// scope header and no metadata, independently of scopeOf.
func wantScope(name string, values ...string) string {
	sum := sha256.Sum256(scopeFraming(name, values...))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// wantHMACScope is wantScope keyed with HMAC-SHA-256.
func wantHMACScope(key, name string, values ...string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(scopeFraming(name, values...))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func scopeFraming(name string, values ...string) []byte {
	var b []byte
	count := func(n int) { b = binary.BigEndian.AppendUint64(b, uint64(n)) }
	field := func(s string) { count(len(s)); b = append(b, s...) }
	field("idemgate-scope-v1")
	count(1)
	field(name)
	count(len(values))
	for _, v := range values {
		field(v)
	}
	count(0)
	return b
}

// Known vectors of the framing: computed once outside Go (Python's
// hashlib and hmac) and fixed here, so that a change of the framing, the
// prefix or the keying shows — a changed scope orphans every record.
const (
	testScopeKey        = "0123456789abcdef0123456789abcdef" // 32 bytes
	vectorAliceSHA256   = "sha256:0ba72365207faee71dc06ccd4865b74e8dacb38cdd360881ef84aab99f096ade"
	vectorAliceHMAC     = "hmac-sha256:5d23f218b1af7ca34637bb9d09881c12956632daad211e8fe5840abd3ed2bd97"
	vectorAnonymousHMAC = "hmac-sha256:80796ad8f691c3049141dddc8fa839c6eacafa17339bc4c822422c8e4f6b17da"
)

// TestScopeVectors: scopeOf (headers only: no host call) against the
// fixed vectors and the independent recomputation.
func TestScopeVectors(t *testing.T) {
	alice := [][2]string{{":path", "/payments"}, {"Authorization", " Bearer alice\t"}}
	hdr := policy.Scope{Headers: []string{"authorization"}}
	keyed := policy.Scope{Headers: []string{"authorization"}, HMACKey: policy.Secret(testScopeKey)}
	other := policy.Scope{Headers: []string{"authorization"}, HMACKey: policy.Secret(strings.Repeat("k", 32))}
	two := policy.Scope{Headers: []string{"authorization", "x-tenant"}}
	const noAuth = "value for the authorization header"
	tests := []struct {
		name    string
		scope   policy.Scope
		headers [][2]string
		want    string
		missing string
	}{
		{"sha256", hdr, alice, vectorAliceSHA256, ""},
		{"hmac", keyed, alice, vectorAliceHMAC, ""},
		{"hmac recomputed", keyed, alice, wantHMACScope(testScopeKey, "authorization", "Bearer alice"), ""},
		{"hmac anonymous", keyed, nil, vectorAnonymousHMAC, noAuth},
		{"empty value", hdr, [][2]string{{"authorization", " \t"}}, wantScope("authorization", ""), noAuth},
		{"an empty and a real value", hdr, [][2]string{{"authorization", ""}, {"authorization", "Bearer alice"}}, wantScope("authorization", "", "Bearer alice"), ""},
		// Strict: one source missing is enough to refuse.
		{"tenant without credential", two, [][2]string{{"x-tenant", "acme"}}, "", noAuth},
		{"credential without tenant", two, [][2]string{{"authorization", "Bearer alice"}}, "", "value for the x-tenant header"},
	}
	for _, tt := range tests {
		got, missing := scopeOf(tt.scope, tt.headers)
		if tt.want != "" && got != tt.want || missing != tt.missing {
			t.Errorf("%s: scope = %s, missing %q; want %s, missing %q", tt.name, got, missing, tt.want, tt.missing)
		}
	}
	if wantScope("authorization", "Bearer alice") != vectorAliceSHA256 {
		t.Errorf("wantScope disagrees with the fixed vector")
	}
	if a, _ := scopeOf(keyed, alice); a == func() string { b, _ := scopeOf(other, alice); return b }() {
		t.Errorf("two keys give the same scope %s", a)
	}
}

// TestScopeEveryHeaderAndValue (issue 14, item 7): with several scope
// headers every one counts, and with a repeated scope header every value
// counts, in order. A scope that kept only the first header, or only the
// first value of a header, would let two principals share records.
func TestScopeEveryHeaderAndValue(t *testing.T) {
	two := policy.Scope{Headers: []string{"authorization", "x-tenant"}}
	three := policy.Scope{Headers: []string{"authorization", "x-tenant", "x-region"}}
	tenant := policy.Scope{Headers: []string{"x-tenant"}}
	alice := [2]string{"authorization", "Bearer alice"}
	tests := []struct {
		name  string
		scope policy.Scope
		a, b  [][2]string
		same  bool
	}{
		{"second header differs", two, [][2]string{alice, {"x-tenant", "acme"}}, [][2]string{alice, {"x-tenant", "globex"}}, false},
		{"first header differs", two, [][2]string{alice, {"x-tenant", "acme"}}, [][2]string{{"authorization", "Bearer bob"}, {"x-tenant", "acme"}}, false},
		{"third header differs", three, [][2]string{alice, {"x-tenant", "acme"}, {"x-region", "eu"}}, [][2]string{alice, {"x-tenant", "acme"}, {"x-region", "us"}}, false},
		{"headers received in another order", two, [][2]string{alice, {"x-tenant", "acme"}}, [][2]string{{"X-Tenant", "acme"}, {"Authorization", "Bearer alice"}}, true},
		{"values moved between headers", two, [][2]string{{"authorization", "a"}, {"x-tenant", "b"}}, [][2]string{{"authorization", "b"}, {"x-tenant", "a"}}, false},
		{"second value of a repeated header differs", tenant, [][2]string{{"x-tenant", "acme"}, {"x-tenant", "a"}}, [][2]string{{"x-tenant", "acme"}, {"x-tenant", "b"}}, false},
		{"repeated header, second value differs, with other headers", two,
			[][2]string{alice, {"x-tenant", "acme"}, {"x-tenant", "a"}}, [][2]string{{"x-tenant", "acme"}, alice, {"x-tenant", "b"}}, false},
		{"a value repeated vs once", tenant, [][2]string{{"x-tenant", "acme"}, {"x-tenant", "acme"}}, [][2]string{{"x-tenant", "acme"}}, false},
		{"a second value vs none", tenant, [][2]string{{"x-tenant", "acme"}, {"x-tenant", "globex"}}, [][2]string{{"x-tenant", "acme"}}, false},
		{"repeated values in another order", tenant, [][2]string{{"x-tenant", "a"}, {"x-tenant", "b"}}, [][2]string{{"x-tenant", "b"}, {"x-tenant", "a"}}, false},
		{"two values vs one joined", tenant, [][2]string{{"x-tenant", "a"}, {"x-tenant", "b"}}, [][2]string{{"x-tenant", "a,b"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ma := scopeOf(tt.scope, tt.a)
			b, mb := scopeOf(tt.scope, tt.b)
			if ma != "" || mb != "" {
				t.Fatalf("missing %q, %q; want every source present", ma, mb)
			}
			if (a == b) != tt.same {
				t.Errorf("same scope = %v, want %v (%s vs %s)", a == b, tt.same, a, b)
			}
		})
	}
	// The framing of several headers and repeated values, recomputed.
	got, _ := scopeOf(two, [][2]string{{"X-Tenant", "acme"}, alice, {"x-tenant", " eu "}})
	var f []byte
	count := func(n int) { f = binary.BigEndian.AppendUint64(f, uint64(n)) }
	field := func(s string) { count(len(s)); f = append(f, s...) }
	field("idemgate-scope-v1")
	count(2)
	field("authorization")
	count(1)
	field("Bearer alice")
	field("x-tenant")
	count(2)
	field("acme")
	field("eu")
	count(0)
	sum := sha256.Sum256(f)
	if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Errorf("scope of two headers, one repeated = %s, want %s", got, want)
	}
}

// TestScope: the scope sent to the control plane is the documented hash
// of the scope headers; a metadata scope adds the property's value.
func TestScope(t *testing.T) {
	metadata := []string{`"scope": { "headers": ["authorization"] }`,
		`"scope": { "headers": ["authorization"], "metadata": { "filter": "envoy.filters.http.jwt_authn", "path": ["payload", "sub"] } }`}
	hmacInline := []string{`"scope": { "headers": ["authorization"] }`, `"scope": { "headers": ["authorization"], "hmac_key": "` + testScopeKey + `" }`}
	hmacEnv := []string{`"scope": { "headers": ["authorization"] }`, `"scope": { "headers": ["authorization"], "hmac_key_env": "IDEMGATE_TEST_SCOPE_KEY" }`}
	anonymous := []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "lock", "allow_anonymous": true`}
	metadataAnonymous := append(slices.Clone(metadata), anonymous...)
	t.Setenv("IDEMGATE_TEST_SCOPE_KEY", testScopeKey)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		reserveScope := func(t *testing.T, config []string, auth string, sub string) string {
			host, reset := startHost(t, vm, withConfig(t, config...))
			defer reset()
			if sub != "" {
				if err := host.SetProperty([]string{"metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "payload", "sub"}, []byte(sub)); err != nil {
					t.Fatal(err)
				}
			}
			id := host.InitializeHttpContext()
			h := [][2]string{{":method", "POST"}, {":path", "/payments"}, {":authority", "a"}, keyK1}
			if auth != "" {
				h = append(h, [2]string{"authorization", auth})
			}
			host.CallOnRequestHeaders(id, h, true)
			var req api.ReserveRequest
			decodeStrict(t, nthCallout(t, host, id, 0, api.PathReserve).Body, &req)
			return req.Scope
		}
		alice := reserveScope(t, nil, " Bearer alice ", "")
		if want := wantScope("authorization", "Bearer alice"); alice != want {
			t.Errorf("scope = %s, want %s", alice, want)
		}
		if anon := reserveScope(t, anonymous, "", ""); anon != wantScope("authorization") || anon == alice {
			t.Errorf("anonymous scope = %s, want %s", anon, wantScope("authorization"))
		}
		if bob := reserveScope(t, nil, "Bearer bob", ""); bob == alice {
			t.Errorf("bob's scope = alice's %s", bob)
		}
		s1 := reserveScope(t, metadata, "Bearer alice", "user-1")
		s2 := reserveScope(t, metadata, "Bearer alice", "user-2")
		s0 := reserveScope(t, metadataAnonymous, "Bearer alice", "")
		if s1 == s2 || s1 == s0 || s2 == s0 || s1 == alice {
			t.Errorf("metadata scopes not distinct: %s %s %s", s1, s2, s0)
		}
		if got := reserveScope(t, hmacInline, " Bearer alice ", ""); got != vectorAliceHMAC {
			t.Errorf("hmac_key scope = %s, want %s", got, vectorAliceHMAC)
		}
		// The proxytest wasm runner starts the module with no environment
		// (wazero's default module config; the SDK offers no option), so
		// only the native run can see the variable. The wasm run checks
		// that an invisible variable fails the start, naming the field.
		if _, native := vm.(*vmContext); native {
			if got := reserveScope(t, hmacEnv, " Bearer alice ", ""); got != vectorAliceHMAC {
				t.Errorf("hmac_key_env scope = %s, want %s", got, vectorAliceHMAC)
			}
		} else {
			host, reset := newHost(t, vm, withConfig(t, hmacEnv...))
			defer reset()
			if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
				t.Errorf("StartPlugin() = %v with the variable invisible to the module, want failed", st)
			}
			checkErrorLog(t, host.GetErrorLogs(), "routes[0].scope.hmac_key_env: environment variable IDEMGATE_TEST_SCOPE_KEY is not set")
		}
	})
}

// TestPrincipalRequired: a governed request whose principal (any of its
// route's scope values) is absent or empty is refused with 401 before any
// callout, unless the route allows anonymous callers.
func TestPrincipalRequired(t *testing.T) {
	jwt := []string{`"scope": { "headers": ["authorization"] }`, `"scope": { "metadata": { "filter": "envoy.filters.http.jwt_authn", "path": ["payload", "sub"] } }`}
	both := []string{`"scope": { "headers": ["authorization"] }`, `"scope": { "headers": ["authorization"], "metadata": { "filter": "envoy.filters.http.jwt_authn", "path": ["payload", "sub"] } }`}
	base := [][2]string{{":method", "POST"}, {":path", "/payments"}, {":authority", "api.example.com"}, keyK1}
	tests := []struct {
		name    string
		config  []string
		headers [][2]string
		sub     *string // the jwt_authn claim; nil: absent (the emulator cannot hold an empty one)
		detail  string  // of the 401; "": the request reaches reserve
	}{
		{"no authorization header", nil, base, nil, "no value for the authorization header"},
		{"empty authorization header", nil, append(slices.Clone(base), [2]string{"authorization", " "}), nil, "no value for the authorization header"},
		{"authorization present", nil, append(slices.Clone(base), [2]string{"authorization", "Bearer a"}), nil, ""},
		{"claim absent", jwt, base, nil, "no value for the payload.sub metadata of envoy.filters.http.jwt_authn"},
		{"claim present", jwt, base, strPtr("user-1"), ""},
		{"header present, claim absent", both, append(slices.Clone(base), [2]string{"authorization", "Bearer a"}), nil, "payload.sub metadata"},
		{"anonymous allowed", []string{`"on_indeterminate": "lock"`, `"on_indeterminate": "lock", "allow_anonymous": true`}, base, nil, ""},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tt.config...))
				defer reset()
				if tt.sub != nil {
					if err := host.SetProperty([]string{"metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "payload", "sub"}, []byte(*tt.sub)); err != nil {
						t.Fatal(err)
					}
				}
				id := host.InitializeHttpContext()
				host.CallOnRequestHeaders(id, tt.headers, true)
				calls := len(host.GetCalloutAttributesFromContext(id))
				if tt.detail == "" {
					if r := host.GetSentLocalResponse(id); r != nil || calls != 1 {
						t.Fatalf("local response %v, %d callouts; want the reserve", r, calls)
					}
					return
				}
				r := host.GetSentLocalResponse(id)
				checkProblem(t, r, 401, "The request carries no principal", tt.detail, "")
				if !strings.Contains(string(r.Data), "urn:idemgate:problem:principal-missing") {
					t.Errorf("problem %s, want the principal-missing type", r.Data)
				}
				if calls != 0 {
					t.Errorf("callouts = %d, want none", calls)
				}
			})
		}
	})
}

// TestNoPrincipalNoReplay (issue 10, case 5): on a route scoped by a JWT
// claim that is absent (jwt_authn placed after this filter), Alice's
// request used to run under the empty scope, and Mallory's — same key and
// body, another credential — was answered with Alice's stored response
// from the edge cache. Now neither runs without a principal.
func TestNoPrincipalNoReplay(t *testing.T) {
	jwt := []string{`"scope": { "headers": ["authorization"] }`, `"scope": { "metadata": { "filter": "envoy.filters.http.jwt_authn", "path": ["payload", "sub"] } }`}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, jwt...))
		defer reset()
		alice := host.InitializeHttpContext()
		sendRequest(host, alice, paymentHeaders(keyK1), []byte(paymentBody))
		if calls := host.GetCalloutAttributesFromContext(alice); len(calls) == 1 {
			// The hole: Alice's request runs without a principal.
			answer(t, host, calls[0], 200, api.ReserveResponse{Outcome: api.Acquired, Token: "t1"})
			host.CallOnResponseHeaders(alice, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
			host.CallOnResponseBody(alice, []byte(`{"id":"pay_9"}`), true)
			answer(t, host, nthCallout(t, host, alice, 1, api.PathComplete), 200, api.Result{Outcome: "completed"})
		}
		host.CompleteHttpContext(alice)
		mallory := host.InitializeHttpContext()
		headers := [][2]string{{":method", "POST"}, {":path", "/payments"}, {":authority", "api.example.com"},
			{"content-type", "application/json"}, {"authorization", "Bearer mallory"}, keyK1}
		sendRequest(host, mallory, headers, []byte(paymentBody))
		r := host.GetSentLocalResponse(mallory)
		if r != nil && strings.Contains(string(r.Data), "pay_9") {
			t.Fatalf("Mallory got Alice's response: %d %s", r.StatusCode, r.Data)
		}
		checkProblem(t, r, 401, "The request carries no principal", "payload.sub", "")
		checkProblem(t, host.GetSentLocalResponse(alice), 401, "The request carries no principal", "payload.sub", "")
	})
}

// TestScopeHMACKeyEnvStart: an unusable hmac_key_env fails the plugin
// start with a log naming the field (and never the key).
func TestScopeHMACKeyEnvStart(t *testing.T) {
	const name = "IDEMGATE_TEST_SCOPE_KEY_START"
	config := withConfig(t, `"scope": { "headers": ["authorization"] }`, `"scope": { "headers": ["authorization"], "hmac_key_env": "`+name+`" }`)
	tests := []struct {
		name    string
		value   *string // nil: unset
		wantLog string  // in the native run; the wasm run sees no variable
	}{
		{"unset", nil, "environment variable " + name + " is not set"},
		{"empty", strPtr(""), "environment variable " + name + ": the key is empty"},
		{"short", strPtr("only-16-bytes-xx"), "environment variable " + name + ": the key is 16 bytes, want at least 32"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.value != nil {
					t.Setenv(name, *tt.value)
				}
				host, reset := newHost(t, vm, config)
				defer reset()
				if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
					t.Fatalf("StartPlugin() = %v, want failed", st)
				}
				want := tt.wantLog
				if _, native := vm.(*vmContext); !native {
					want = "environment variable " + name + " is not set"
				}
				logs := host.GetErrorLogs()
				checkErrorLog(t, logs, "routes[0].scope.hmac_key_env: "+want)
				if tt.value != nil && *tt.value != "" && slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, *tt.value) }) {
					t.Errorf("error logs %q contain the key", logs)
				}
			})
		}
	})
}

func checkErrorLog(t *testing.T, logs []string, want string) {
	t.Helper()
	if !slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, want) }) {
		t.Errorf("error logs = %q, want one containing %q", logs, want)
	}
}

func strPtr(s string) *string { return &s }

// TestScopeEveryHeaderInModule: the same through the filter (natively
// and in the compiled module): with scope headers authorization and
// x-tenant, the scope sent to reserve changes with the second header and
// with the second value of a repeated one.
func TestScopeEveryHeaderInModule(t *testing.T) {
	two := []string{`"scope": { "headers": ["authorization"] }`, `"scope": { "headers": ["authorization", "x-tenant"] }`}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		reserveScope := func(t *testing.T, tenants ...string) string {
			host, reset := startHost(t, vm, withConfig(t, two...))
			defer reset()
			id := host.InitializeHttpContext()
			h := [][2]string{{":method", "POST"}, {":path", "/payments"}, {":authority", "a"}, keyK1, {"authorization", "Bearer alice"}}
			for _, v := range tenants {
				h = append(h, [2]string{"x-tenant", v})
			}
			host.CallOnRequestHeaders(id, h, true)
			var req api.ReserveRequest
			decodeStrict(t, nthCallout(t, host, id, 0, api.PathReserve).Body, &req)
			return req.Scope
		}
		acme, globex := reserveScope(t, "acme"), reserveScope(t, "globex")
		acmeA, acmeB := reserveScope(t, "acme", "a"), reserveScope(t, "acme", "b")
		if acme == globex {
			t.Errorf("tenants acme and globex share the scope %s", acme)
		}
		if acmeA == acmeB || acmeA == acme {
			t.Errorf("repeated x-tenant: scopes %s, %s, %s not distinct", acme, acmeA, acmeB)
		}
		if want, _ := scopeOf(policy.Scope{Headers: []string{"authorization", "x-tenant"}}, [][2]string{{"authorization", "Bearer alice"}, {"x-tenant", "acme"}, {"x-tenant", "b"}}); acmeB != want {
			t.Errorf("scope = %s, want %s", acmeB, want)
		}
	})
}
