package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ValidateHolder checks a holder id (ReserveRequest.Holder,
// ReleaseRequest.Holder): MinHolderLen to MaxHolderLen bytes of
// [A-Za-z0-9_-]. The alphabet keeps it safe after the '.' of a token and
// in logs; the length leaves room for 128 random bits in base32 or
// base64url. Randomness cannot be checked here; the caller owes it.
func ValidateHolder(h string) error {
	if h == "" {
		return fmt.Errorf("holder is empty")
	}
	if len(h) < MinHolderLen || len(h) > MaxHolderLen {
		return fmt.Errorf("holder is %d bytes long; want %d to %d", len(h), MinHolderLen, MaxHolderLen)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("holder has a byte outside [A-Za-z0-9_-] at byte %d", i)
		}
	}
	return nil
}

// ValidateStatus checks a status to store: any three-digit code, 100 to
// 999. RFC 9110 defines classes 1xx-5xx, but an upstream that answers 600
// still answered: refusing to store it would leave the key to be taken
// over or held indeterminate although the operation ran.
func ValidateStatus(code int) error {
	if code < 100 || code > 999 {
		return fmt.Errorf("status %d is not a three-digit HTTP status (100-999)", code)
	}
	return nil
}

// ValidateOnIndeterminate checks ReserveRequest.OnIndeterminate: "",
// LeaseLock, LeaseRelease or LeaseReconcile, exactly.
func ValidateOnIndeterminate(s string) error {
	switch s {
	case "", LeaseLock, LeaseRelease, LeaseReconcile:
		return nil
	}
	return fmt.Errorf("on_indeterminate is %q; want %q (the default), %q or %q", s, LeaseLock, LeaseRelease, LeaseReconcile)
}

// ValidateReconcileTarget checks ReserveRequest.ReconcileTarget against
// its OnIndeterminate: a target only with LeaseReconcile, and then "" (the
// default) or 1 to MaxReconcileTargetLen bytes of [A-Za-z0-9_-] (it names
// a flag value and an environment variable).
func ValidateReconcileTarget(onIndeterminate, target string) error {
	if target == "" {
		return nil
	}
	if onIndeterminate != LeaseReconcile {
		return fmt.Errorf("reconcile_target %q is set, but on_indeterminate is %q, not %q", target, onIndeterminate, LeaseReconcile)
	}
	if len(target) > MaxReconcileTargetLen {
		return fmt.Errorf("reconcile_target is %d bytes long, more than %d", len(target), MaxReconcileTargetLen)
	}
	for i := 0; i < len(target); i++ {
		c := target[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("reconcile_target has a byte outside [A-Za-z0-9_-] at byte %d", i)
		}
	}
	return nil
}

// ValidateReconcileAnswer checks an upstream's answer to a lookup: a known
// outcome; with ReconcileExecuted a Response whose status is 100 to 599
// (a real answer of the operation, not a gateway's placeholder) and whose
// headers pass ValidateHeaders; a RetryAfterMS that is not negative. An
// answer that fails is a failed lookup, never "not executed".
func ValidateReconcileAnswer(a ReconcileAnswer) error {
	if a.RetryAfterMS < 0 {
		return fmt.Errorf("retry_after_ms is %d; want 0 or more", a.RetryAfterMS)
	}
	switch a.Outcome {
	case ReconcileNotExecuted, ReconcileUnknown:
		return nil
	case ReconcileExecuted:
	case "":
		return fmt.Errorf("outcome is missing; want %q, %q or %q", ReconcileExecuted, ReconcileNotExecuted, ReconcileUnknown)
	default:
		return fmt.Errorf("outcome is %q; want %q, %q or %q", a.Outcome, ReconcileExecuted, ReconcileNotExecuted, ReconcileUnknown)
	}
	if a.Response == nil {
		return fmt.Errorf("outcome %q without a response", ReconcileExecuted)
	}
	if s := a.Response.Status; s < 100 || s > 599 {
		return fmt.Errorf("response.status %d is not 100 to 599", s)
	}
	if err := ValidateHeaders(a.Response.Headers); err != nil {
		return err
	}
	return nil
}

// CheckDuplicateMembers reports the first object member whose name occurs
// twice in one object, at any depth, naming its path (a.b[2].c). Names are
// compared after unescaping, so "tok\u0065n" duplicates "token".
// encoding/json keeps the last of duplicates, another parser may keep the
// first: a request that two parsers read differently is refused. Malformed
// JSON is not reported here (the decoder that follows says what is wrong):
// the check stops where the input stops making sense and answers nil.
//
// It scans bytes without decoding values (string values are skipped with
// a byte search), so it adds little to the decode of a large body.
func CheckDuplicateMembers(b []byte) error {
	s := dupScanner{b: b}
	err, _ := s.value(0)
	return err
}

// maxDupDepth matches encoding/json's nesting limit: deeper input is
// refused by the decoder anyway.
const maxDupDepth = 10000

// dupSmallObject: objects with up to this many members are checked by a
// linear search, bigger ones with a map (so a huge object stays linear).
const dupSmallObject = 8

type dupScanner struct {
	b    []byte
	i    int
	path []dupSeg // the containers around the current value
}

type dupSeg struct {
	name  string // member name, when index < 0
	index int
}

func (s *dupScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value skips one value; ok is false when the input stops making sense.
func (s *dupScanner) value(depth int) (err error, ok bool) {
	if depth > maxDupDepth {
		return nil, false
	}
	s.ws()
	if s.i >= len(s.b) {
		return nil, false
	}
	switch s.b[s.i] {
	case '{':
		return s.object(depth)
	case '[':
		return s.array(depth)
	case '"':
		_, _, ok := s.str()
		return nil, ok
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return nil, s.i > start
		}
		s.i++
	}
	return nil, s.i > start
}

// str skips a string at s.i; quoted includes the quotes.
func (s *dupScanner) str() (quoted []byte, escaped, ok bool) {
	start := s.i
	j := s.i + 1
	for {
		k := bytes.IndexAny(s.b[j:], "\"\\")
		if k < 0 {
			return nil, false, false
		}
		j += k
		if s.b[j] == '\\' {
			escaped = true
			j += 2
			if j > len(s.b) {
				return nil, false, false
			}
			continue
		}
		s.i = j + 1
		return s.b[start : j+1], escaped, true
	}
}

func (s *dupScanner) object(depth int) (error, bool) {
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil, true
	}
	var (
		names []string
		set   map[string]struct{}
	)
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return nil, false
		}
		quoted, escaped, ok := s.str()
		if !ok {
			return nil, false
		}
		name := string(quoted[1 : len(quoted)-1])
		// Unescape as encoding/json does, which also turns invalid UTF-8
		// into U+FFFD: two names it reads as one are one.
		if escaped || !isASCII(quoted) {
			if json.Unmarshal(quoted, &name) != nil {
				return nil, false
			}
		}
		dup := false
		if set != nil {
			_, dup = set[name]
			set[name] = struct{}{}
		} else {
			for _, n := range names {
				if n == name {
					dup = true
					break
				}
			}
			names = append(names, name)
			if len(names) > dupSmallObject {
				set = make(map[string]struct{}, 2*len(names))
				for _, n := range names {
					set[n] = struct{}{}
				}
			}
		}
		if dup {
			return fmt.Errorf("duplicate member %q in a JSON object", s.pathTo(name)), true
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return nil, false
		}
		s.i++
		s.path = append(s.path, dupSeg{name: name, index: -1})
		err, ok := s.value(depth + 1)
		s.path = s.path[:len(s.path)-1]
		if err != nil || !ok {
			return err, ok
		}
		s.ws()
		if s.i >= len(s.b) {
			return nil, false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil, true
		default:
			return nil, false
		}
	}
}

func (s *dupScanner) array(depth int) (error, bool) {
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil, true
	}
	for n := 0; ; n++ {
		s.path = append(s.path, dupSeg{index: n})
		err, ok := s.value(depth + 1)
		s.path = s.path[:len(s.path)-1]
		if err != nil || !ok {
			return err, ok
		}
		s.ws()
		if s.i >= len(s.b) {
			return nil, false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil, true
		default:
			return nil, false
		}
	}
}

// pathTo names member name of the current object: a.b[2].name.
func (s *dupScanner) pathTo(name string) string {
	var b strings.Builder
	for _, seg := range s.path {
		if seg.index >= 0 {
			b.WriteString("[" + strconv.Itoa(seg.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg.name)
	}
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(name)
	return b.String()
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
