package canon

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// MaxDepth bounds the nesting of arrays and objects, so that a hostile body
// cannot make the walk recurse without limit; API payloads stay far below it.
const MaxDepth = 128

// Append appends the RFC 8785 canonical form of the JSON document src to dst
// and returns the extended buffer. src must not overlap dst's spare capacity.
// On error dst is returned with its original length and the error is an
// *Error carrying the byte offset in src.
//
// gjson's validator admits the document first (RFC 8259 grammar); the walk
// below then relies on that grammar and checks only what RFC 8785 adds:
// UTF-8, surrogate pairs, unique names and finite doubles. The walk is
// single-pass and allocation-free with a warm dst, which gjson's iterators
// are not (they unescape every escaped string into a new one and rescan
// nested values once per enclosing level).
func Append(dst, src []byte) ([]byte, error) {
	if off := tooDeep(src); off >= 0 {
		return dst, &Error{Offset: off, Err: ErrTooDeep, Detail: "more than 128 levels of arrays and objects"}
	}
	if !gjson.ValidBytes(src) {
		return dst, syntaxError(src)
	}
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	// A string view of src avoids copying the document; nothing retains it
	// beyond this call.
	e.buf, e.src = src, unsafe.String(unsafe.SliceData(src), len(src))
	e.members, e.names = e.members[:0], e.names[:0]

	out, _, err := e.value(dst, e.skipSpace(0), 0)
	e.buf, e.src = nil, ""
	if err != nil {
		return dst, err
	}
	return out, nil
}

// validatorDepth bounds the nesting handed to gjson's validator, which
// recurses once per level: compiled to Wasm, where the engine's call stack is
// small, a megabyte of '[' overflows it and traps the whole VM (seen under
// wazero). Within this bound the recursion is harmless everywhere, and the
// walk below enforces MaxDepth exactly.
const validatorDepth = 1024

// tooDeep returns the offset of the bracket that opens nesting level
// validatorDepth+1 in src, or -1. Few documents hold that many brackets at
// all, so a vectorized count spares most of them the string-aware scan.
func tooDeep(src []byte) int {
	if bytes.Count(src, []byte{'['})+bytes.Count(src, []byte{'{'}) <= validatorDepth {
		return -1
	}
	depth, inString := 0, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			if depth++; depth > validatorDepth {
				return i
			}
		case ']', '}':
			depth--
		}
	}
	return -1
}

// encoder holds the per-call state, pooled so that a warm call does not
// allocate: a stack of object members shared by all nesting levels, an arena
// for decoded member names, and a buffer for reordering members.
type encoder struct {
	buf     []byte // the input
	src     string // the input again, as a string for slicing into names
	members []member
	names   []byte
	reorder []byte
}

// member is one name/value pair already written to dst in source order;
// start and end delimit it there so it can be moved into sorted order.
type member struct {
	name       string // decoded; aliases src or the names arena
	ascii      bool   // the name is ASCII: byte order is UTF-16 order
	nameOff    int
	start, end int
}

var encoders = sync.Pool{New: func() any { return new(encoder) }}

func (e *encoder) skipSpace(i int) int {
	if i < len(e.src) && e.src[i] > ' ' {
		return i // the common case: compact JSON
	}
	for i < len(e.src) {
		switch e.src[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value writes the canonical form of the value starting at src[i] and returns
// the index just after it.
func (e *encoder) value(dst []byte, i, depth int) ([]byte, int, error) {
	switch c := e.src[i]; c {
	case '{', '[':
		if depth >= MaxDepth {
			return dst, i, &Error{Offset: i, Err: ErrTooDeep, Detail: "more than 128 levels of arrays and objects"}
		}
		if c == '[' {
			return e.array(dst, i, depth)
		}
		return e.object(dst, i, depth)
	case '"':
		end, escaped, ascii := e.scanString(i)
		dst, err := e.string(dst, i, end, escaped, ascii)
		return dst, end, err
	case 't':
		return append(dst, "true"...), i + 4, nil
	case 'f':
		return append(dst, "false"...), i + 5, nil
	case 'n':
		return append(dst, "null"...), i + 4, nil
	}
	j := i + 1
	for j < len(e.src) && isNumberByte[e.src[j]] {
		j++
	}
	dst, err := appendNumber(dst, e.src[i:j], i)
	return dst, j, err
}

var isNumberByte = [256]bool{'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true,
	'7': true, '8': true, '9': true, '.': true, 'e': true, 'E': true, '+': true, '-': true}

func (e *encoder) array(dst []byte, i, depth int) ([]byte, int, error) {
	dst = append(dst, '[')
	i = e.skipSpace(i + 1)
	if e.src[i] == ']' {
		return append(dst, ']'), i + 1, nil
	}
	for {
		var err error
		if dst, i, err = e.value(dst, i, depth+1); err != nil {
			return dst, i, err
		}
		i = e.skipSpace(i)
		if e.src[i] == ']' {
			return append(dst, ']'), i + 1, nil
		}
		dst = append(dst, ',')
		i = e.skipSpace(i + 1) // past the comma
	}
}

// object writes the members in source order, then, unless they already are,
// moves them into the order of their names.
func (e *encoder) object(dst []byte, i, depth int) ([]byte, int, error) {
	// Members and names of this object sit above these marks; they are
	// dropped when it is written. (After an error Append starts afresh.)
	base, mark := len(e.members), len(e.names)
	open := len(dst)
	dst = append(dst, '{')
	i = e.skipSpace(i + 1)
	if e.src[i] == '}' {
		return append(dst, '}'), i + 1, nil
	}
	for {
		nameOff := i
		nameEnd, escaped, ascii := e.scanString(i)
		name, err := e.name(i, nameEnd, escaped, ascii)
		if err != nil {
			return dst, i, err
		}
		start := len(dst)
		if escaped {
			dst = appendQuoted(dst, name)
		} else {
			dst = append(dst, e.src[i:nameEnd]...)
		}
		dst = append(dst, ':')
		i = e.skipSpace(e.skipSpace(nameEnd) + 1) // past the colon
		if dst, i, err = e.value(dst, i, depth+1); err != nil {
			return dst, i, err
		}
		e.members = append(e.members, member{name: name, ascii: ascii && !escaped, nameOff: nameOff, start: start, end: len(dst)})
		i = e.skipSpace(i)
		if e.src[i] == '}' {
			i++
			break
		}
		dst = append(dst, ',')
		i = e.skipSpace(i + 1)
	}

	ms := e.members[base:]
	wasSorted := sortMembers(ms)
	if err := duplicate(ms); err != nil {
		return dst, i, err
	}
	e.members, e.names = e.members[:base], e.names[:mark]
	if wasSorted {
		return append(dst, '}'), i, nil
	}
	// Copy the members aside and write them back in sorted order; the
	// commas between them take the same room in either order.
	body := dst[open+1:]
	e.reorder = append(e.reorder[:0], body...)
	pos := 0
	for k, m := range ms {
		if k > 0 {
			body[pos] = ','
			pos++
		}
		pos += copy(body[pos:], e.reorder[m.start-open-1:m.end-open-1])
	}
	return append(dst, '}'), i, nil
}

// duplicate reports the first repeated name among members sorted by name.
func duplicate(ms []member) error {
	for k := 1; k < len(ms); k++ {
		if ms[k-1].name == ms[k].name {
			return &Error{Offset: max(ms[k-1].nameOff, ms[k].nameOff), Err: ErrDuplicateName, Detail: quoteForMessage(ms[k].name)}
		}
	}
	return nil
}

// scanString finds the end of the string whose opening quote is at src[i]:
// it returns the index just after the closing quote, whether the string
// holds escapes and whether it is plain ASCII (then it needs no UTF-8
// check). The input is validated, so the closing quote exists.
func (e *encoder) scanString(i int) (end int, escaped, ascii bool) {
	b := e.buf
	ascii = true
	for j := skipPlain(b, i+1); j < len(b); {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, ascii
		case c == '\\':
			escaped = true
			j += 2
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			j = skipPlain(b, j+1)
		}
	}
	return len(b), escaped, ascii // unreachable for validated input
}

// skipPlain skips 8-byte blocks of b from j that hold no quote, no
// backslash and no byte >= 0x80, testing each block at once (SWAR).
func skipPlain(b []byte, j int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for j+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[j:])
		q := x ^ (ones * '"')
		bs := x ^ (ones * '\\')
		if ((q-ones)&^q|(bs-ones)&^bs|x)&highs != 0 {
			break
		}
		j += 8
	}
	return j
}

// name returns the decoded member name of the string src[i:end]. Names
// without escapes alias src; others are decoded into the names arena, which
// only grows while an enclosing object is open, so the returned string stays
// intact until that object has been written.
func (e *encoder) name(i, end int, escaped, ascii bool) (string, error) {
	inner := e.src[i+1 : end-1]
	if !escaped {
		if !ascii && !utf8.ValidString(inner) {
			return "", invalidUTF8(inner, i+1)
		}
		return inner, nil
	}
	start := len(e.names)
	var err error
	if e.names, err = appendUnescaped(e.names, inner, i+1); err != nil {
		return "", err
	}
	if len(e.names) == start {
		return "", nil
	}
	return unsafe.String(&e.names[start], len(e.names)-start), nil
}

// string writes the canonical form of the string src[i:end].
func (e *encoder) string(dst []byte, i, end int, escaped, ascii bool) ([]byte, error) {
	inner := e.src[i+1 : end-1]
	if !escaped {
		// Without escapes a valid JSON string holds neither quotes nor
		// control characters: its raw form already is the canonical form.
		if !ascii && !utf8.ValidString(inner) {
			return dst, invalidUTF8(inner, i+1)
		}
		return append(dst, e.src[i:end]...), nil
	}
	return appendTranscoded(dst, inner, i+1)
}

func invalidUTF8(s string, off int) error {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return &Error{Offset: off + i, Err: ErrInvalidUTF8}
		}
		i += size
	}
	return &Error{Offset: off, Err: ErrInvalidUTF8}
}

// syntaxError locates the first syntax error. gjson only says whether a
// document is valid, so the (rare) error path asks encoding/json for the
// offset and the reason.
func syntaxError(src []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(src, &raw)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return &Error{Offset: 0, Err: ErrSyntax}
	}
	off := int(se.Offset)
	if strings.HasPrefix(se.Error(), "invalid character") && off > 0 {
		off-- // encoding/json counts the offending byte as read
	}
	if off < len(src) {
		rest := src[off:]
		if off > 0 && src[off-1] == '-' && strings.HasPrefix(string(rest), "Infinity") {
			return &Error{Offset: off - 1, Err: ErrNotFinite}
		}
		if strings.HasPrefix(string(rest), "NaN") || strings.HasPrefix(string(rest), "Infinity") {
			return &Error{Offset: off, Err: ErrNotFinite}
		}
	}
	return &Error{Offset: off, Err: ErrSyntax, Detail: se.Error()}
}

func quoteForMessage(s string) string {
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return string(appendQuoted(nil, s))
}
