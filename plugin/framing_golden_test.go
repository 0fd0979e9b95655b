//go:build !wasm

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/golden"
	"github.com/idemgate/idemgate/plugin/canon"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// framingValues computes, by name, every value the filter frames with
// length prefixes and keeps or compares across requests: scopes (the
// control plane stores them), edge ids and slot keys, request images and
// digests, and encoded edge entries (shared data, read by every VM of the
// vm_id). Byte strings are given as their SHA-256 and length.
func framingValues(t *testing.T) []string {
	var out []string
	add := func(name, v string) { out = append(out, name+"\t"+v) }
	digest := func(b []byte) string {
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:]) + " " + strconv.Itoa(len(b))
	}

	// Scopes from headers (metadata scopes call the host: TestScope).
	key := policy.Secret(testScopeKey)
	scopes := []struct {
		name    string
		scope   policy.Scope
		headers [][2]string
	}{
		{"no headers", policy.Scope{}, nil},
		{"one header", policy.Scope{Headers: []string{"authorization"}}, [][2]string{{"Authorization", " Bearer alice\t"}}},
		{"one header, absent", policy.Scope{Headers: []string{"authorization"}}, [][2]string{{":path", "/"}}},
		{"one header, empty", policy.Scope{Headers: []string{"authorization"}}, [][2]string{{"authorization", " "}}},
		{"repeated header", policy.Scope{Headers: []string{"x-tenant"}}, [][2]string{{"x-tenant", "a"}, {"X-Tenant", " b "}, {"x-tenant", ""}}},
		{"two headers", policy.Scope{Headers: []string{"authorization", "x-tenant"}}, [][2]string{{"x-tenant", "acme"}, {"authorization", "Bearer bob"}, {"x-other", "1"}}},
		{"hmac", policy.Scope{Headers: []string{"authorization"}, HMACKey: key}, [][2]string{{"authorization", "Bearer alice"}}},
		{"hmac, two headers", policy.Scope{Headers: []string{"authorization", "x-tenant"}, HMACKey: key}, [][2]string{{"authorization", "Bearer alice"}, {"x-tenant", "t"}, {"x-tenant", "u"}}},
		{"long value", policy.Scope{Headers: []string{"authorization"}}, [][2]string{{"authorization", "Bearer " + strings.Repeat("eyJ0", 300)}}},
	}
	for _, s := range scopes {
		got, missing := scopeOf(s.scope, s.headers)
		add("scope "+s.name, got+" missing="+strconv.Quote(missing))
	}

	// Metadata scopes read the property through the host: an emulator's.
	_, reset := newHost(t, &vmContext{}, demoConfig)
	defer reset()
	jwt := &policy.MetadataScope{Filter: "envoy.filters.http.jwt_authn", Path: []string{"payload", "sub"}}
	for _, m := range []struct {
		name  string
		scope policy.Scope
		value []byte // nil: the property is absent
	}{
		{"metadata", policy.Scope{Metadata: jwt}, []byte("user-1")},
		{"metadata and header", policy.Scope{Headers: []string{"authorization"}, Metadata: jwt}, []byte("user-2")},
		{"metadata absent", policy.Scope{Metadata: &policy.MetadataScope{Filter: "f", Path: []string{"absent"}}}, nil},
		{"metadata hmac", policy.Scope{Metadata: jwt, HMACKey: key}, []byte("user-1")},
	} {
		if m.value != nil {
			if err := proxywasm.SetProperty(append([]string{"metadata", "filter_metadata", m.scope.Metadata.Filter}, m.scope.Metadata.Path...), m.value); err != nil {
				t.Fatal(err)
			}
		}
		got, missing := scopeOf(m.scope, [][2]string{{"authorization", "Bearer alice"}})
		add("scope "+m.name, got+" missing="+strconv.Quote(missing))
	}

	// Edge ids and their slots.
	ids := [][3]string{
		{"", "", ""},
		{"idemgate_controlplane", "sha256:0ba72365207faee71dc06ccd4865b74e8dacb38cdd360881ef84aab99f096ade", "k1"},
		{"c", "s", "k"},
		{"cs", "", "k"},
		{"c", "sk", ""},
		{"idemgate_controlplane", "hmac-sha256:" + strings.Repeat("ab", 32), strings.Repeat("k", 255)},
	}
	for _, f := range ids {
		id := newEdgeID(f[0], f[1], f[2])
		add(fmt.Sprintf("edge id %q", f), hex.EncodeToString(id[:])+" "+id.slotKey(1024)+" "+id.slotKey(7))
	}

	// Request images and digests.
	headers := [][2]string{{"content-type", "application/json"}, {"x-tenant", "t1"}, {"X-Tenant", " t2 "}, {"x-trace", "1"}}
	images := []struct {
		name string
		req  canon.Request
		sel  canon.Selection
	}{
		{"empty", canon.Request{}, canon.Selection{}},
		{"json", canon.Request{Method: "POST", Host: "api.example.com", Target: "/p?a=1", ContentType: "application/json", Body: []byte(`{"a":1}`), Headers: headers},
			canon.Selection{Include: []string{"a"}, Exclude: []string{"b", "c.d"}, Headers: []string{"x-tenant", "x-absent"}}},
		{"no body", canon.Request{Method: "DELETE", Host: "h:8443", Target: "/p/1"}, canon.Selection{Headers: []string{"x-tenant"}}},
		{"large", canon.Request{Method: "PUT", Host: "h", Target: "/" + strings.Repeat("t", maxDigestBuf), ContentType: "text/plain",
			Body: []byte(strings.Repeat("body ", 3*maxDigestBuf)), Headers: headers}, canon.Selection{Headers: []string{"X-Tenant"}}},
	}
	for _, im := range images {
		b := requestImage(nil, &im.req, &im.sel)
		d := requestDigest(&im.req, &im.sel)
		add("request image "+im.name, digest(b)+" size="+strconv.Itoa(requestImageSize(&im.req, &im.sel))+" digest="+hex.EncodeToString(d[:]))
	}

	// Edge entries.
	id := newEdgeID("idemgate_controlplane", "sha256:scope", "k1")
	entries := []struct {
		name string
		e    edgeEntry
	}{
		{"minimal", edgeEntry{id: id, expires: 5, resp: api.StoredResponse{Status: 204}}},
		{"omitted", edgeEntry{id: id, expires: 1 << 62, epoch: 3, fingerprint: "sha256:abc", resp: api.StoredResponse{Status: 500, BodyOmitted: true}}},
		{"full", edgeEntry{id: id, expires: 1_800_000_000_000_000_000, epoch: -1, fingerprint: "sha256:" + strings.Repeat("0f", 32),
			request: []byte("image bytes"),
			resp: api.StoredResponse{Status: 201, Headers: api.Headers{{"content-type", "application/json"}, {"x-empty", ""}, {"location", "/p/1"}},
				Body: []byte(`{"id":1,"amount":"12.50"}`)}}},
		{"digest", edgeEntry{id: id, expires: 7, epoch: 9, fingerprint: "f", request: make([]byte, sha256.Size),
			resp: api.StoredResponse{Status: 200, Body: []byte(strings.Repeat("x", 70000))}}},
	}
	for _, en := range entries {
		b, ok := en.e.appendEntry(nil)
		if !ok {
			t.Fatalf("edge entry %s: not encodable", en.name)
		}
		add("edge entry "+en.name, digest(b))
	}
	return out
}

// TestFramingGolden holds every length-framed value to
// testdata/framing.golden, computed by the code before the framings
// shared one helper (package frame): a changed byte orphans records
// (scopes), misses or confuses edge entries, or replays for another
// request (images).
func TestFramingGolden(t *testing.T) {
	golden.Check(t, filepath.Join("testdata", "framing.golden"), framingValues(t))
}
