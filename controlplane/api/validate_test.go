package api

import (
	"strings"
	"testing"
)

func TestValidateHolder(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string // substring; "" means valid
	}{
		{"min length", strings.Repeat("a", MinHolderLen), ""},
		{"max length", strings.Repeat("Z", MaxHolderLen), ""},
		{"every allowed class", "AZaz09-_AZaz09-_", ""},
		{"base32 nonce", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""},
		{"empty", "", "is empty"},
		{"too short", strings.Repeat("a", MinHolderLen-1), "want 16 to 64"},
		{"too long", strings.Repeat("a", MaxHolderLen+1), "want 16 to 64"},
		{"dot", "aaaaaaaa.aaaaaaaa", "byte 8"},
		{"space", "aaaaaaaa aaaaaaaa", "byte 8"},
		{"non-ASCII", "aaaaaaaaaaaaaaaé", "byte 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateHolder(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateHolder(%q) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateHolder(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestValidateStatus(t *testing.T) {
	tests := []struct {
		in int
		ok bool
	}{
		{99, false}, {100, true}, {200, true}, {599, true}, {600, true}, {999, true}, {1000, false}, {0, false}, {-200, false},
	}
	for _, tt := range tests {
		if err := ValidateStatus(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateStatus(%d) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestValidateOnIndeterminate(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"", true}, {LeaseLock, true}, {LeaseRelease, true}, {"Lock", false}, {"take_over", false}, {" release", false},
	}
	for _, tt := range tests {
		if err := ValidateOnIndeterminate(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateOnIndeterminate(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestCheckDuplicateMembers(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string // substring; "" means no duplicate found
	}{
		{"flat", `{"a":1,"b":2}`, ""},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":2}}`, ""},
		{"same name at two depths", `{"x":{"x":{"x":1}}}`, ""},
		{"arrays of objects", `[{"a":1},{"a":2}]`, ""},
		{"not JSON is not this check's business", `{"a":`, ""},
		{"top level", `{"a":1,"a":2}`, `duplicate member "a"`},
		{"nested", `{"response":{"status":200,"status":500}}`, `"response.status"`},
		{"in an array", `{"h":[{"n":1},{"n":1,"n":2}]}`, `"h[1].n"`},
		{"escaped spelling of the same name", `{"token":"a","tok\u0065n":"b"}`, `duplicate member "token"`},
		{"deep", strings.Repeat(`{"a":`, 50) + `{"b":1,"b":1}` + strings.Repeat(`}`, 50), `duplicate member`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDuplicateMembers([]byte(tt.in))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckDuplicateMembers(%s) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckDuplicateMembers(%s) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
