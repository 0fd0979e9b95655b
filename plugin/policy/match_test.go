package policy

import "testing"

func TestMatch(t *testing.T) {
	c, err := Parse([]byte(`{
	  "control_plane": {"cluster": "c", "authority": "a", "token": "t"},
	  "routes": [
	    {"match": {"host": "api.example.com", "path": "/payments"}, "scope": {"headers": ["authorization"]}, "ttl": "1h"},
	    {"match": {"host": "*.example.com", "prefix": "/orders/"}, "scope": {"headers": ["authorization"]}, "ttl": "2h"},
	    {"match": {"glob": "/v1/accounts/*/transfers", "methods": ["POST"]}, "scope": {"headers": ["authorization"]}, "ttl": "3h"},
	    {"match": {"glob": "/v2/**", "methods": ["PUT"]}, "scope": {"headers": ["authorization"]}, "ttl": "4h"},
	    {"match": {"host": "[::1]", "glob": "/files/*.json"}, "scope": {"headers": ["authorization"]}, "ttl": "5h"},
	    {"match": {"glob": "/v3/*/items/**"}, "scope": {"headers": ["authorization"]}, "ttl": "6h"}
	  ]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path, method string
		want               int // route index, -1 for none
	}{
		{"api.example.com", "/payments", "POST", 0},
		{"API.Example.COM", "/payments", "POST", 0},
		{"api.example.com:8443", "/payments", "PATCH", 0},
		{"api.example.com.", "/payments", "POST", 0},
		{"api.example.com", "/payments?expand=all", "POST", 0},
		{"api.example.com", "/payments#x", "POST", 0},
		{"api.example.com", "/payments", "GET", -1},
		{"api.example.com", "/payments", "post", -1}, // methods are case-sensitive
		{"api.example.com", "/payments/", "POST", -1},
		{"api.example.com", "/Payments", "POST", -1},
		{"other.com", "/payments", "POST", -1},
		{"www.example.com", "/orders/1", "POST", 1},
		{"a.b.example.com", "/orders/1", "POST", 1},
		{"example.com", "/orders/1", "POST", -1},  // *.example.com needs a label
		{".example.com", "/orders/1", "POST", -1}, // ... of at least one character
		{"x.example.com", "/orders/1", "POST", 1},
		{"xexample.com", "/orders/1", "POST", -1},
		{"www.example.com", "/orders", "POST", -1},
		{"any", "/v1/accounts/acct_1/transfers", "POST", 2},
		{"any", "/v1/accounts/acct_1/transfers", "PATCH", -1},
		{"any", "/v1/accounts//transfers", "POST", 2}, // '*' matches an empty segment
		{"any", "/v1/accounts/a/b/transfers", "POST", -1},
		{"any", "/v1/accounts/acct_1/transfers/x", "POST", -1},
		{"any", "/v2", "PUT", 3},
		{"any", "/v2/", "PUT", 3},
		{"any", "/v2/a/b/c?q=1", "PUT", 3},
		{"any", "/v2x", "PUT", -1},
		{"[::1]:8080", "/files/a.json", "POST", 4},
		{"[::1]", "/files/a.json", "POST", 4},
		{"[::1]", "/files/a.xml", "POST", -1},
		{"[::1]", "/files/d/a.json", "POST", -1},
		{"h", "/v3/x/items", "POST", 5},
		{"h", "/v3/x/items/1/2", "POST", 5},
		{"h", "/v3/x/y/items/1", "POST", -1},
		{"h", "/v3/x/itemsz", "POST", -1},
		{"", "", "", -1},
	}
	for _, tt := range tests {
		got := c.Match(tt.host, tt.path, tt.method)
		gotIdx := -1
		for i := range c.Routes {
			if got == &c.Routes[i] {
				gotIdx = i
			}
		}
		if gotIdx != tt.want {
			t.Errorf("Match(%q, %q, %q) = route %d, want %d", tt.host, tt.path, tt.method, gotIdx, tt.want)
		}
	}
}

func TestMatchFirstWins(t *testing.T) {
	c, err := Parse([]byte(`{
	  "control_plane": {"cluster": "c", "authority": "a", "token": "t"},
	  "routes": [
	    {"match": {"prefix": "/"}, "scope": {"headers": ["a"]}, "ttl": "1h"},
	    {"match": {"path": "/payments"}, "scope": {"headers": ["a"]}, "ttl": "2h"}
	  ]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Match("h", "/payments", "POST"); got != &c.Routes[0] {
		t.Errorf("Match picked %+v, want the first route", got)
	}
}

func TestNormalizeHost(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{"example.com:80", "example.com"},
		{"[2001:DB8::1]:443", "[2001:db8::1]"},
		{"[::1]", "[::1]"},
		{"", ""},
		{":80", ""},
		// The only upper-case letter at either end of A-Z, with and
		// without characters below 'A' or above 'Z' beside it: a host
		// left in upper case would not match its route.
		{"A.example.com", "a.example.com"},
		{"exampleZ.com", "examplez.com"},
		{"EXAMPLE", "example"},
		{"LOCALHOST:8080", "localhost"},
	} {
		if got := normalizeHost(tt.in); got != tt.want {
			t.Errorf("normalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Matching on the request path must not allocate: it runs on every request.
func TestMatchAllocs(t *testing.T) {
	c, err := Parse([]byte(`{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, "routes": [
	  {"match": {"host": "*.example.com", "glob": "/v1/*/x"}, "scope": {"headers": ["a"]}},
	  {"match": {"glob": "/v2/*/items/**"}, "scope": {"headers": ["a"]}},
	  {"match": {"path": "/p"}, "scope": {"headers": ["a"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/p?x=1", "/v2/a/items/b/c", "/nothing"} {
		if n := testing.AllocsPerRun(100, func() { c.Match("api.example.com:443", p, "POST") }); n != 0 {
			t.Errorf("Match(%q) allocates %v times per call, want 0", p, n)
		}
	}
}
