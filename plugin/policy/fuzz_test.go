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
		if c.ControlPlane.Token == "" && !c.ControlPlane.InsecureNoAuth {
			t.Fatal("accepted a control plane without a token")
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
				if r.StoreStatuses.Has(st) == r.ReleaseStatuses.Has(st) {
					t.Fatalf("route %d: status %d in both sets or neither", i, st)
				}
			}
			if r.Fingerprint.Validate() != nil {
				t.Fatalf("route %d: invalid fingerprint selection", i)
			}
			// Matching what was accepted must not panic either.
			c.Match(r.Match.Host, r.Match.Path+r.Match.Prefix+r.Match.Glob, r.Match.Methods[0])
		}
	})
}
