package policy

import (
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes: Parse must not panic; what it refuses
// wraps ErrInvalid; what it accepts holds the invariants the filter relies
// on. The seed corpus is in testdata/fuzz/FuzzParse and runs in `go test`.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(withRoute(`"on_in_progress": "wait", "release_statuses": ["5xx", "409"]`)))
	f.Add([]byte(withRoute(`"indeterminate_statuses": ["5xx"], "store_statuses": ["2xx"], "not_executed_header": "x-n", "allow_anonymous": true`)))
	f.Add([]byte(envoyRoutes))
	f.Add([]byte(withRoute(`"host_aliases": [{"host": "a.example", "aliases": ["[::1]:8443", "b.example:80"]}]`)))
	f.Add([]byte(withCP(`"cluster": "c", "authority": "a", "token_env": "IDEMGATE_FILTER_TOKEN"`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(c.Routes) == 0 {
			t.Fatal("accepted a configuration without routes")
		}
		if cp := c.ControlPlane; (cp.Token != "") == (cp.TokenEnv != "") == !cp.InsecureNoAuth || cp.Token != "" && cp.TokenEnv != "" {
			t.Fatalf("accepted a control plane without exactly one of token, token_env and insecure_no_auth: %v", cp)
		}
		for i := range c.Routes {
			r := &c.Routes[i]
			switch {
			case r.Lease <= 0 || r.Lease > r.TTL:
				t.Fatalf("route %d: lease %v, ttl %v", i, r.Lease, r.TTL)
			case r.MaxBodyBytes <= 0 || r.MaxBodyBytes > MaxMaxBodyBytes:
				t.Fatalf("route %d: max body %d", i, r.MaxBodyBytes)
			case r.MaxKeyLength < 1 || r.MaxKeyLength > MaxKeyLength:
				t.Fatalf("route %d: max key length %d", i, r.MaxKeyLength)
			case len(r.Match.Methods) == 0 || r.KeyHeader == "":
				t.Fatalf("route %d: no methods or key header", i)
			case len(r.Scope.Headers) == 0 && r.Scope.Metadata == nil:
				t.Fatalf("route %d: no scope", i)
			case r.OnInProgress == Wait && (r.WaitTimeout <= 0 || r.WaitTimeout > r.Lease):
				t.Fatalf("route %d: wait timeout %v", i, r.WaitTimeout)
			}
			for st := minStatus; st <= maxStatus; st++ {
				n := 0
				for _, set := range []*StatusSet{&r.StoreStatuses, &r.ReleaseStatuses, &r.IndeterminateStatuses} {
					if set.Has(st) {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("route %d: status %d in %d sets, want exactly one", i, st, n)
				}
			}
			if r.Classify(600) != Store {
				t.Fatalf("route %d: status 600 not stored", i)
			}
			if r.NotExecutedHeader == "" || r.ReplayHeader(r.NotExecutedHeader) {
				t.Fatalf("route %d: not-executed header %q empty or replayed", i, r.NotExecutedHeader)
			}
			if r.ReplayedHeader == "" || r.ReplayHeader(r.ReplayedHeader) || r.ReplayedHeader == r.NotExecutedHeader {
				t.Fatalf("route %d: replay header %q empty, replayed or the not-executed header", i, r.ReplayedHeader)
			}
			if r.Name != "" && c.Named(r.Name) != r {
				t.Fatalf("route %d: name %q selects another route", i, r.Name)
			}
			for alias, h := range r.HostAliases {
				if r.CanonicalHost(alias) != h || r.CanonicalHost(h) != h {
					t.Fatalf("route %d: alias %q of %q does not map", i, alias, h)
				}
			}
			if r.Fingerprint.Validate() != nil {
				t.Fatalf("route %d: invalid fingerprint selection", i)
			}
			// Matching what was accepted must not panic either.
			c.Match(r.Match.Host, r.Match.Path+r.Match.Prefix+r.Match.Glob, r.Match.Methods[0])
			if _, err := c.Select(Request{Host: r.Match.Host, Path: r.Match.Path + r.Match.Prefix + r.Match.Glob, Method: r.Match.Methods[0], RouteName: r.Match.RouteName, PolicyRoute: r.Name}); err != nil {
				t.Fatalf("route %d: Select by its own name: %v", i, err)
			}
		}
	})
}
