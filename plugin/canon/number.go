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
	// 'e' with precision -1 gives the shortest round-trip digits as
	// d.ddddde±XX; re-lay them out by ECMAScript's rules.
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	var digits [20]byte
	k := 0
	i := 0
	for ; b[i] != 'e'; i++ {
		if b[i] != '.' {
			digits[k] = b[i]
			k++
		}
	}
	exp := 0
	neg := b[i+1] == '-'
	for _, c := range b[i+2:] {
		exp = exp*10 + int(c-'0')
	}
	if neg {
		exp = -exp
	}
	n := exp + 1 // the decimal point sits after n digits

	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits[:k]...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:k]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits[:k]...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:k]...)
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

// appendNumber writes the canonical form of the JSON number text raw, found
// at byte offset off.
func appendNumber(dst []byte, raw string, off int) ([]byte, error) {
	if out, ok := appendShortDecimal(dst, raw); ok {
		return out, nil
	}
	f, err := strconv.ParseFloat(raw, 64)
	if math.IsInf(f, 0) {
		return dst, &Error{Offset: off, Err: ErrNumberRange, Detail: raw}
	}
	if err != nil { // unreachable: the walk admitted only RFC 8259 numbers
		return dst, &Error{Offset: off, Err: ErrSyntax, Detail: err.Error()}
	}
	return appendES6Number(dst, f), nil
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
