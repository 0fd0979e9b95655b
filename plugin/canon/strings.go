package canon

import (
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// appendUnescaped decodes the body of a JSON string (without its quotes) to
// UTF-8. The walk's scanString has checked the escapes, so every one is complete;
// what is left to check is UTF-8 validity and the pairing of surrogates.
// off is the byte offset of s in the document, for errors.
func appendUnescaped(dst []byte, s string, off int) ([]byte, error) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			esc := s[i+1]
			if esc != 'u' {
				dst = append(dst, unescapeByte[esc])
				i += 2
				continue
			}
			r, n, err := decodeUEscape(s, i, off)
			if err != nil {
				return dst, err
			}
			i += n
			dst = utf8.AppendRune(dst, r)
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return dst, &Error{Offset: off + i, Err: ErrInvalidUTF8}
			}
			dst = append(dst, s[i:i+size]...)
			i += size
		}
	}
	return dst, nil
}

// appendTranscoded writes the body s of a JSON string with escapes, found
// at offset off, as an RFC 8785 string in one pass: unescaped runs are
// copied (after a UTF-8 check) and each escape is rewritten in canonical form.
func appendTranscoded(dst []byte, s string, off int) ([]byte, error) {
	mark := len(dst)
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return dst[:mark], &Error{Offset: off + i, Err: ErrInvalidUTF8}
			}
			i += size
			continue
		}
		if c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		esc := s[i+1]
		if esc != 'u' {
			if esc == '/' {
				dst = append(dst, '/')
			} else {
				dst = append(dst, '\\', esc) // \" \\ \b \f \n \r \t are canonical
			}
			i += 2
			start = i
			continue
		}
		r, n, err := decodeUEscape(s, i, off)
		if err != nil {
			return dst[:mark], err
		}
		i += n
		start = i
		if r < 0x20 || r == '"' || r == '\\' {
			dst = appendEscapedASCII(dst, byte(r))
		} else {
			dst = utf8.AppendRune(dst, r)
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}

// decodeUEscape decodes the \uXXXX escape at s[i], joined with a following
// low-surrogate escape when it is a high surrogate, and returns the
// character and the number of bytes consumed.
func decodeUEscape(s string, i, off int) (rune, int, error) {
	r := hex4(s[i+2 : i+6])
	if !utf16.IsSurrogate(r) {
		return r, 6, nil
	}
	if r < 0xDC00 && i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
		if lo := hex4(s[i+8 : i+12]); lo >= 0xDC00 && lo <= 0xDFFF {
			return utf16.DecodeRune(r, lo), 12, nil
		}
	}
	return 0, 0, &Error{Offset: off + i, Err: ErrLoneSurrogate, Detail: s[i : i+6]}
}

var unescapeByte = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func hex4(s string) rune {
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default: // 'A'-'F'; scanString admitted only hex digits
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendQuoted writes the valid UTF-8 string s as an RFC 8785 string: only
// the quote, the backslash and control characters are escaped, the latter in
// the short forms where JSON has them and as lowercase \u00xx otherwise.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		dst = appendEscapedASCII(dst, c)
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscapedASCII writes the RFC 8785 escape of a quote, a backslash or
// a control character: the short forms where JSON has them, else \u00xx.
func appendEscapedASCII(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\b':
		return append(dst, '\\', 'b')
	case '\t':
		return append(dst, '\\', 't')
	case '\n':
		return append(dst, '\\', 'n')
	case '\f':
		return append(dst, '\\', 'f')
	case '\r':
		return append(dst, '\\', 'r')
	}
	const hex = "0123456789abcdef"
	return append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
}

// compareUTF16 orders two valid UTF-8 strings by their UTF-16 code units, as
// RFC 8785 sorts member names. UTF-8 byte order equals code point order, which
// differs from UTF-16 order only where a character above U+FFFF (a surrogate
// pair, D800-DFFF) meets one in U+E000-U+FFFF, so only the first differing
// character needs decoding.
func compareUTF16(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		return len(a) - len(b)
	}
	for i > 0 && !utf8.RuneStart(a[i]) {
		i-- // back to the start of the character that differs
	}
	ra, _ := utf8.DecodeRuneInString(a[i:])
	rb, _ := utf8.DecodeRuneInString(b[i:])
	return int(utf16Key(ra)) - int(utf16Key(rb))
}

// utf16Key is the first UTF-16 code unit of r, refined by r itself so that
// two characters sharing a high surrogate still order by their low one.
func utf16Key(r rune) rune {
	if r < 0x10000 {
		return r << 10
	}
	hi, _ := utf16.EncodeRune(r)
	return hi<<10 | (r-0x10000)&0x3FF
}

// sortMembers sorts members by name in UTF-16 order and reports whether they
// were in order already. Objects are small, so an insertion sort beats a
// general sort; large ones use slices.
func sortMembers(ms []member) (wasSorted bool) {
	wasSorted = true
	if len(ms) > 24 {
		for k := 1; k < len(ms); k++ {
			if memberLess(&ms[k], &ms[k-1]) {
				wasSorted = false
				break
			}
		}
		if !wasSorted {
			slices.SortFunc(ms, func(a, b member) int {
				if memberLess(&a, &b) {
					return -1
				}
				if memberLess(&b, &a) {
					return 1
				}
				return 0
			})
		}
		return wasSorted
	}
	for k := 1; k < len(ms); k++ {
		if !memberLess(&ms[k], &ms[k-1]) {
			continue
		}
		wasSorted = false
		x, j := ms[k], k
		for ; j > 0 && memberLess(&x, &ms[j-1]); j-- {
			ms[j] = ms[j-1]
		}
		ms[j] = x
	}
	return wasSorted
}

func memberLess(a, b *member) bool {
	if a.ascii && b.ascii {
		// Names mostly differ in their first byte; skip the call then.
		if len(a.name) > 0 && len(b.name) > 0 && a.name[0] != b.name[0] {
			return a.name[0] < b.name[0]
		}
		return a.name < b.name
	}
	return compareUTF16(a.name, b.name) < 0
}
