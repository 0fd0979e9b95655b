package canon

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestNormalizeTarget(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/payments", "/payments"},
		{"", "/"},
		{"/payments?", "/payments"},
		{"/payments#frag", "/payments"},
		{"/pay%6dents", "/payments"},
		{"/a%2fb", "/a%2Fb"},
		{"/a%2Fb", "/a%2Fb"},
		{"/a/./b/../c", "/a/c"},
		{"/../a", "/a"},
		{"/a/.", "/a/"},
		{"/v1.2/x", "/v1.2/x"},
		{"/p?b=2&a=1", "/p?a=1&b=2"},
		{"/p?a=2&b=1&a=1", "/p?a=2&a=1&b=1"},
		{"/p?&&a=1&", "/p?a=1"},
		{"/p?q=%7e+x%20y", "/p?q=~+x%20y"},
		{"/p?x=100%", "/p?x=100%"},
		{"/p%zz", "/p%zz"},
		{"/p%4", "/p%4"}, // one hex digit at the end: kept, never read past
		{"/p?x=%4", "/p?x=%4"},
		{"/p?%61=1", "/p?a=1"}, // a parameter that starts with '%'
		{"/p?%7E", "/p?~"},
		// The ends of each range of hex digits and of unreserved
		// characters are decoded; their neighbours stay encoded.
		{"/%41%5A%61%7A%30%39%4A%4a%2D%2E%5F%7E", "/AZaz09JJ-._~"},
		{"/%40%5B%60%7B%2F%3A%2f%3a%3F", "/%40%5B%60%7B%2F%3A%2F%3A%3F"},
		{"*", "/*"},
	}
	for _, tt := range tests {
		if got := NormalizeTarget(tt.in); got != tt.want {
			t.Errorf("NormalizeTarget(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIsJSON(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"application/json", true},
		{"Application/JSON; charset=utf-8", true},
		{"application/merge-patch+json", true},
		{" application/problem+json ", true},
		{"text/json", false},
		{"application/jsonx", false},
		{"application/x-www-form-urlencoded", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsJSON(tt.ct); got != tt.want {
			t.Errorf("IsJSON(%q) = %v, want %v", tt.ct, got, tt.want)
		}
	}
}

// TestFingerprintFraming recomputes fingerprints from the framing written
// in the package doc, so the doc and the code cannot drift apart.
func TestFingerprintFraming(t *testing.T) {
	headers := [][2]string{{"X-Tenant", " t1 "}, {"Content-Type", "application/json"}, {"x-tenant", "t2"}}
	tests := []struct {
		name        string
		contentType string
		body        string
		sel         Selection
		kind, want  string // the body kind and the body as hashed
	}{
		{"json", "application/json", `{"b": 1.50, "a": "x"}`, Selection{}, "json", `{"a":"x","b":1.5}`},
		{"json, a field excluded", "application/json", `{"b": 1.50, "a": "x", "ts": 7}`, Selection{Exclude: []string{"ts"}}, "json", `{"a":"x","b":1.5}`},
		{"json, fields included", "application/json", `{"b": 1.50, "a": {"y": 2, "x": 1}}`, Selection{Include: []string{"a.x", "b"}}, "json", `{"a":{"x":1},"b":1.5}`},
		{"raw", "text/plain", `{"b": 1.50}`, Selection{}, "raw", `{"b": 1.50}`},
		{"empty json", "application/json", ``, Selection{}, "raw", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Request{Method: "post", Host: "API.Example.com:443", Target: "/payments?b=1&a=2", Headers: headers, ContentType: tt.contentType, Body: []byte(tt.body)}
			tt.sel.Headers = []string{"X-Tenant", "X-Absent"}
			got, err := Fingerprint(r, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			put := func(s string) { num(h, len(s)); h.Write([]byte(s)) }
			put("idemgate-fingerprint-v2")
			put("POST")
			put("api.example.com")
			put("/payments?a=2&b=1")
			num(h, 2)
			put("x-absent")
			num(h, 0)
			put("x-tenant")
			num(h, 2)
			put("t1")
			put("t2")
			put(tt.kind)
			put(tt.want)
			if want := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
				t.Errorf("Fingerprint = %s, want %s", got, want)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"api.example.com", "api.example.com"},
		{"API.Example.COM", "api.example.com"},
		{"api.example.com:443", "api.example.com"},
		{"api.example.com:80", "api.example.com"},
		{"api.example.com:", "api.example.com"},
		{"api.example.com:8443", "api.example.com:8443"},
		{"api.example.com.", "api.example.com"},
		{"api.example.com.:443", "api.example.com"},
		{"[2001:DB8::1]:443", "[2001:db8::1]"},
		{"[2001:db8::1]:8080", "[2001:db8::1]:8080"},
		{"[::1]", "[::1]"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"", ""},
		{":443", ""}, // a port with no name: the port is still read as one
		// The only capital at either end of A-Z, or nothing outside A-Z:
		// each must still be lowered, or one host has two fingerprints.
		{"A.example.com", "a.example.com"},
		{"exampleZ.com", "examplez.com"},
		{"EXAMPLE", "example"},
	}
	for _, tt := range tests {
		if got := NormalizeHost(tt.in); got != tt.want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := NormalizeHost(NormalizeHost(tt.in)); got != tt.want {
			t.Errorf("NormalizeHost is not idempotent on %q: %q", tt.in, got)
		}
	}
}

func num(h interface{ Write([]byte) (int, error) }, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

func TestFingerprintEquivalence(t *testing.T) {
	base := Request{Method: "POST", Target: "/payments", ContentType: "application/json", Body: []byte(`{"amount":1000,"currency":"EUR","client_timestamp":"2026-11-23T10:00:00Z"}`)}
	with := func(f func(*Request)) Request { r := base; f(&r); return r }
	tests := []struct {
		name string
		a, b Request
		sel  Selection
		same bool
	}{
		{"re-serialized JSON", base, with(func(r *Request) {
			r.Body = []byte("{ \"currency\" : \"\\u0045UR\", \"client_timestamp\":\"2026-11-23T10:00:00Z\",\n \"amount\": 1000.0 }")
		}), Selection{}, true},
		{"other amount", base, with(func(r *Request) {
			r.Body = []byte(`{"amount":1001,"currency":"EUR","client_timestamp":"2026-11-23T10:00:00Z"}`)
		}), Selection{}, false},
		{"method case", base, with(func(r *Request) { r.Method = "post" }), Selection{}, true},
		{"other method", base, with(func(r *Request) { r.Method = "PUT" }), Selection{}, false},
		{"other path", base, with(func(r *Request) { r.Target = "/refunds" }), Selection{}, false},
		{"other host", with(func(r *Request) { r.Host = "api-a" }), with(func(r *Request) { r.Host = "api-b" }), Selection{}, false},
		{"host and no host", base, with(func(r *Request) { r.Host = "api-a" }), Selection{}, false},
		{"other port", with(func(r *Request) { r.Host = "api:8443" }), with(func(r *Request) { r.Host = "api:9443" }), Selection{}, false},
		{"host spelled otherwise", with(func(r *Request) { r.Host = "API.example.com:443" }), with(func(r *Request) { r.Host = "api.example.com" }), Selection{}, true},
		{"equivalent path", base, with(func(r *Request) { r.Target = "/x/../payments?" }), Selection{}, true},
		{"excluded field differs", base, with(func(r *Request) {
			r.Body = []byte(`{"amount":1000,"currency":"EUR","client_timestamp":"2026-11-23T10:00:05Z"}`)
		}), Selection{Exclude: []string{"client_timestamp"}}, true},
		{"excluded field differs, not excluded", base, with(func(r *Request) {
			r.Body = []byte(`{"amount":1000,"currency":"EUR","client_timestamp":"2026-11-23T10:00:05Z"}`)
		}), Selection{}, false},
		{"only included fields count", base, with(func(r *Request) {
			r.Body = []byte(`{"amount":1000,"currency":"USD"}`)
		}), Selection{Include: []string{"amount"}}, true},
		{"included field differs", base, with(func(r *Request) { r.Body = []byte(`{"amount":5}`) }), Selection{Include: []string{"amount"}}, false},
		{"unselected header ignored", base, with(func(r *Request) { r.Headers = [][2]string{{"X-Request-Id", "abc"}} }), Selection{}, true},
		{"selected header counts", base, with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", "t9"}} }), Selection{Headers: []string{"x-tenant"}}, false},
		// Absent and empty are two requests (the framing counts values):
		// a client that sends the header empty must not match one that
		// omits it.
		{"selected header empty vs absent", base, with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", ""}} }), Selection{Headers: []string{"x-tenant"}}, false},
		{"selected header blank vs absent", base, with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", " \t"}} }), Selection{Headers: []string{"x-tenant"}}, false},
		{"selected header empty vs absent, other one present", with(func(r *Request) { r.Headers = [][2]string{{"X-Region", "eu"}} }),
			with(func(r *Request) { r.Headers = [][2]string{{"X-Region", "eu"}, {"X-Tenant", ""}} }), Selection{Headers: []string{"x-tenant", "x-region"}}, false},
		{"selected header empty twice vs once", with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", ""}} }),
			with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", ""}, {"X-Tenant", ""}} }), Selection{Headers: []string{"x-tenant"}}, false},
		{"selected header blank vs empty", with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", ""}} }),
			with(func(r *Request) { r.Headers = [][2]string{{"X-Tenant", " "}} }), Selection{Headers: []string{"x-tenant"}}, true},
		{"raw body hashed as bytes", with(func(r *Request) { r.ContentType = "text/plain"; r.Body = []byte("a=1") }),
			with(func(r *Request) { r.ContentType = "text/plain"; r.Body = []byte("a=1 ") }), Selection{}, false},
		{"JSON vs raw of the same bytes differ", base, with(func(r *Request) { r.ContentType = "" }), Selection{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa, err := Fingerprint(tt.a, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			fb, err := Fingerprint(tt.b, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			if (fa == fb) != tt.same {
				t.Errorf("same = %v, want %v (%s vs %s)", fa == fb, tt.same, fa, fb)
			}
			if !strings.HasPrefix(fa, "sha256:") || len(fa) != len("sha256:")+64 {
				t.Errorf("malformed fingerprint %q", fa)
			}
		})
	}
}

func TestSelectFields(t *testing.T) {
	doc := `{"a":{"b":1,"c":2},"items":[{"sku":"x","ts":1},{"sku":"y","ts":2}],"k.dot":3,"ts":9}`
	tests := []struct {
		name string
		sel  Selection
		want string
	}{
		{"exclude nested", Selection{Exclude: []string{"a.c", "ts"}}, `{"a":{"b":1},"items":[{"sku":"x","ts":1},{"sku":"y","ts":2}],"k.dot":3}`},
		{"exclude in array element", Selection{Exclude: []string{"items.1.ts"}}, `{"a":{"b":1,"c":2},"items":[{"sku":"x","ts":1},{"sku":"y"}],"k.dot":3,"ts":9}`},
		{"exclude absent is no-op", Selection{Exclude: []string{"nope.x"}}, doc},
		{"include", Selection{Include: []string{"a.b", "k\\.dot"}}, `{"a":{"b":1},"k.dot":3}`},
		{"include array index", Selection{Include: []string{"items.1.sku"}}, `{"items":[null,{"sku":"y"}]}`},
		{"include missing", Selection{Include: []string{"missing"}}, `{}`},
		{"include then exclude", Selection{Include: []string{"a"}, Exclude: []string{"a.c"}}, `{"a":{"b":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Request{Method: "POST", Target: "/", ContentType: "application/json", Body: []byte(doc)}
			b, err := appendBody(nil, r, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			// "json" framed, then the body's 8-byte length and the body.
			const head = 8 + len("json") + 8
			got := b[head:]
			if n := binary.BigEndian.Uint64(b[head-8:]); n != uint64(len(got)) {
				t.Errorf("framed length %d, body %d bytes", n, len(got))
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestSelectionValidate: the policy is refused at load time for a body path
// or a header name that Fingerprint could not use, and only then; the
// cases sit on the edges of each rule (the ends of a path, the ends of each
// character range of a token).
func TestSelectionValidate(t *testing.T) {
	for _, tt := range []struct {
		sel Selection
		ok  bool
	}{
		{Selection{Include: []string{"a.b", `a\.b`, "items.0.sku", "a"}}, true},
		{Selection{Exclude: []string{"a."}}, false},
		{Selection{Exclude: []string{".a"}}, false},
		{Selection{Exclude: []string{"a..b"}}, false},
		{Selection{Include: []string{"a..", "b"}}, false},
		{Selection{Headers: []string{"AZaz09", "x-tz", "!#$%&'*+-.^_`|~", ":authority"}}, true},
		{Selection{Headers: []string{"a@"}}, false},
		{Selection{Headers: []string{"a["}}, false},
		{Selection{Headers: []string{"a{"}}, false},
		{Selection{Headers: []string{"a/"}}, false},
		{Selection{Headers: []string{"a:b"}}, false},
		{Selection{Headers: []string{""}}, false},
		{Selection{Headers: []string{"caf\u00e9"}}, false},
	} {
		if err := tt.sel.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.sel, err, tt.ok)
		}
	}
}

func TestFingerprintErrors(t *testing.T) {
	json := Request{Method: "POST", Target: "/", ContentType: "application/json", Body: []byte(`{"a":1,"a":2}`)}
	if _, err := Fingerprint(json, Selection{}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("duplicate names: err = %v", err)
	}
	ok := Request{Method: "POST", Target: "/", ContentType: "application/json", Body: []byte(`{}`)}
	for _, sel := range []Selection{
		{Include: []string{"items.#.sku"}},
		{Exclude: []string{"a.*"}},
		{Exclude: []string{""}},
		{Exclude: []string{"a..b"}},
		{Exclude: []string{"a\\"}},
		{Headers: []string{"bad header"}},
	} {
		if _, err := Fingerprint(ok, sel); err == nil {
			t.Errorf("selection %+v accepted", sel)
		}
	}
	// An empty JSON body is no body, hashed raw rather than refused.
	if _, err := Fingerprint(Request{Method: "POST", Target: "/", ContentType: "application/json"}, Selection{}); err != nil {
		t.Errorf("empty JSON body: %v", err)
	}
}
