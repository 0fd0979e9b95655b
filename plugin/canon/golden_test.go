package canon

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/internal/golden"
)

// goldenRequests covers every part of the framing: method case, hosts
// (ports, IPv6, trailing dot), targets that normalize, selected headers
// (absent, repeated, mixed case, trimmed, duplicates in the selection),
// raw, empty and JSON bodies, include and exclude selections, and a body
// large enough to grow the pooled buffer.
func goldenRequests() []struct {
	name string
	req  Request
	sel  Selection
} {
	headers := [][2]string{{"X-Tenant", " t1 "}, {"content-type", "application/json"}, {"x-tenant", "t2\t"}, {"X-Region", "eu"}, {"x-empty", ""}}
	big := `{"items":[` + strings.Repeat(`{"sku":"a-1","qty":2,"price":12.50},`, 4000) + `{"sku":"z"}]}`
	type g = struct {
		name string
		req  Request
		sel  Selection
	}
	return []g{
		{"empty request", Request{}, Selection{}},
		{"method only", Request{Method: "post"}, Selection{}},
		{"host with default port", Request{Method: "POST", Host: "API.Example.com:443", Target: "/payments"}, Selection{}},
		{"host with another port", Request{Method: "POST", Host: "api.example.com:8443", Target: "/payments"}, Selection{}},
		{"ipv6 host", Request{Method: "PUT", Host: "[2001:DB8::1]:80", Target: "/p/1"}, Selection{}},
		{"fqdn host", Request{Method: "PUT", Host: "api.example.com.", Target: "/p/1"}, Selection{}},
		{"target normalized", Request{Method: "PUT", Host: "a", Target: "/p/./x/../1?b=2&a=1&a=0"}, Selection{}},
		{"target escaped", Request{Method: "PUT", Host: "a", Target: "/p%2fq/%7e?x=%41&y"}, Selection{}},
		{"raw body", Request{Method: "POST", Host: "a", Target: "/", ContentType: "text/plain", Body: []byte(`{"b": 1.50}`)}, Selection{}},
		{"binary body", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/octet-stream", Body: []byte{0, 1, 2, 0xff, '\n'}}, Selection{}},
		{"empty json body", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/json"}, Selection{}},
		{"json body", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/json; charset=utf-8", Body: []byte(`{"b": 1.50, "a": "x", "c": [1e2, -0, "\u00e9"]}`)}, Selection{}},
		{"problem json body", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/problem+json", Body: []byte(`{"z":null,"y":true}`)}, Selection{}},
		{"json include", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/json", Body: []byte(`{"b": 1.50, "a": {"y": 2, "x": 1}}`)}, Selection{Include: []string{"a.x", "b", "missing"}}},
		{"json exclude", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/json", Body: []byte(`{"b": 1.50, "a": "x", "ts": 7}`)}, Selection{Exclude: []string{"ts"}}},
		{"json include and exclude", Request{Method: "POST", Host: "a", Target: "/", ContentType: "application/json", Body: []byte(`{"a":{"x":1,"y":2},"b":[1,2,3]}`)}, Selection{Include: []string{"a", "b.1"}, Exclude: []string{"a.y"}}},
		{"headers selected", Request{Method: "POST", Host: "a", Target: "/", Headers: headers}, Selection{Headers: []string{"X-Tenant", "x-absent", "x-region", "x-tenant", "x-empty"}}},
		{"headers and json", Request{Method: "post", Host: "API.Example.com:443", Target: "/payments?b=1&a=2", Headers: headers, ContentType: "application/json", Body: []byte(`{"b": 1.50, "a": "x"}`)}, Selection{Headers: []string{"X-Tenant", "X-Absent"}}},
		{"header selected, none sent", Request{Method: "POST", Host: "a", Target: "/"}, Selection{Headers: []string{"x-tenant"}}},
		{"large json body", Request{Method: "POST", Host: "a", Target: "/orders", ContentType: "application/json", Body: []byte(big)}, Selection{}},
		{"large raw body", Request{Method: "POST", Host: "a", Target: "/orders", Body: []byte(big)}, Selection{}},
		{"large json body excluded", Request{Method: "POST", Host: "a", Target: "/orders", ContentType: "application/json", Body: []byte(big)}, Selection{Exclude: []string{"items.0"}}},
	}
}

// TestFingerprintGolden holds Fingerprint to the values in
// testdata/fingerprints.golden, computed by the code before the framing
// moved to package frame: a fingerprint is stored with every record, so
// any change of a byte of the preimage shows here.
func TestFingerprintGolden(t *testing.T) {
	var lines []string
	for _, g := range goldenRequests() {
		fp, err := Fingerprint(g.req, g.sel)
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		lines = append(lines, g.name+"\t"+fp)
	}
	golden.Check(t, filepath.Join("testdata", "fingerprints.golden"), lines)
}
