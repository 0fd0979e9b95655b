package canon

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Request is what a fingerprint covers.
type Request struct {
	Method      string
	Target      string      // path and query as received (":path")
	Headers     [][2]string // request headers (name, value); only selected ones count
	ContentType string
	Body        []byte
}

// Selection says which parts of a request count beyond method and target.
type Selection struct {
	Include []string // body fields that count; empty means all
	Exclude []string // body fields that never count
	Headers []string // header names that count, case-insensitive
}

// Validate checks the selection's paths and header names, so that a policy
// can be refused when it is loaded rather than on a request.
func (s Selection) Validate() error {
	for _, list := range []struct {
		what  string
		paths []string
	}{{"include", s.Include}, {"exclude", s.Exclude}} {
		for _, p := range list.paths {
			if err := validatePath(p); err != nil {
				return fmt.Errorf("%s path %q: %w", list.what, p, err)
			}
		}
	}
	for _, h := range s.Headers {
		if !validHeaderName(h) {
			return fmt.Errorf("header name %q: not an HTTP field name", h)
		}
	}
	return nil
}

func validatePath(p string) error {
	if p == "" {
		return fmt.Errorf("empty path")
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++ // the next character is literal
			if i == len(p) {
				return fmt.Errorf("ends in an escape")
			}
		case '*', '?', '#', '|', '@', '!', '=', '<', '>', '%', '[', ']', '{', '}', '(', ')':
			return fmt.Errorf("%q: only member names and array indexes are supported (escape it with '\\' to mean it literally)", p[i])
		case '.':
			if i == 0 || i == len(p)-1 || p[i-1] == '.' {
				return fmt.Errorf("empty path component")
			}
		}
	}
	return nil
}

// validHeaderName reports whether s is an RFC 9110 token, or an HTTP/2
// pseudo-header such as ":authority".
func validHeaderName(s string) bool {
	return IsToken(strings.TrimPrefix(s, ":"))
}

// IsToken reports whether s is an RFC 9110 token (a header name, a method).
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// IsJSON reports whether a Content-Type names JSON: application/json or any
// application/*+json, whatever the parameters and case.
func IsJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

const framingTag = "idemgate-fingerprint-v1"

// Fingerprint returns "sha256:<hex>" over the framing in the package doc.
func Fingerprint(r Request, sel Selection) (string, error) {
	if err := sel.Validate(); err != nil {
		return "", err
	}
	kind, body, err := fingerprintBody(r, sel)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	field(h, framingTag)
	field(h, strings.ToUpper(r.Method))
	field(h, NormalizeTarget(r.Target))
	writeHeaders(h, r.Headers, sel.Headers)
	field(h, kind)
	count(h, len(body))
	h.Write(body)
	var sum [sha256.Size]byte
	return "sha256:" + hex.EncodeToString(h.Sum(sum[:0])), nil
}

func fingerprintBody(r Request, sel Selection) (kind string, body []byte, err error) {
	if len(r.Body) == 0 || !IsJSON(r.ContentType) {
		return "raw", r.Body, nil
	}
	canonical, err := Append(nil, r.Body)
	if err != nil {
		return "", nil, fmt.Errorf("request body: %w", err)
	}
	if len(sel.Include) == 0 && len(sel.Exclude) == 0 {
		return "json", canonical, nil
	}
	selected, err := selectFields(canonical, sel)
	if err != nil {
		return "", nil, err
	}
	// The selection is built from canonical JSON by gjson and sjson, so a
	// failure here is a bug, reported rather than hashed.
	if canonical, err = Append(canonical[:0], selected); err != nil {
		return "", nil, fmt.Errorf("selected body fields: %w", err)
	}
	return "json", canonical, nil
}

func selectFields(doc []byte, sel Selection) ([]byte, error) {
	if len(sel.Include) > 0 {
		projected := []byte("{}")
		for _, p := range sel.Include {
			v := gjson.GetBytes(doc, p)
			if !v.Exists() {
				continue
			}
			var err error
			if projected, err = sjson.SetRawBytes(projected, p, []byte(v.Raw)); err != nil {
				return nil, fmt.Errorf("include path %q: %w", p, err)
			}
		}
		doc = projected
	}
	for _, p := range sel.Exclude {
		var err error
		if doc, err = sjson.DeleteBytes(doc, p); err != nil {
			return nil, fmt.Errorf("exclude path %q: %w", p, err)
		}
	}
	return doc, nil
}

func writeHeaders(h hash.Hash, headers [][2]string, selected []string) {
	names := make([]string, 0, len(selected))
	for _, n := range selected {
		names = append(names, strings.ToLower(n))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	count(h, len(names))
	for _, name := range names {
		field(h, name)
		n := 0
		for _, kv := range headers {
			if strings.EqualFold(kv[0], name) {
				n++
			}
		}
		count(h, n)
		for _, kv := range headers {
			if strings.EqualFold(kv[0], name) {
				field(h, strings.Trim(kv[1], " \t"))
			}
		}
	}
}

func count(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

func field(h hash.Hash, s string) {
	count(h, len(s))
	h.Write([]byte(s))
}
