package api

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string // substring; "" means valid
	}{
		{"plain", "k1", ""},
		{"uuid", "7f9c24e8-3b12-4fef-91e5-5ad3c2a1e6a4", ""},
		{"sf-string quotes kept as given", `"k1"`, ""},
		{"non-ASCII", "clé-é", ""},
		{"max length", strings.Repeat("a", 255), ""},
		{"empty", "", "is empty"},
		{"too long", strings.Repeat("a", 256), "more than 255"},
		{"newline", "a\nb", "control character at byte 1"},
		{"NUL", "\x00", "control character at byte 0"},
		{"DEL", "a\x7f", "control character"},
		{"C1 control", "a\u0085", "control character"},
		{"invalid UTF-8", "a\xff", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName("key", tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateName(%q) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateName(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
