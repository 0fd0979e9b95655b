package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The README's example is testdata/demo.json, and it parses.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```json\n")
	if !ok {
		t.Fatal("README.md has no ```json block")
	}
	example, _, _ := strings.Cut(rest, "```")
	file, err := os.ReadFile("testdata/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := json.Compact(&a, []byte(example)); err != nil {
		t.Fatalf("README example: %v", err)
	}
	if err := json.Compact(&b, file); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("README example differs from testdata/demo.json")
	}
	c, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	// What the demo promises.
	r := c.Match("localhost:8080", "/payments", "POST")
	switch {
	case r == nil:
		t.Fatal("POST /payments is not governed")
	case !r.Required || r.KeyHeader != "idempotency-key" || r.FailureMode != FailClosed:
		t.Errorf("route %+v: want the key required and fail-closed", r)
	case len(r.Scope.Headers) != 1 || r.Scope.Headers[0] != "authorization":
		t.Errorf("scope %+v, want the authorization header", r.Scope)
	}
	if c.Match("localhost:8080", "/payments", "GET") != nil {
		t.Error("GET /payments is governed")
	}
}
