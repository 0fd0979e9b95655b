package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/idemgate/idemgate/plugin/frame"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

const scopeFramingTag = "idemgate-scope-v1"

// scopeOf returns the principal a key belongs to, as the control plane
// stores it: "sha256:" and the lower-case hex SHA-256 of a framing of the
// route's scope values, so that credentials never leave the filter in
// clear; with a scope HMAC key (scope.hmac_key_env or scope.hmac_key),
// "hmac-sha256:" and the lower-case hex HMAC-SHA-256 of the same framing
// under that key, so that a low-entropy credential cannot be found from a
// stored scope by guessing without the key. The framing (package frame's:
// each field an 8-byte big-endian length followed by its bytes, each
// count an 8-byte big-endian integer):
//
//  1. the constant "idemgate-scope-v1";
//  2. the number of scope headers; for each, in the configured order: its
//     lower-case name, the number of values the request carries (0 when
//     absent, so absent differs from empty) and each value with
//     surrounding spaces and tabs trimmed, in the order received;
//  3. with a metadata scope: the count 1, the filter name, the number of
//     path elements and each element, then the count of values (0 when
//     the property is absent, else 1) and the value's bytes as the host
//     returns them; without one, the count 0.
//
// missing names the first scope source the request lacks (a header with
// no non-empty value, a metadata value absent or empty), "" when every
// source has a value. The caller refuses such a request unless the route
// allows anonymous callers: then every request missing the same sources
// hashes alike and shares one scope. Any source missing refuses, not only
// all of them: with scope headers authorization and x-tenant, a request
// with the tenant alone would otherwise share records with every caller
// of that tenant who sends no credential.
func scopeOf(s policy.Scope, headers [][2]string) (scope, missing string) {
	// The framing is built in one buffer (on the stack for usual sizes)
	// and hashed once: no hash object or per-field copy to allocate.
	var buf [512]byte
	b := frame.Field(buf[:0], scopeFramingTag)
	b = frame.Count(b, len(s.Headers))
	for _, name := range s.Headers {
		var present bool
		b, present = frame.Header(b, headers, name)
		if !present && missing == "" {
			missing = "value for the " + name + " header"
		}
	}
	b, missingMD := appendMetadataScope(b, s.Metadata)
	if missing == "" {
		missing = missingMD
	}
	if s.HMACKey != nil {
		m := hmac.New(sha256.New, s.HMACKey)
		// A copy: b itself, passed to an interface's method, would move
		// buf to the heap on every call, HMAC or not.
		m.Write(bytes.Clone(b))
		var sum [sha256.Size]byte
		return scopeString("hmac-sha256:", m.Sum(sum[:0])), missing
	}
	sum := sha256.Sum256(b)
	return scopeString("sha256:", sum[:]), missing
}

// appendMetadataScope appends the framing of a metadata scope (item 3
// above) and names the source when its value is absent or empty.
func appendMetadataScope(b []byte, md *policy.MetadataScope) ([]byte, string) {
	if md == nil {
		return frame.Count(b, 0), ""
	}
	b = frame.Count(b, 1)
	b = frame.Field(b, md.Filter)
	b = frame.Count(b, len(md.Path))
	for _, p := range md.Path {
		b = frame.Field(b, p)
	}
	path := append([]string{"metadata", "filter_metadata", md.Filter}, md.Path...)
	v, err := proxywasm.GetProperty(path)
	if err != nil {
		return frame.Count(b, 0), metadataName(md)
	}
	b = frame.Count(b, 1)
	b = frame.Field(b, v)
	if len(v) == 0 {
		return b, metadataName(md)
	}
	return b, ""
}

// metadataName names a metadata scope source in a 401's detail.
func metadataName(md *policy.MetadataScope) string {
	return "value for the " + strings.Join(md.Path, ".") + " metadata of " + md.Filter
}

// scopeString returns prefix and the hex of sum in one allocation.
func scopeString(prefix string, sum []byte) string {
	var buf [len("hmac-sha256:") + 2*sha256.Size]byte
	n := copy(buf[:], prefix)
	n += hex.Encode(buf[n:], sum)
	return string(buf[:n])
}
