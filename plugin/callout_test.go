//go:build !wasm

package main

import "testing"

// TestBearerOf: the cached header follows the token.
func TestBearerOf(t *testing.T) {
	for i, token := range []string{"t1", "t1", "t2", "t1", "", "t1"} {
		if got, want := bearerOf(token), "Bearer "+token; got != want {
			t.Errorf("call %d: bearerOf(%q) = %q, want %q", i, token, got, want)
		}
	}
}
