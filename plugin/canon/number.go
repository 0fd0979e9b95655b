package canon

import (
	"math"
	"strconv"
)

// appendES6Number writes the finite double f as ECMAScript's Number.prototype.
// toString does (ECMA-262, Number::toString), which RFC 8785 adopts: the
// shortest digits that round-trip, in plain notation for exponents from -7
// to 20 and in exponential notation ("1e+21", "1e-7") outside.
func appendES6Number(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0') // also -0
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	digits, k, n := shortestDigits(f)
	return layoutES6(dst, digits[:k], n)
}

// shortestDigits returns the shortest digits that round-trip to the
// positive finite double f, their count k, and n, the number of digits
// before the decimal point (f = 0.DIGITS × 10^n).
func shortestDigits(f float64) (digits [20]byte, k, n int) {
	// 'e' with precision -1 gives the shortest round-trip digits as
	// d.ddddde±XX.
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	i := 0
	for ; b[i] != 'e'; i++ {
		if b[i] != '.' {
			digits[k] = b[i]
			k++
		}
	}
	exp := 0
	for _, c := range b[i+2:] {
		exp = exp*10 + int(c-'0')
	}
	if b[i+1] == '-' {
		exp = -exp
	}
	return digits, k, exp + 1
}

// layoutES6 writes the digits (no leading or trailing zero) of a value
// with n digits before its decimal point by ECMAScript's rules.
func layoutES6(dst, digits []byte, n int) []byte {
	k := len(digits)
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		} else {
			dst = append(dst, '-')
		}
		e := n - 1
		if e < 0 {
			e = -e
		}
		dst = strconv.AppendInt(dst, int64(e), 10)
	}
	return dst
}

// number writes the canonical form of the JSON number text raw, found at
// byte offset off, when it is not a short decimal (value tries
// appendShortDecimal first). Where it writes the exact form (doc.go,
// "Exact numbers") rather than RFC 8785's, it notes off in the report.
func (e *encoder) number(dst []byte, raw string, off int) ([]byte, error) {
	out, exact, err := appendNumber(dst, raw, off)
	if exact && e.rep != nil {
		e.rep.Exact = append(e.rep.Exact, off)
	}
	return out, err
}

// appendNumber writes the canonical form of a number that is not a short
// decimal, and reports whether it wrote the exact form.
func appendNumber(dst []byte, raw string, off int) ([]byte, bool, error) {
	f, err := strconv.ParseFloat(raw, 64)
	if math.IsInf(f, 0) {
		return dst, false, &Error{Offset: off, Err: ErrNumberRange, Detail: raw}
	}
	if err != nil { // unreachable: the walk admitted only RFC 8259 numbers
		return dst, false, &Error{Offset: off, Err: ErrSyntax, Detail: err.Error()}
	}
	d := readDecimal(raw)
	switch {
	case f == 0 || d.digits() == 0:
		if f == 0 && d.digits() == 0 {
			return append(dst, '0'), false, nil // zero, whatever its sign
		}
	case d.bigExp == "": // else it underflowed (or overflowed, refused above)
		digits, k, n := shortestDigits(math.Abs(f))
		if d.equals(digits[:k], n) {
			if f < 0 {
				dst = append(dst, '-')
			}
			return layoutES6(dst, digits[:k], n), false, nil
		}
	}
	return d.appendExact(dst), true, nil
}

// decimal is the exact value of a JSON number, read without arithmetic:
// ±0.D×10^(point+exp) where the significant digits D are hi followed by lo
// (two slices of the text, around its '.'), without leading or trailing
// zeros; D is empty for zero.
type decimal struct {
	neg    bool
	hi, lo string
	point  int    // where the decimal point sits relative to D, before the exponent
	exp    int64  // the written exponent, when it has at most 18 digits
	bigExp string // else its digits, without leading zeros (then exp is unused)
	expNeg bool
}

// readDecimal reads a number the walk has admitted (RFC 8259's grammar).
func readDecimal(raw string) decimal {
	var d decimal
	if raw[0] == '-' {
		d.neg, raw = true, raw[1:]
	}
	mant, expText := raw, ""
	for i := 0; i < len(raw); i++ {
		if raw[i] == 'e' || raw[i] == 'E' {
			mant, expText = raw[:i], raw[i+1:]
			break
		}
	}
	intPart, frac := mant, ""
	for i := 0; i < len(mant); i++ {
		if mant[i] == '.' {
			intPart, frac = mant[:i], mant[i+1:]
			break
		}
	}
	if intPart != "0" { // no leading zeros by the grammar
		d.hi, d.lo, d.point = intPart, trimZeros(frac), len(intPart)
		if d.lo == "" {
			d.hi = trimZeros(d.hi)
		}
	} else {
		lead := 0
		for lead < len(frac) && frac[lead] == '0' {
			lead++
		}
		d.hi, d.point = trimZeros(frac[lead:]), -lead
	}
	if expText != "" {
		switch expText[0] {
		case '-':
			d.expNeg, expText = true, expText[1:]
		case '+':
			expText = expText[1:]
		}
		for len(expText) > 1 && expText[0] == '0' {
			expText = expText[1:]
		}
		if len(expText) > 18 {
			d.bigExp = expText
		} else {
			for _, c := range []byte(expText) {
				d.exp = d.exp*10 + int64(c-'0')
			}
			if d.expNeg {
				d.exp = -d.exp
			}
		}
	}
	return d
}

// trimZeros drops trailing zeros.
func trimZeros(s string) string {
	for len(s) > 0 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return s
}

func (d *decimal) digits() int { return len(d.hi) + len(d.lo) }

// equals reports whether d, a non-zero value with an exponent that fits an
// int64, is the value with the given digits and n digits before the
// decimal point: then the double's RFC 8785 form denotes the number's own
// value.
func (d *decimal) equals(digits []byte, n int) bool {
	if len(digits) != d.digits() || d.exp+int64(d.point) != int64(n) {
		return false
	}
	return d.hi == string(digits[:len(d.hi)]) && d.lo == string(digits[len(d.hi):])
}

// appendExact writes the value of d with its own digits, laid out as
// appendES6Number lays out a double's: plain notation when the decimal
// point falls from 6 places left of the first digit to 21 places right of
// it, else one digit, the rest after a '.', and "e" with a signed exponent.
func (d *decimal) appendExact(dst []byte) []byte {
	k := d.digits()
	if k == 0 {
		return append(dst, '0') // unreachable: zero is denoted by its double
	}
	if d.neg {
		dst = append(dst, '-')
	}
	if d.bigExp == "" {
		// With at most 18 exponent digits and |point| bounded by the
		// document's length, n cannot overflow an int64.
		n := d.exp + int64(d.point) // the decimal point sits after n digits
		switch {
		case int64(k) <= n && n <= 21:
			dst = d.appendDigits(dst, 0, k)
			for range int(n) - k {
				dst = append(dst, '0')
			}
			return dst
		case 0 < n && n <= 21:
			dst = d.appendDigits(dst, 0, int(n))
			dst = append(dst, '.')
			return d.appendDigits(dst, int(n), k)
		case -6 < n && n <= 0:
			dst = append(dst, '0', '.')
			for range int(-n) {
				dst = append(dst, '0')
			}
			return d.appendDigits(dst, 0, k)
		}
	}
	dst = d.appendDigits(dst, 0, 1)
	if k > 1 {
		dst = append(dst, '.')
		dst = d.appendDigits(dst, 1, k)
	}
	dst = append(dst, 'e')
	if d.bigExp == "" {
		e := d.exp + int64(d.point) - 1
		if e >= 0 {
			dst = append(dst, '+')
		}
		return strconv.AppendInt(dst, e, 10)
	}
	// The exponent is ±bigExp + point - 1; bigExp is at least 10^18 and
	// point is bounded by the document's length, so the sign is bigExp's.
	q := int64(d.point) - 1
	if d.expNeg {
		return appendAdjusted(append(dst, '-'), d.bigExp, -q)
	}
	return appendAdjusted(append(dst, '+'), d.bigExp, q)
}

// appendDigits appends the significant digits from index i to j.
func (d *decimal) appendDigits(dst []byte, i, j int) []byte {
	if i < len(d.hi) {
		dst = append(dst, d.hi[i:min(j, len(d.hi))]...)
	}
	if j > len(d.hi) {
		dst = append(dst, d.lo[max(i, len(d.hi))-len(d.hi):j-len(d.hi)]...)
	}
	return dst
}

// appendAdjusted appends the decimal mag+delta, where mag has at least 19
// digits and no leading zero (so mag >= 10^18) and |delta| < 10^18: the low
// 18 digits take delta, and at most one carry or borrow runs into the rest.
func appendAdjusted(dst []byte, mag string, delta int64) []byte {
	const base = 1_000_000_000_000_000_000
	head, tail := mag[:len(mag)-18], mag[len(mag)-18:]
	var low int64
	for _, c := range []byte(tail) {
		low = low*10 + int64(c-'0')
	}
	low += delta
	carry := 0
	switch {
	case low < 0:
		low, carry = low+base, -1
	case low >= base:
		low, carry = low-base, 1
	}
	start := len(dst)
	dst = append(dst, head...)
	h := dst[start:]
	for i := len(h) - 1; carry != 0 && i >= 0; i-- {
		switch {
		case carry > 0 && h[i] == '9':
			h[i] = '0'
		case carry < 0 && h[i] == '0':
			h[i] = '9'
		default:
			h[i] += byte(carry)
			carry = 0
		}
	}
	if carry > 0 { // head was all nines, now all zeros: one digit more
		dst = append(dst, '0')
		dst[start] = '1'
	}
	var buf [20]byte
	b := strconv.AppendInt(buf[:0], low, 10)
	for range 18 - len(b) {
		dst = append(dst, '0')
	}
	dst = append(dst, b...)
	// A borrow may have left leading zeros ("1000…" less one).
	lead := start
	for lead < len(dst)-1 && dst[lead] == '0' {
		lead++
	}
	return append(dst[:start], dst[lead:]...)
}

// appendShortDecimal handles, without floating point, the numbers APIs send
// most: plain decimals (no exponent) of at most 15 significant digits and
// not below 1e-6. Any two such decimals map to distinct doubles (15 digits
// is a double's guaranteed decimal precision), so the shortest round-trip
// digits are the written ones less trailing fractional zeros, and in this
// range ECMAScript prints them in plain notation.
func appendShortDecimal(dst []byte, raw string) ([]byte, bool) {
	neg := raw[0] == '-'
	num := raw
	if neg {
		num = raw[1:]
	}
	intPart, frac := num, ""
	for i := 0; i < len(num); i++ {
		switch c := num[i]; {
		case c == '.':
			intPart, frac = num[:i], num[i+1:]
		case c == 'e' || c == 'E':
			return dst, false
		}
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	sig := len(intPart) + len(frac)
	if intPart == "0" {
		lead := 0
		for lead < len(frac) && frac[lead] == '0' {
			lead++
		}
		if lead == len(frac) {
			return append(dst, '0'), true // zero, whatever its sign
		}
		if lead > 5 {
			return dst, false // below 1e-6: exponential notation
		}
		sig = len(frac) - lead
	}
	if sig > 15 {
		return dst, false
	}
	if neg {
		dst = append(dst, '-')
	}
	dst = append(dst, intPart...)
	if len(frac) > 0 {
		dst = append(dst, '.')
		dst = append(dst, frac...)
	}
	return dst, true
}
