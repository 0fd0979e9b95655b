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
// The walk below checks the RFC 8259 grammar as it goes, and what RFC 8785
// adds: UTF-8, surrogate pairs, unique names and finite doubles. It is
// single-pass and allocation-free with a warm dst. A document it refuses
// is classified again the way earlier versions did, so that errors do not
// depend on which check happened to run first: too deep for gjson's
// validator, then gjson's verdict on the grammar, then the walk's own
// reason (see classify).
func Append(dst, src []byte) ([]byte, error) {
	return AppendReport(dst, src, nil)
}

// Report says where a canonical form departs from RFC 8785.
type Report struct {
	// Exact holds the byte offsets in src, in document order, of the
	// numbers written in exact form because their double denotes another
	// number (doc.go, "Exact numbers"). Empty when the output is RFC 8785's.
	Exact []int
}

// AppendReport is Append that also fills rep (when not nil), reusing
// rep.Exact's storage. After an error rep.Exact is empty.
func AppendReport(dst, src []byte, rep *Report) ([]byte, error) {
	if rep != nil {
		rep.Exact = rep.Exact[:0]
	}
	out, err := walk(dst, src, rep)
	if err != nil {
		if rep != nil {
			rep.Exact = rep.Exact[:0]
		}
		return dst, classify(src, err)
	}
	return out, nil
}

// walk writes the canonical form of src after dst, checking everything.
func walk(dst, src []byte, rep *Report) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	// A string view of src avoids copying the document; nothing retains it
	// beyond this call.
	e.buf, e.src = src, unsafe.String(unsafe.SliceData(src), len(src))
	e.members, e.names, e.rep = e.members[:0], e.names[:0], rep
	defer func() { e.buf, e.src, e.rep = nil, "", nil }()

	out, i, err := e.value(dst, e.skipSpace(0), 0)
	if err != nil {
		return dst, err
	}
	if i = e.skipSpace(i); i != len(src) {
		return dst, e.syntax(i)
	}
	return out, nil
}

// classify turns the walk's refusal of src into the error Append reports,
// by the order of checks Append has always applied: nesting beyond
// validatorDepth, then the grammar (gjson's validator; encoding/json
// locates the error), then what RFC 8785 adds. The walk stops at the first
// problem in document order, which need not be the one these rules name
// (invalid UTF-8 before a syntax error, say): the rare error path pays for
// the second look, the hot path does not.
func classify(src []byte, walkErr error) error {
	if off := tooDeep(src); off >= 0 {
		return &Error{Offset: off, Err: ErrTooDeep, Detail: "more than 128 levels of arrays and objects"}
	}
	if !gjson.ValidBytes(src) {
		return syntaxError(src)
	}
	// The grammar holds, so the walk ran the same steps as over any valid
	// document and its first RFC 8785 problem is the answer. (A syntax
	// error here would mean the walk is stricter than RFC 8259 somewhere:
	// FuzzWalkGrammar looks for that.)
	return walkErr
}

// validatorDepth bounds the nesting handed to gjson's validator, which
// recurses once per level: compiled to Wasm, where the engine's call stack is
// small, a megabyte of '[' overflows it and traps the whole VM (seen under
// wazero). Within this bound the recursion is harmless everywhere, and the
// walk enforces MaxDepth exactly.
const validatorDepth = 1024

// tooDeep returns the offset of the bracket that opens nesting level
// validatorDepth+1 in src, or -1. Only refused documents get here.
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
	rep     *Report // where to note exact numbers, or nil
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

// syntax is the walk's refusal of the grammar at src[i]; classify names
// the error Append reports.
func (e *encoder) syntax(i int) error {
	return &Error{Offset: min(i, len(e.src)), Err: ErrSyntax}
}

// value writes the canonical form of the value starting at src[i] and returns
// the index just after it.
func (e *encoder) value(dst []byte, i, depth int) ([]byte, int, error) {
	if i >= len(e.src) {
		return dst, i, e.syntax(i)
	}
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
		end, escaped, ascii, err := e.scanString(i)
		if err != nil {
			return dst, i, err
		}
		dst, err = e.string(dst, i, end, escaped, ascii)
		return dst, end, err
	case 't':
		return e.literal(dst, i, "true")
	case 'f':
		return e.literal(dst, i, "false")
	case 'n':
		return e.literal(dst, i, "null")
	}
	j, ok := scanNumber(e.src, i)
	if !ok {
		return dst, i, e.syntax(j)
	}
	dst, exact, err := appendNumber(dst, e.src[i:j], i)
	if exact && e.rep != nil {
		e.rep.Exact = append(e.rep.Exact, i)
	}
	return dst, j, err
}

func (e *encoder) literal(dst []byte, i int, lit string) ([]byte, int, error) {
	if !strings.HasPrefix(e.src[i:], lit) {
		return dst, i, e.syntax(i)
	}
	return append(dst, lit...), i + len(lit), nil
}

// scanNumber returns the end of the RFC 8259 number at s[i] and true, or
// where the grammar fails and false:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func scanNumber(s string, i int) (int, bool) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i+1)
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func (e *encoder) array(dst []byte, i, depth int) ([]byte, int, error) {
	dst = append(dst, '[')
	i = e.skipSpace(i + 1)
	if i < len(e.src) && e.src[i] == ']' {
		return append(dst, ']'), i + 1, nil
	}
	for {
		var err error
		if dst, i, err = e.value(dst, i, depth+1); err != nil {
			return dst, i, err
		}
		i = e.skipSpace(i)
		switch {
		case i >= len(e.src):
			return dst, i, e.syntax(i)
		case e.src[i] == ']':
			return append(dst, ']'), i + 1, nil
		case e.src[i] != ',':
			return dst, i, e.syntax(i)
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
	if i < len(e.src) && e.src[i] == '}' {
		return append(dst, '}'), i + 1, nil
	}
	for {
		if i >= len(e.src) || e.src[i] != '"' {
			return dst, i, e.syntax(i)
		}
		nameOff := i
		nameEnd, escaped, ascii, err := e.scanString(i)
		if err != nil {
			return dst, i, err
		}
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
		if i = e.skipSpace(nameEnd); i >= len(e.src) || e.src[i] != ':' {
			return dst, i, e.syntax(i)
		}
		i = e.skipSpace(i + 1) // past the colon
		if dst, i, err = e.value(dst, i, depth+1); err != nil {
			return dst, i, err
		}
		e.members = append(e.members, member{name: name, ascii: ascii && !escaped, nameOff: nameOff, start: start, end: len(dst)})
		i = e.skipSpace(i)
		if i >= len(e.src) {
			return dst, i, e.syntax(i)
		}
		if e.src[i] == '}' {
			i++
			break
		}
		if e.src[i] != ',' {
			return dst, i, e.syntax(i)
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
// check). A missing closing quote, a control character or an escape
// other than RFC 8259's is a syntax error; the escapes' meaning (and
// UTF-8) is checked when the string is written.
func (e *encoder) scanString(i int) (end int, escaped, ascii bool, err error) {
	b := e.buf
	ascii = true
	for j := skipPlain(b, i+1); j < len(b); {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, ascii, nil
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return 0, false, false, e.syntax(j + 1)
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
					return 0, false, false, e.syntax(j + 2)
				}
				j += 6
			default:
				return 0, false, false, e.syntax(j + 1)
			}
		case c < 0x20:
			return 0, false, false, e.syntax(j)
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			j = skipPlain(b, j+1)
		}
	}
	return 0, false, false, e.syntax(len(b))
}

// skipPlain skips 8-byte blocks of b from j that hold no quote, no
// backslash, no control character and no byte >= 0x80, testing each block
// at once (SWAR).
func skipPlain(b []byte, j int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for j+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[j:])
		q := x ^ (ones * '"')
		bs := x ^ (ones * '\\')
		// (v-ones)&^v has a byte's high bit set where v's byte is zero;
		// (x-0x20*ones)&^x where x's byte is below 0x20 (exact once bytes
		// >= 0x80, which x's own high bits flag, are excluded).
		if ((q-ones)&^q|(bs-ones)&^bs|(x-ones*0x20)&^x|x)&highs != 0 {
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
