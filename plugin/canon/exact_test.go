package canon

import (
	"math/big"
	"strings"
	"testing"
)

// TestExactNumbers covers the deviation from RFC 8785 (doc.go, "Exact
// numbers"): a number whose double denotes another number is written with
// its own digits, laid out by ECMAScript's rules; every other number keeps
// its RFC 8785 form and the report stays empty.
func TestExactNumbers(t *testing.T) {
	tests := []struct {
		in, want string
		exact    bool
	}{
		// Issue 10, case 7: 64-bit ids that share a double.
		{"1234567890123456789", "1234567890123456789", true},
		{"1234567890123456790", "1234567890123456790", true},
		{"9007199254740993", "9007199254740993", true},
		{"-9007199254740993", "-9007199254740993", true},
		{"9007199254740992", "9007199254740992", false},
		{"9007199254740993.000", "9007199254740993", true},
		{"9007199254740993e0", "9007199254740993", true},
		{"90071992547409930e-1", "9007199254740993", true},
		{"9.007199254740993E+15", "9007199254740993", true},
		{"0.9007199254740993e16", "9007199254740993", true},
		// Plain notation up to 21 integer digits, as ECMAScript.
		{"123456789012345678901", "123456789012345678901", true},
		{"1234567890123456789012", "1.234567890123456789012e+21", true},
		{"123456789012345678901234", "1.23456789012345678901234e+23", true},
		{"10000000000000000000000000000001", "1.0000000000000000000000000000001e+31", true},
		{"100000000000000000000000", "1e+23", false}, // its double prints as 1e+23
		// Decimals: plain from 1e-6, exponential below.
		{"0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827", true},
		{"333333333.33333329", "333333333.33333329", true},
		{"0.0000012345678901234567890", "0.000001234567890123456789", true},
		{"0.00000012345678901234567890", "1.234567890123456789e-7", true},
		{"-0.00000012345678901234567890", "-1.234567890123456789e-7", true},
		{"1.00000000000000000001e-7", "1.00000000000000000001e-7", true},
		{"1.00000000000000000001E+30", "1.00000000000000000001e+30", true},
		// Denormals and underflow: the double is another number.
		{"5e-324", "5e-324", false},
		{"4.9e-324", "4.9e-324", true},
		{"1e-400", "1e-400", true},
		{"-1e-400", "-1e-400", true},
		{"2.5e-400", "2.5e-400", true},
		// Leading zeros of exponents count for nothing.
		{"1e-0400", "1e-400", true},
		{"1E+0021", "1e+21", false},
		{"1e-000000000000000000000000000005", "0.00001", false},
		{"9007199254740993e-00000000000000000000000000", "9007199254740993", true},
		// Zero of any sign, digits or exponent is 0.
		{"-0", "0", false},
		{"-0.0000000000000000000000e-999", "0", false},
		{"0e99999999999999999999999", "0", false},
		{"-0.000e-99999999999999999999999", "0", false},
		// Exponents beyond int64: the arithmetic stays exact, with a
		// borrow and a carry across the low 18 digits.
		{"1e-99999999999999999999", "1e-99999999999999999999", true},
		{"12.5e-1000000000000000000000", "1.25e-999999999999999999999", true},
		{"0.001e-999999999999999999999", "1e-1000000000000000000002", true},
		{"-0.00123e-0000999999999999999999999", "-1.23e-1000000000000000000002", true},
		{"123e-1000000000000000000", "1.23e-999999999999999998", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var rep Report
			got, err := AppendReport(nil, []byte(`{"n":[0,`+tt.in+`]}`), &rep)
			if err != nil {
				t.Fatalf("Append(%s): %v", tt.in, err)
			}
			if want := `{"n":[0,` + tt.want + `]}`; string(got) != want {
				t.Errorf("Append(%s) = %s, want %s", tt.in, got, want)
			}
			var wantExact []int
			if tt.exact {
				wantExact = []int{len(`{"n":[0,`)}
			}
			if !equalInts(rep.Exact, wantExact) {
				t.Errorf("report of %s: exact at %v, want %v", tt.in, rep.Exact, wantExact)
			}
			// The canonical form is a fixed point.
			again, err := Append(nil, got)
			if err != nil || string(again) != string(got) {
				t.Errorf("Append(%s) = %s, %v: not a fixed point", got, again, err)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReportReset checks that a reused Report describes the last document
// only, and that a refused document leaves it empty.
func TestReportReset(t *testing.T) {
	var rep Report
	if _, err := AppendReport(nil, []byte(`[9007199254740993,1,1e-400]`), &rep); err != nil {
		t.Fatal(err)
	}
	if !equalInts(rep.Exact, []int{1, 20}) {
		t.Fatalf("exact at %v, want [1 20]", rep.Exact)
	}
	if _, err := AppendReport(nil, []byte(`[1]`), &rep); err != nil || len(rep.Exact) != 0 {
		t.Fatalf("after a plain document: exact at %v, err %v", rep.Exact, err)
	}
	if _, err := AppendReport(nil, []byte(`[9007199254740993,]`), &rep); err == nil || len(rep.Exact) != 0 {
		t.Fatalf("after a refused document: exact at %v, err %v", rep.Exact, err)
	}
}

// numberCorpus holds numbers near each other: neighbours that share a
// double, spellings of one value, and values on both sides of every
// notation boundary. TestNumbersInjective and FuzzNumbersInjective use it.
var numberCorpus = []string{
	"0", "-0", "0.0", "0e5",
	"1", "1.0", "10e-1", "0.1e1", "1.00000000000000000001", "0.99999999999999999999",
	"9007199254740992", "9007199254740993", "9007199254740994", "9007199254740993.5",
	"1234567890123456789", "1234567890123456790", "1234567890123456800", "1.2345678901234568e18",
	"-1234567890123456789", "-1234567890123456790",
	"18446744073709551615", "18446744073709551616", "18446744073709551617",
	"0.1", "0.1000000000000000055511151231257827", "0.10000000000000001",
	"333333333.3333333", "333333333.33333329", "333333333.33333331",
	"1e21", "1e+21", "1000000000000000000000", "1000000000000000000001", "999999999999999999999",
	"0.000001", "0.0000010000000000000000001", "1e-7", "1.0000000000000000001e-7",
	"5e-324", "4.9e-324", "4.94065645841246544e-324", "2.5e-324", "1e-400", "1.0e-400", "10e-401", "-1e-400",
	"1.7976931348623157e308", "1.79769313486231571e308",
	"1e-99999999999999999999", "10e-100000000000000000000", "1e-99999999999999999998",
}

// TestNumbersInjective checks the promise of the deviation on the corpus:
// two numbers get one canonical form exactly when they denote one value.
func TestNumbersInjective(t *testing.T) {
	for i, a := range numberCorpus {
		for _, b := range numberCorpus[i:] {
			checkInjective(t, a, b)
		}
	}
}

// FuzzNumbersInjective checks the same on any two JSON numbers.
func FuzzNumbersInjective(f *testing.F) {
	for i, a := range numberCorpus {
		f.Add(a, numberCorpus[(i+1)%len(numberCorpus)])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, s := range []string{a, b} {
			if end, ok := scanNumber(s, 0); !ok || end != len(s) {
				return
			}
		}
		checkInjective(t, a, b)
	})
}

// checkInjective canonicalizes the JSON numbers a and b and compares the
// outcome with their values as the oracle below reads them.
func checkInjective(t *testing.T, a, b string) {
	t.Helper()
	ca, errA := Append(nil, []byte(a))
	cb, errB := Append(nil, []byte(b))
	if errA != nil || errB != nil {
		return // overflow: refused, as RFC 8785 does
	}
	va, vb := exactValue(t, a), exactValue(t, b)
	if (va == vb) != (string(ca) == string(cb)) {
		t.Fatalf("%s -> %s (value %s)\n%s -> %s (value %s)", a, ca, va, b, cb, vb)
	}
	// Stronger, and what makes it so: each form denotes its input's value.
	if got := exactValue(t, string(ca)); got != va {
		t.Fatalf("%s -> %s, which denotes %s, not %s", a, ca, got, va)
	}
}

// exactValue is the test's own reading of a JSON number: its value as
// "±0.DIGITS×10^EXP" with no trailing zero in DIGITS (and "0" for zero).
// The exponent is a big.Int, so that no exponent is too long; where the
// exponent is small, big.Rat confirms the reading independently.
func exactValue(t *testing.T, s string) string {
	t.Helper()
	mant, expText, _ := strings.Cut(strings.ToLower(s), "e")
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	point := int64(len(intPart)) - int64(len(intPart+frac)-len(digits)) // shift for the stripped zeros
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return "0"
	}
	exp := new(big.Int)
	if expText != "" {
		if _, ok := exp.SetString(strings.TrimPrefix(expText, "+"), 10); !ok {
			t.Fatalf("bad exponent in %q", s)
		}
	}
	exp.Add(exp, big.NewInt(point))
	sign := "+"
	if neg {
		sign = "-"
	}
	v := sign + "0." + digits + "e" + exp.String()
	if exp.IsInt64() && exp.Int64() > -2000 && exp.Int64() < 2000 {
		r1, ok1 := new(big.Rat).SetString(s)
		r2, ok2 := new(big.Rat).SetString(v)
		if !ok1 || !ok2 || r1.Cmp(r2) != 0 {
			t.Fatalf("oracle: %s read as %s", s, v)
		}
	}
	return v
}

// TestExactNumbersExpAdjust checks the exponent arithmetic used beyond
// int64 against math/big, including carries and borrows through the
// low 18 digits.
func TestExactNumbersExpAdjust(t *testing.T) {
	mags := []string{
		"1000000000000000000", "1000000000000000000000", "999999999999999999999",
		"1999999999999999999", "123456789012345678901234567890", "100000000000000000000000000000000000001",
	}
	deltas := []int64{0, 1, -1, 2, -2, 999, -999, 1 << 40, -(1 << 40), 999999999999999999, -999999999999999999}
	for _, m := range mags {
		for _, d := range deltas {
			want := new(big.Int)
			want.SetString(m, 10)
			want.Add(want, big.NewInt(d))
			got := string(appendAdjusted(nil, m, d))
			if got != want.String() {
				t.Errorf("%s%+d = %s, want %s", m, d, got, want)
			}
		}
	}
}
