package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestHeadersUnmarshalJSON(t *testing.T) {
	tests := []struct {
		name, in string
		want     Headers
		wantErr  string // substring; "" means valid
	}{
		{"pairs", `[["a","1"],["b",""]]`, Headers{{"a", "1"}, {"b", ""}}, ""},
		{"empty", `[]`, Headers{}, ""},
		{"null", `null`, nil, ""},
		{"escapes", `[["x","caf\u00e9 \"q\""]]`, Headers{{"x", `café "q"`}}, ""},
		{"one element", `[["a"]]`, nil, "response.headers[0]: want [name, value], got 1 element"},
		{"three elements", `[["a","b","c"]]`, nil, "response.headers[0]: want [name, value], got 3 elements"},
		{"null entry", `[null]`, nil, "response.headers[0]: want [name, value], got JSON null"},
		{"object entry", `[["a","b"],{"a":"b"}]`, nil, "response.headers[1]: want [name, value], got JSON object"},
		{"number value", `[["a",1]]`, nil, "response.headers[0]: value is not a string"},
		{"null name", `[[null,"b"]]`, nil, "response.headers[0]: name is not a string"},
		{"object", `{"a":"b"}`, nil, "response.headers: want an array of [name, value] pairs, got JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r StoredResponse
			err := json.Unmarshal([]byte(`{"status":200,"headers":`+tt.in+`}`), &r)
			if tt.wantErr != "" {
				var he *HeaderError
				if !errors.As(err, &he) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decode %s = %v, want a *HeaderError containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(r.Headers, tt.want) {
				t.Fatalf("decode %s = %q %v, want %q", tt.in, r.Headers, err, tt.want)
			}
		})
	}
	// Encoding is unchanged: an array of two-string arrays.
	b, err := json.Marshal(StoredResponse{Status: 200, Headers: [][2]string{{"a", "b"}}})
	if err != nil || string(b) != `{"status":200,"headers":[["a","b"]]}` {
		t.Errorf("encode = %s %v", b, err)
	}
}

func TestValidateHeaders(t *testing.T) {
	tests := []struct {
		name    string
		in      [][2]string
		wantErr string // substring; "" means valid
	}{
		{"none", nil, ""},
		{"ordinary", [][2]string{{"Content-Type", "application/json"}, {"x-empty", ""}}, ""},
		{"every tchar", [][2]string{{"!#$%&'*+-.^_`|~0123456789abcXYZ", "v"}}, ""},
		{"tab and obs-text in value", [][2]string{{"x", "a\tb caf\u00e9 \x7f"}}, ""},
		{"empty name", [][2]string{{"a", "b"}, {"", "v"}}, "response.headers[1]: name is empty"},
		{"space in name", [][2]string{{"a b", "v"}}, "response.headers[0]: name is not an RFC 9110 token (byte 1)"},
		{"colon", [][2]string{{"a:", "v"}}, "not an RFC 9110 token"},
		{"pseudo-header", [][2]string{{":status", "200"}}, "not an RFC 9110 token (byte 0)"},
		{"non-ASCII name", [][2]string{{"é", "v"}}, "not an RFC 9110 token"},
		{"control in name", [][2]string{{"a\x01", "v"}}, "not an RFC 9110 token"},
		{"CR in value", [][2]string{{"x", "a\rb"}}, "response.headers[0]: value has a CR, LF or NUL at byte 1"},
		{"LF in value", [][2]string{{"x", "ok"}, {"y", "\n"}}, "response.headers[1]: value has a CR, LF or NUL at byte 0"},
		{"NUL in value", [][2]string{{"x", "ab\x00"}}, "at byte 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateHeaders(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateHeaders(%q) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateHeaders(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
