//go:build !wasm

package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// wantScope recomputes the documented scope framing (scope.go) for one
// scope header and no metadata, independently of scopeOf.
func wantScope(name string, values ...string) string {
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
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestScope: the scope sent to the control plane is the documented hash
// of the scope headers; a metadata scope adds the property's value.
func TestScope(t *testing.T) {
	metadata := []string{`"scope": { "headers": ["authorization"] }`,
		`"scope": { "headers": ["authorization"], "metadata": { "filter": "envoy.filters.http.jwt_authn", "path": ["payload", "sub"] } }`}
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
		if anon := reserveScope(t, nil, "", ""); anon != wantScope("authorization") || anon == alice {
			t.Errorf("anonymous scope = %s, want %s", anon, wantScope("authorization"))
		}
		if bob := reserveScope(t, nil, "Bearer bob", ""); bob == alice {
			t.Errorf("bob's scope = alice's %s", bob)
		}
		s1 := reserveScope(t, metadata, "Bearer alice", "user-1")
		s2 := reserveScope(t, metadata, "Bearer alice", "user-2")
		s0 := reserveScope(t, metadata, "Bearer alice", "")
		if s1 == s2 || s1 == s0 || s2 == s0 || s1 == alice {
			t.Errorf("metadata scopes not distinct: %s %s %s", s1, s2, s0)
		}
	})
}
