package policy

import (
	"strings"
	"testing"
)

// TestParseAcceptsEveryBound: each numeric or duration bound of the
// configuration accepts its own ends (TestParseErrors refuses one past
// them), so a bound written < for ≤ is seen from either side.
func TestParseAcceptsEveryBound(t *testing.T) {
	top := func(member string) string {
		return `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"}, ` + member +
			`, "routes": [{"match": {"path": "/"}, "scope": {"headers": ["a"]}}]}`
	}
	for _, tt := range []struct{ name, config string }{
		{"max_held_bytes at its minimum", top(`"max_held_bytes": 65536`)},
		{"max_held_bytes at its maximum", top(`"max_held_bytes": 1073741824`)},
		{"edge_cache_slots off", top(`"edge_cache_slots": 0`)},
		{"edge_cache_slots at its maximum", top(`"edge_cache_slots": 1048576`)},
		{"timeout at its minimum", withCP(`"cluster": "c", "authority": "a", "token": "t", "timeout": "1ms"`)},
		{"timeout at its maximum", withCP(`"cluster": "c", "authority": "a", "token": "t", "timeout": "10s"`)},
		{"token of the first and last visible bytes", withCP(`"cluster": "c", "authority": "a", "token": "!~"`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.config)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

// TestCheckPrintable: visible ASCII is 0x21 to 0x7e; the error names the
// first byte outside it.
func TestCheckPrintable(t *testing.T) {
	for _, tt := range []struct {
		in, want string // want "" means accepted
	}{
		{"!", ""}, {"~", ""}, {"a!~z", ""},
		{" ", "byte 0 "}, {"ab\x7f", "byte 2 "}, {"a\x20b", "byte 1 "}, {"\x80", "byte 0 "},
	} {
		err := checkPrintable(tt.in)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkPrintable(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestInvalidUTF8At: the offset of the first byte that is not UTF-8, past
// multi-byte runes, and -1 for valid input; Parse names it.
func TestInvalidUTF8At(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"", -1}, {"abc", -1}, {"é€😀", -1}, {"\xff", 0}, {"a\xff", 1}, {"é\xff", 2}, {"😀a\xc3", 5},
	} {
		if got := invalidUTF8At([]byte(tt.in)); got != tt.want {
			t.Errorf("invalidUTF8At(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	_, err := Parse([]byte(`{"a": "é` + "\xff" + `"}`))
	if err == nil || !strings.Contains(err.Error(), "not UTF-8 at byte 9") {
		t.Errorf("Parse of invalid UTF-8 = %v, want it to name byte 9", err)
	}
}

// TestShapeErrorNamesTheElement: a wrongly shaped array element is named
// by its own index, not the first one's.
func TestShapeErrorNamesTheElement(t *testing.T) {
	config := `{"control_plane": {"cluster": "c", "authority": "a", "token": "t"},
	  "routes": [{"match": {"path": "/a"}, "scope": {"headers": ["a"]}},
	             {"match": {"path": "/b"}, "scope": {"headers": ["a"]}},
	             {"match": {"path": "/c"}, "scope": {"headers": ["a", 7]}}]}`
	_, err := Parse([]byte(config))
	if err == nil || !strings.Contains(err.Error(), "routes[2].scope.headers[1]") {
		t.Errorf("Parse = %v, want it to name routes[2].scope.headers[1]", err)
	}
}
