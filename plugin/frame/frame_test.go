package frame

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppend: the bytes of counts and fields, written out by hand, after
// what b already holds.
func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"count 0", Count([]byte("x"), 0), "78 0000000000000000"},
		{"count", Count(nil, 0x0102030405), "0000000102030405"},
		{"field", Field([]byte("x"), "abc"), "78 0000000000000003 616263"},
		{"empty field", Field(nil, ""), "0000000000000000"},
		{"bytes field", Field(nil, []byte{0, 0xff}), "0000000000000002 00ff"},
		{"two fields", Field(Field(nil, "a"), "bc"), "0000000000000001 61 0000000000000002 6263"},
		{"field16", must(Field16([]byte("x"), "abc")), "78 0003 616263"},
		{"field32", must(Field32(nil, []byte{7})), "00000001 07"},
		{"empty field16", must(Field16(nil, "")), "0000"},
	}
	for _, tt := range tests {
		if want := unhex(t, tt.want); !bytes.Equal(tt.got, want) {
			t.Errorf("%s: % x, want % x", tt.name, tt.got, want)
		}
	}
}

func must(b []byte, ok bool) []byte {
	if !ok {
		return nil
	}
	return b
}

// TestOpenClose: a field written before its length is known frames as
// Field does, after what b already holds.
func TestOpenClose(t *testing.T) {
	for _, body := range []string{"", "x", strings.Repeat("body", 100)} {
		b, start := Open([]byte("prefix"))
		b = append(b, body...)
		Close(b, start)
		if want := Field([]byte("prefix"), body); !bytes.Equal(b, want) {
			t.Errorf("Open, %d bytes, Close = % x, want % x", len(body), b, want)
		}
		if string(b[start:]) != body {
			t.Errorf("start %d does not point at the field's bytes", start)
		}
	}
}

// TestCut: the matchers accept exactly what the writers write, and leave
// b as it was on a mismatch.
func TestCut(t *testing.T) {
	b := Field(Count(nil, 2), "ab")
	b = append(b, "rest"...)
	rest, ok := CutCount(b, 2)
	if !ok {
		t.Fatal("CutCount of the count written: no match")
	}
	if rest, ok = CutField(rest, "ab"); !ok || string(rest) != "rest" {
		t.Fatalf("CutField = %q, %v; want \"rest\", true", rest, ok)
	}
	if rest, ok := CutField(Field(nil, []byte{1, 2}), []byte{1, 2}); !ok || len(rest) != 0 {
		t.Errorf("CutField of bytes = %q, %v", rest, ok)
	}
	mismatches := []struct {
		name string
		b    []byte
		f    string
	}{
		{"other bytes", Field(nil, "ab"), "ac"},
		{"other length", Field(nil, "ab"), "abc"},
		{"shorter field", Field(nil, "abc"), "ab"},
		{"truncated bytes", Field(nil, "abc")[:CountLen+2], "abc"},
		{"truncated length", Field(nil, "abc")[:CountLen-1], "abc"},
		{"empty", nil, ""},
	}
	for _, m := range mismatches {
		if rest, ok := CutField(m.b, m.f); ok || !bytes.Equal(rest, m.b) {
			t.Errorf("%s: CutField = % x, %v; want no match, b unchanged", m.name, rest, ok)
		}
	}
	if rest, ok := CutCount(Count(nil, 1), 2); ok || len(rest) != CountLen {
		t.Errorf("CutCount of another count = % x, %v", rest, ok)
	}
}

// TestShortLengths: a field longer than its length can say is refused,
// b unchanged; the longest that fits is written.
func TestShortLengths(t *testing.T) {
	if b, ok := Field16([]byte("x"), strings.Repeat("a", 0x10000)); ok || string(b) != "x" {
		t.Errorf("Field16 of 0x10000 bytes: %d bytes, %v; want b unchanged, false", len(b), ok)
	}
	b, ok := Field16(nil, strings.Repeat("a", 0xffff))
	if !ok || len(b) != 2+0xffff || b[0] != 0xff || b[1] != 0xff {
		t.Errorf("Field16 of 0xffff bytes: %d bytes, %v", len(b), ok)
	}
}

// Framing is what makes a preimage injective: moving bytes between
// fields changes the bytes.
func TestInjective(t *testing.T) {
	pairs := [][2][]string{
		{{"ab", "c"}, {"a", "bc"}},
		{{"", "abc"}, {"abc", ""}},
		{{"a"}, {"a", ""}},
	}
	for _, p := range pairs {
		var x, y []byte
		for _, f := range p[0] {
			x = Field(x, f)
		}
		for _, f := range p[1] {
			y = Field(y, f)
		}
		if bytes.Equal(x, y) {
			t.Errorf("%q and %q frame alike", p[0], p[1])
		}
	}
}

// TestHeader: a header frames as its name, the count of its values and
// each value trimmed, in order; present says a value is not empty.
func TestHeader(t *testing.T) {
	headers := [][2]string{{"X-Tenant", " a\t"}, {"other", "x"}, {"x-tenant", ""}, {"x-empty", " \t "}}
	tests := []struct {
		name    string
		want    []byte
		present bool
	}{
		{"x-tenant", Field(Field(Count(Field(nil, "x-tenant"), 2), "a"), ""), true},
		{"X-TENANT", Field(Field(Count(Field(nil, "X-TENANT"), 2), "a"), ""), true},
		{"x-empty", Field(Count(Field(nil, "x-empty"), 1), ""), false},
		{"x-absent", Count(Field(nil, "x-absent"), 0), false},
	}
	for _, tt := range tests {
		got, present := Header([]byte("p"), headers, tt.name)
		if string(got) != "p"+string(tt.want) || present != tt.present {
			t.Errorf("Header(%s) = % x, %v; want % x, %v", tt.name, got, present, append([]byte("p"), tt.want...), tt.present)
		}
	}
}
