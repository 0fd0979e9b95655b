package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name   string
		raw    string
		format KeyFormat
		maxLen int
		want   string
		err    error
	}{
		{"sf-string", `"k1"`, KeyAny, 0, "k1", nil},
		{"sf-string strict", `"k1"`, KeySFString, 0, "k1", nil},
		{"bare UUID (Stripe)", "8e03978e-40d5-43e8-bc93-6894a57f9324", KeyAny, 0, "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"quoted UUID", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, KeyAny, 0, "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"OWS trimmed", " \t\"k1\"\t ", KeyAny, 0, "k1", nil},
		{"bare OWS trimmed", "  k1 ", KeyAny, 0, "k1", nil},
		{"escaped quote", `"a\"b"`, KeyAny, 0, `a"b`, nil},
		{"escaped backslash", `"a\\b"`, KeyAny, 0, `a\b`, nil},
		{"space inside sf-string", `"a b"`, KeyAny, 0, "a b", nil},
		{"bare punctuation", "ord_123:retry#1", KeyAny, 0, "ord_123:retry#1", nil},
		{"255 bare", long, KeyAny, 0, long, nil},
		{"255 quoted", `"` + long + `"`, KeyAny, 0, long, nil},
		{"escapes count once", `"` + strings.Repeat(`\\`, 255) + `"`, KeyAny, 0, strings.Repeat(`\`, 255), nil},
		{"custom max", "abcd", KeyAny, 4, "abcd", nil},

		{"missing", "", KeyAny, 0, "", ErrKeyEmpty},
		{"only OWS", " \t ", KeyAny, 0, "", ErrKeyEmpty},
		{"empty sf-string", `""`, KeyAny, 0, "", ErrKeyEmpty},
		{"bare refused when strict", "k1", KeySFString, 0, "", ErrKeyMalformed},
		{"256 bare", long + "a", KeyAny, 0, "", ErrKeyTooLong},
		{"256 quoted", `"` + long + `a"`, KeyAny, 0, "", ErrKeyTooLong},
		{"over custom max", "abcde", KeyAny, 4, "", ErrKeyTooLong},
		{"unterminated", `"k1`, KeyAny, 0, "", ErrKeyMalformed},
		{"lone quote", `"`, KeyAny, 0, "", ErrKeyMalformed},
		{"trailing after quote", `"k1"x`, KeyAny, 0, "", ErrKeyMalformed},
		{"parameters", `"k1";a=1`, KeyAny, 0, "", ErrKeyMalformed},
		{"bad escape", `"a\nb"`, KeyAny, 0, "", ErrKeyMalformed},
		{"escape at end", `"a\`, KeyAny, 0, "", ErrKeyMalformed},
		{"control in sf-string", "\"a\x01b\"", KeyAny, 0, "", ErrKeyMalformed},
		{"tab in sf-string", "\"a\tb\"", KeyAny, 0, "", ErrKeyMalformed},
		{"non-ASCII in sf-string", `"café"`, KeyAny, 0, "", ErrKeyMalformed},
		{"DEL in sf-string", "\"a\x7fb\"", KeyAny, 0, "", ErrKeyMalformed},
		{"space in bare", "a b", KeyAny, 0, "", ErrKeyMalformed},
		{"tab in bare", "a\tb", KeyAny, 0, "", ErrKeyMalformed},
		{"control in bare", "a\x00b", KeyAny, 0, "", ErrKeyMalformed},
		{"non-ASCII bare", "café", KeyAny, 0, "", ErrKeyMalformed},
		{"quote inside bare", `a"b`, KeyAny, 0, "", ErrKeyMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.raw, tt.format, tt.maxLen)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("ParseKey(%q) error = %v, want %v", tt.raw, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("ParseKey(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

// TestParseKeyErrorNamesTheByte: the 400's detail points at the offending
// byte of the raw value, so a client can find it.
func TestParseKeyErrorNamesTheByte(t *testing.T) {
	for _, tt := range []struct {
		raw, want string
	}{
		{`"ab\nc"`, "at byte 3,"},
		{`"a\`, "at byte 2,"},
		{"\"ab\x01\"", "byte 3 is"},
		{"abc d", "whitespace at byte 3"},
		{"ab\x00", "control character at byte 2"},
		{"abcé", "non-ASCII byte at 3"},
		{`ab"`, "quote at byte 2"},
	} {
		_, err := ParseKey(tt.raw, KeyAny, 0)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKey(%q) error = %v, want it to say %q", tt.raw, err, tt.want)
		}
	}
}

// A key that parses is always safe for the control plane's names: printable,
// no control characters, within the bound.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`"k1"`, "k1", `"a\"b"`, `"a\\"`, "", `"`, "\"\x00\""} {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, raw string, maxLen int) {
		for _, format := range []KeyFormat{KeyAny, KeySFString} {
			got, err := ParseKey(raw, format, maxLen)
			if err != nil {
				continue
			}
			limit := maxLen
			if limit <= 0 || limit > MaxKeyLength {
				limit = MaxKeyLength
			}
			if got == "" || len(got) > limit {
				t.Fatalf("ParseKey(%q) = %q: length %d outside 1..%d", raw, got, len(got), limit)
			}
			for i := 0; i < len(got); i++ {
				if got[i] < 0x20 || got[i] >= 0x7f {
					t.Fatalf("ParseKey(%q) = %q: byte %d not printable", raw, got, i)
				}
			}
		}
	})
}
