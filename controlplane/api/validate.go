package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
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
// LeaseLock or LeaseRelease, exactly.
func ValidateOnIndeterminate(s string) error {
	switch s {
	case "", LeaseLock, LeaseRelease:
		return nil
	}
	return fmt.Errorf("on_indeterminate is %q; want %q (the default) or %q", s, LeaseLock, LeaseRelease)
}

// CheckDuplicateMembers reports the first object member whose name occurs
// twice in one object, at any depth, naming its path (a.b[2].c). Names are
// compared after unescaping, so "tok\u0065n" duplicates "token".
// encoding/json keeps the last of duplicates, another parser may keep the
// first: a request that two parsers read differently is refused. Malformed
// JSON is not reported here (the decoder that follows says what is wrong):
// the check stops at the first syntax error and answers nil.
func CheckDuplicateMembers(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		obj   bool
		names map[string]struct{}
		path  string // of the container
		index int    // next element's index (arrays)
		name  string // current member (objects)
		key   bool   // objects: the next token is a name
	}
	var stack []*frame
	elemPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.obj {
			if f.path == "" {
				return f.name
			}
			return f.path + "." + f.name
		}
		return f.path + "[" + strconv.Itoa(f.index) + "]"
	}
	// valueDone moves the parent past a finished value.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.obj {
			f.key = true
		} else {
			f.index++
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or malformed: not this check's finding
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				valueDone()
				continue
			}
			name, _ := tok.(string)
			if _, dup := top.names[name]; dup {
				p := name
				if top.path != "" {
					p = top.path + "." + name
				}
				return fmt.Errorf("duplicate member %q in a JSON object", p)
			}
			top.names[name] = struct{}{}
			top.name, top.key = name, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, names: map[string]struct{}{}, path: elemPath(), key: true})
		case json.Delim('['):
			stack = append(stack, &frame{path: elemPath()})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}
