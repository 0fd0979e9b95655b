package policy

import "testing"

// TestNameCharacters: a route's host and an environment variable's name
// accept the ends of each character range they allow and refuse the
// characters just outside them.
func TestNameCharacters(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"a.z", true}, {"A.Z", true}, {"h0.h9", true}, {"a-b_c.example", true},
		{"a@b", false}, {"a[b", false}, {"a`b", false}, {"a{b", false}, {"a/b", false},
	} {
		if _, err := validHost(tt.host); (err == nil) != tt.ok {
			t.Errorf("validHost(%q) = %v, want ok=%v", tt.host, err, tt.ok)
		}
	}
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"A", true}, {"Z", true}, {"a", true}, {"z", true}, {"_0", true}, {"x9", true}, {"K_1", true},
		{"", false}, {"0A", false}, {"9A", false}, {"A-B", false}, {"A@", false}, {"A[", false},
		{"a`", false}, {"a{", false}, {"a/", false}, {"a:", false},
	} {
		if got := validEnvName(tt.name); got != tt.ok {
			t.Errorf("validEnvName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}
