package canon

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// jcsDir holds the RFC 8785 reference vectors, shared read-only beside the
// repository; they are read from there, never copied in. IDEM_JCS_DIR names
// them when the tests run from a copy of the tree (make mutate's mutants).
var jcsDir = cmp.Or(os.Getenv("IDEM_JCS_DIR"), "../../../shared/testdata/jcs")

// vectorDeviations names the RFC 8785 vectors that hold a number whose
// double denotes another number (see doc.go, "Exact numbers"): the RFC's
// output spelling, ours, and how many such numbers the vector holds.
var vectorDeviations = map[string]struct {
	rfc, exact string
	count      int
}{
	"values.json": {"333333333.3333333,", "333333333.33333329,", 1},
}

func TestRFC8785Vectors(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(jcsDir, "input", "*.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no RFC 8785 vectors under %s (err %v): shared/ must sit beside the repository", jcsDir, err)
	}
	for _, in := range inputs {
		name := filepath.Base(in)
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(jcsDir, "output", name))
			if err != nil {
				t.Fatal(err)
			}
			var rep Report
			got, err := AppendReport(nil, src, &rep)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			// Where a vector holds a number that its double does not
			// denote, our documented deviation writes the exact value
			// instead; everything else stays byte for byte.
			d, deviates := vectorDeviations[name]
			if deviates {
				want = bytes.Replace(want, []byte(d.rfc), []byte(d.exact), 1)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			if n := len(rep.Exact); n != d.count {
				t.Errorf("report names %d exact numbers (%v), want %d", n, rep.Exact, d.count)
			}
		})
	}
}

// TestES6NumberSamples runs the sample lines of the RFC author's number test
// file quoted in SOURCE.md ("hex-ieee,expected").
func TestES6NumberSamples(t *testing.T) {
	f, err := os.Open(filepath.Join(jcsDir, "SOURCE.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		hexBits, want, ok := strings.Cut(strings.TrimSpace(sc.Text()), ",")
		if !ok || !strings.HasPrefix(sc.Text(), "    ") {
			continue
		}
		bits, err := strconv.ParseUint(hexBits, 16, 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", sc.Text(), err)
		}
		if got := string(appendES6Number(nil, math.Float64frombits(bits))); got != want {
			t.Errorf("%s: got %s, want %s", hexBits, got, want)
		}
		n++
	}
	if n < 7 {
		t.Fatalf("read %d sample lines from SOURCE.md, want at least 7", n)
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"},
		{"-0", "0"},
		{"-0.0", "0"},
		{"0e10", "0"},
		{"1", "1"},
		{"1.0", "1"},
		{"-1.50", "-1.5"},
		{"4.5", "4.5"},
		{"4.50e0", "4.5"},
		{"0.002", "0.002"},
		{"2e-3", "0.002"},
		{"1e-7", "1e-7"},
		{"1E-7", "1e-7"},
		{"0.000001", "0.000001"},
		{"0.0000001", "1e-7"},
		{"1e30", "1e+30"},
		{"1E+30", "1e+30"},
		{"1e21", "1e+21"},
		{"1e20", "100000000000000000000"},
		{"123456789012345", "123456789012345"},
		{"1234567890123456789", "1234567890123456789"}, // exact: see TestExactNumbers
		{"123456789012345678901234", "1.23456789012345678901234e+23"},
		{"9007199254740993", "9007199254740993"},
		{"9007199254740992", "9007199254740992"},
		{"0.1", "0.1"},
		{"0.30000000000000004", "0.30000000000000004"},
		{"5e-324", "5e-324"},
		{"1.7976931348623157e308", "1.7976931348623157e+308"},
		{"1e-400", "1e-400"}, // exact: its double, 0, is another number
		{"-1e-400", "-1e-400"},
		{"333333333.33333329", "333333333.33333329"},
		{"333333333.3333333", "333333333.3333333"},
		{"1.5e-6", "0.0000015"},
		{"12.3456e4", "123456"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Append(nil, []byte(tt.in))
			if err != nil {
				t.Fatalf("Append(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Append(%s) = %s, want %s", tt.in, got, tt.want)
			}
			// Inside containers the number takes the same path.
			got, err = Append(nil, []byte(`[`+tt.in+`]`))
			if err != nil || string(got) != "["+tt.want+"]" {
				t.Errorf("Append([%s]) = %s, %v", tt.in, got, err)
			}
		})
	}
}

func TestStringsAndNames(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unicode escape of ASCII", `"\u0075"`, `"u"`},
		{"escaped solidus", `"\/"`, `"/"`},
		{"short escapes", `"\b\f\n\r\t\"\\"`, `"\b\f\n\r\t\"\\"`},
		{"other controls lowercase hex", `"\u0000\u001F\u000b"`, `"\u0000\u001f\u000b"`},
		{"DEL and line separator stay raw", `"\u007f\u2028"`, "\"\x7f\u2028\""},
		{"non-ASCII escape", `"\u00E9"`, `"é"`},
		{"surrogate pair", `"\uD83D\uDE00"`, `"😀"`},
		{"raw UTF-8 kept", `"€😀"`, `"€😀"`},
		{"empty", `""`, `""`},
		{"escape-only empty name", `{"\u0061":1,"":2}`, `{"":2,"a":1}`},
		{"key order", `{"b":1,"a":2,"aa":3,"A":4}`, `{"A":4,"a":2,"aa":3,"b":1}`},
		{"UTF-16 order: pair before U+E000", "{\"\\uE000\":1,\"😀\":2,\"z\":3}", "{\"z\":3,\"😀\":2,\"\ue000\":1}"},
		{"escaped names sort decoded", `{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
		{"nested objects", `{"b":{"d":1,"c":2},"a":[{"f":1,"e":2}]}`, `{"a":[{"e":2,"f":1}],"b":{"c":2,"d":1}}`},
		{"whitespace removed", " {\n\t\"a\" : [ 1 , true , null , false ] \r\n} ", `{"a":[1,true,null,false]}`},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		// RFC 8785 3.2.2.2: a name is serialized like any string, so a
		// control character in it is escaped, never written raw.
		{"U+001F in a name", `{"a\u001Fb":1}`, `{"a\u001fb":1}`},
		{"U+001F alone as a name", `{"\u001f":1}`, `{"\u001f":1}`},
		{"NUL and short escapes in a name", `{"\u0000\n\t\"\\":1}`, `{"\u0000\n\t\"\\":1}`},
		{"control names sort decoded", `{"\u001f":1,"\u0001":2," ":3}`, `{"\u0001":2,"\u001f":1," ":3}`},
		{"control name in a nested object", `{"x":{"\u001e":true}}`, `{"x":{"\u001e":true}}`},
		{"names with escapes in nested objects", `{"\u0063":{"\u0062":1,"\u0061":2},"\u0061":"\u00e9"}`, `{"a":"é","c":{"a":2,"b":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Append(nil, []byte(tt.in))
			if err != nil {
				t.Fatalf("Append(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Append(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCompareUTF16(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"a", "b", -1},
		{"a", "a", 0},
		{"a", "aa", -1},
		{"\uffff", "😀", 1}, // U+FFFF vs surrogate D83D
		{"\ue000", "\U00010000", 1},
		{"\ud7ff", "\U00010000", -1},
		{"😀", "😁", -1},
		{"\U00010000", "\U0010FFFF", -1},
		{"é", "z", 1},
		{"xé", "x€", -1},
	}
	for _, tt := range tests {
		got := compareUTF16(tt.a, tt.b)
		if sign(got) != tt.want {
			t.Errorf("compareUTF16(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
		if sign(compareUTF16(tt.b, tt.a)) != -tt.want {
			t.Errorf("compareUTF16(%q, %q) is not antisymmetric", tt.b, tt.a)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   error
		offset int
	}{
		{"empty input", ``, ErrSyntax, 0},
		{"only whitespace", `   `, ErrSyntax, 3},
		{"missing value", `{"a":}`, ErrSyntax, 5},
		{"trailing comma", `[1,]`, ErrSyntax, 3},
		{"missing colon", `{"a" 1}`, ErrSyntax, 5},
		{"trailing garbage", `{} x`, ErrSyntax, 3},
		{"unterminated", `{"a":[1,2`, ErrSyntax, 9},
		{"leading zero", `01`, ErrSyntax, 1},
		{"single quotes", `{'a':1}`, ErrSyntax, 1},
		{"raw control char in string", "\"a\x01\"", ErrSyntax, 2},
		{"bad escape", `"\x"`, ErrSyntax, 2},
		{"NaN", `[NaN]`, ErrNotFinite, 1},
		{"Infinity", `Infinity`, ErrNotFinite, 0},
		{"-Infinity", `{"a":-Infinity}`, ErrNotFinite, 5},
		{"duplicate name", `{"a":1,"a":2}`, ErrDuplicateName, 7},
		{"duplicate via escape", `{"a":1,"\u0061":2}`, ErrDuplicateName, 7},
		{"duplicate nested", `[{"x":{"k":1,"j":2,"k":3}}]`, ErrDuplicateName, 19},
		{"invalid UTF-8 in value", "[\"ab\xff\"]", ErrInvalidUTF8, 4},
		{"invalid UTF-8 in name", "{\"\xc3\":1}", ErrInvalidUTF8, 2},
		{"invalid UTF-8 after escape", "\"\\n\xe2\x82\"", ErrInvalidUTF8, 3},
		{"encoded surrogate in UTF-8", "\"\xed\xa0\x80\"", ErrInvalidUTF8, 1},
		{"lone high surrogate", `"\uD800"`, ErrLoneSurrogate, 1},
		{"lone low surrogate", `["x","\uDC00"]`, ErrLoneSurrogate, 6},
		{"high then non-low", `"\uD800\u0041"`, ErrLoneSurrogate, 1},
		{"high then text", `{"\uD83Dx":1}`, ErrLoneSurrogate, 2},
		{"number too large", `{"n":1e400}`, ErrNumberRange, 5},
		{"negative too large", `-1.8e308`, ErrNumberRange, 0},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), ErrTooDeep, MaxDepth},
		// The walk meets these RFC 8785 problems before the syntax error;
		// the grammar still decides first, as it always has.
		{"invalid UTF-8, then a syntax error", "[\"\xff\",]", ErrSyntax, 5},
		{"duplicate name, then a syntax error", `{"a":1,"a":2,}`, ErrSyntax, 13},
		{"number too large, then a syntax error", `[1e400,]`, ErrSyntax, 7},
		{"lone surrogate, then a syntax error", `["\uD800",x]`, ErrSyntax, 10},
		{"too deep for the walk, then a syntax error", strings.Repeat("[", MaxDepth+1) + "x", ErrSyntax, MaxDepth + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			got, err := Append(prefix, []byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Append(%q) error = %v, want %v", tt.in, err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *canon.Error", err)
			}
			if ce.Offset != tt.offset {
				t.Errorf("offset = %d, want %d (%v)", ce.Offset, tt.offset, err)
			}
			if !strings.Contains(err.Error(), "byte offset "+strconv.Itoa(tt.offset)) {
				t.Errorf("message %q does not name the offset", err)
			}
			if string(got) != "keep" {
				t.Errorf("dst = %q after error, want it unchanged", got)
			}
		})
	}
}

func TestMaxDepthAccepted(t *testing.T) {
	in := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	got, err := Append(nil, []byte(in))
	if err != nil || string(got) != in {
		t.Fatalf("Append at MaxDepth: %v", err)
	}
}

// A pathological nesting of a megabyte must be refused, not crash or crawl:
// compiled to Wasm, unbounded recursion traps the VM (make test runs these
// tests under wazero too).
func TestHugeNestingRefused(t *testing.T) {
	tests := []struct {
		in     string
		offset int
	}{
		{strings.Repeat("[", 1<<20), validatorDepth},
		{strings.Repeat(`{"a":`, 1<<18), validatorDepth * 5},
		{strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20), validatorDepth},
		// The deepest nesting the validator sees; the walk stops it.
		{strings.Repeat("[", validatorDepth) + strings.Repeat("]", validatorDepth), MaxDepth},
		{strings.Repeat(`{"a":`, validatorDepth) + "1" + strings.Repeat("}", validatorDepth), MaxDepth * 5},
		// Brackets in a string do not count; the walk then stops at MaxDepth.
		{`["` + strings.Repeat("[", 2000) + `",` + strings.Repeat("[", 200) + strings.Repeat("]", 201), 2004 + MaxDepth - 1},
	}
	for _, tt := range tests {
		_, err := Append(nil, []byte(tt.in))
		var ce *Error
		if !errors.As(err, &ce) || !errors.Is(err, ErrTooDeep) || ce.Offset != tt.offset {
			t.Errorf("nesting of %d bytes: err = %v, want ErrTooDeep at %d", len(tt.in), err, tt.offset)
		}
	}
}

// Brackets inside strings do not nest.
func TestBracketsInStrings(t *testing.T) {
	in := `["` + strings.Repeat("[{", 2000) + `\"]` + `"]`
	got, err := Append(nil, []byte(in))
	if err != nil || string(got) != in {
		t.Fatalf("Append = %.40q…, %v", got, err)
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	got, err := Append([]byte("prefix:"), []byte(`{"b":2,"a":1}`))
	if err != nil || string(got) != `prefix:{"a":1,"b":2}` {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Canonicalizing canonical output changes nothing.
func TestIdempotent(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join(jcsDir, "input", "*.json"))
	for _, in := range inputs {
		src, _ := os.ReadFile(in)
		once, err := Append(nil, src)
		if err != nil {
			t.Fatal(err)
		}
		twice, err := Append(nil, once)
		if err != nil || !bytes.Equal(once, twice) {
			t.Errorf("%s: not idempotent: %v", in, err)
		}
	}
}

func TestWarmAppendAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	doc := makeDoc(1 << 10)
	dst := make([]byte, 0, 2*len(doc))
	if _, err := Append(dst, doc); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Append(dst[:0], doc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("warm Append allocates %.1f times per call, want at most 1", allocs)
	}
}

// grammarCases are documents at the edges of RFC 8259's grammar, for the
// walk's own checks: it must refuse exactly what gjson's validator refuses.
var grammarCases = []string{
	``, ` `, `true`, `tru`, `truex`, `trux`, `[trux]`, `{"a":nuLL}`, `falsy`, `t`, `nul`, `null `, `nulll`, `false`, `fals`, `falsee`,
	`0`, `-0`, `-`, `--1`, `+1`, `01`, `-01`, `1.`, `1.e5`, `.5`, `1e`, `1e+`, `1E-7`, `1e5.5`,
	`0x10`, `1_000`, `12a`, `1 2`, `[1 2]`, `[1,]`, `[,1]`, `[`, `]`, `[]`, `[ ]`, `[[]`, `[]]`,
	`{}`, `{ }`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a" : 1 }`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`,
	`{a:1}`, `{"a":1}}`, `{"a"::1}`, `{"a":1,"b"}`, `{1:1}`, `{"a",1}`,
	`"`, `"a`, `"a"`, `"\"`, `"\\"`, `"\/"`, `"\x"`, `"\u"`, `"\u12"`, `"\u12G4"`, `"\u00e9"`, `"\uD83D\uDE00"`,
	"\"\t\"", "\"a\x1f\"", "\"\x7f\"", "\"a\nb\"", "\"\xc3\xa9\"", "\"abcdefgh\x01ijklmnop\"",
	"\"abcdefghijklmnop", "\"abcdefghijklmnop\\", "\"abcdefgh\\u00", "[1]\x00", "\x00", "\t\n\r [1] \r\n\t",
	"\f[1]", "[1]\f", "\xef\xbb\xbf[1]", `nan`, `NaN`, `Infinity`, `-Infinity`, `[-]`, `[-a]`,
}

func TestWalkGrammar(t *testing.T) {
	for _, in := range grammarCases {
		checkWalkGrammar(t, []byte(in))
	}
}

// checkWalkGrammar fails when the walk and gjson's validator disagree on
// the grammar of data: the walk accepting what gjson refuses would let
// invalid JSON be fingerprinted; the converse would report a syntax error
// for a valid document.
func checkWalkGrammar(t *testing.T, data []byte) {
	t.Helper()
	if tooDeep(data) >= 0 {
		return // gjson's validator is not safe to run on it compiled to Wasm
	}
	_, err := walk(nil, data, nil)
	valid := gjson.ValidBytes(data)
	switch {
	case err == nil && !valid:
		t.Errorf("walk accepts %q, which gjson refuses", data)
	case errors.Is(err, ErrSyntax) && valid:
		t.Errorf("walk refuses %q as a syntax error (%v), gjson accepts it", data, err)
	}
}
