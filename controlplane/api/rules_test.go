package api

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTextRules holds each text rule at its limit and one byte over, and
// the characters every one of them refuses.
func TestTextRules(t *testing.T) {
	rules := []struct {
		what  string
		max   int
		check func(string) error
	}{
		{"scope", 255, func(s string) error { return ValidateName("scope", s) }},
		{"key", 255, func(s string) error { return ValidateName("key", s) }},
		{"fingerprint", 1024, ValidateFingerprint},
		{"token", 128, ValidateToken},
	}
	for _, r := range rules {
		tests := []struct {
			name, in string
			wantErr  string // exact; "" means valid
		}{
			{"plain", "k1", ""},
			{"uuid", "7f9c24e8-3b12-4fef-91e5-5ad3c2a1e6a4", ""},
			{"sf-string quotes kept as given", `"k1"`, ""},
			{"non-ASCII", "clé-é", ""},
			{"at the limit", strings.Repeat("a", r.max), ""},
			{"one byte over", strings.Repeat("a", r.max+1), r.what + " is " + strconv.Itoa(r.max+1) + " bytes long, more than " + strconv.Itoa(r.max)},
			{"multi-byte rune across the limit", strings.Repeat("a", r.max-1) + "é", r.what + " is " + strconv.Itoa(r.max+1) + " bytes long, more than " + strconv.Itoa(r.max)},
			{"empty", "", r.what + " is empty"},
			{"newline", "a\nb", r.what + " has a control character at byte 1"},
			{"NUL", "\x00", r.what + " has a control character at byte 0"},
			{"DEL", "a\x7f", r.what + " has a control character at byte 1"},
			{"C1 control", "ab\u0085", r.what + " has a control character at byte 2"},
			{"no-break space is not a control", "a\u00a0", ""},
			{"invalid UTF-8", "a\xff", r.what + " is not valid UTF-8"},
		}
		for _, tt := range tests {
			t.Run(r.what+"/"+tt.name, func(t *testing.T) {
				err := r.check(tt.in)
				switch {
				case tt.wantErr == "" && err != nil:
					t.Errorf("%s %q: %v, want nil", r.what, tt.in, err)
				case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
					t.Errorf("%s %q: %v, want %q", r.what, tt.in, err, tt.wantErr)
				}
			})
		}
	}
}

// TestStoredSize: the count both sides compare with the cap, and where
// the cap falls (a response at the cap is stored whole, one byte over is
// not).
func TestStoredSize(t *testing.T) {
	hdr := [][2]string{{"content-type", "text/plain"}, {"etag", `"x"`}} // 12+10 + 4+3
	tests := []struct {
		name    string
		headers [][2]string
		body    int
		want    int
	}{
		{"status only", nil, 0, 3},
		{"body only", nil, 10, 13},
		{"headers count names and values", hdr, 0, 3 + 22 + 7},
		{"headers and body", hdr, 100, 3 + 22 + 7 + 100},
		{"empty header value", [][2]string{{"x", ""}}, 0, 4},
	}
	for _, tt := range tests {
		if got := StoredSize(tt.headers, tt.body); got != tt.want {
			t.Errorf("%s: StoredSize = %d, want %d", tt.name, got, tt.want)
		}
	}
	// The filter counts headers first and adds the body; the store counts
	// the whole response at once: the same number.
	if a, b := StoredSize(hdr, 0)+100, StoredSize(hdr, 100); a != b {
		t.Errorf("headers then body = %d, whole = %d", a, b)
	}
}

// TestMaxTTL: 366 days, in whole milliseconds (the store compares ttl_ms
// with it).
func TestMaxTTL(t *testing.T) {
	if MaxTTL != 8784*time.Hour || MaxTTL%time.Millisecond != 0 {
		t.Errorf("MaxTTL = %v, want 8784h (366 days)", MaxTTL)
	}
}
