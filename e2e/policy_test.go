package e2e

import (
	"os"
	"testing"

	"github.com/idemgate/idemgate/plugin/policy"
)

// The e2e policy must be one the filter accepts, and its routes must be
// the ones the suite addresses by Host.
func TestPolicyParses(t *testing.T) {
	raw, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", policyFile, err)
	}
	for _, tt := range []struct {
		host      string
		mode      policy.FailureMode
		edgeCache bool
	}{
		{hostDefault, policy.FailClosed, true},
		{hostFailOpen, policy.FailOpen, true},
		{hostNoEdge, policy.FailClosed, false},
	} {
		r := cfg.Match(tt.host, "/payments", "POST")
		if r == nil {
			t.Errorf("host %q: POST /payments not governed", tt.host)
			continue
		}
		if r.FailureMode != tt.mode || (r.EdgeCacheTTL > 0) != tt.edgeCache {
			t.Errorf("host %q: failure_mode %s, edge cache %v; want %s, %v", tt.host, r.FailureMode, r.EdgeCacheTTL > 0, tt.mode, tt.edgeCache)
		}
	}
}
