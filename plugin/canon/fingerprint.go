package canon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/idemgate/idemgate/plugin/frame"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Request is what a fingerprint covers.
type Request struct {
	Method string
	// Host is the request's host (":authority"), as received or already
	// normalized; Fingerprint applies NormalizeHost. A filter that maps
	// host aliases passes the host the alias stands for.
	Host        string
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

const framingTag = "idemgate-fingerprint-v2"

// SplitHost splits a host into its name and its port with the colon
// (":8443", ":" or ""), keeping an IPv6 literal's brackets in the name. It
// checks nothing: the policy validates configured hosts, and a request's
// host is only normalized.
func SplitHost(h string) (name, port string) {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			return h[:i+1], h[i+1:]
		}
		return h, ""
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i], h[i:]
	}
	return h, ""
}

// NormalizeHost returns the form of a request host (":authority" or
// Host) that the fingerprint counts: lower case, a trailing '.' of the
// name dropped (the FQDN form names the same host), and the port dropped
// when it is a default one (":80", ":443") or empty; another port is kept,
// since another port may be another API. IPv6 literals keep their
// brackets: "[2001:DB8::1]:443" → "[2001:db8::1]".
func NormalizeHost(h string) string {
	name, port := SplitHost(h)
	if port == ":" || port == ":80" || port == ":443" {
		port = ""
	}
	name = strings.TrimSuffix(name, ".")
	out := name + port
	for i := 0; i < len(out); i++ {
		if c := out[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(out)
		}
	}
	return out
}

// Fingerprint returns "sha256:<hex>" over the framing in the package doc.
func Fingerprint(r Request, sel Selection) (string, error) {
	if err := sel.Validate(); err != nil {
		return "", err
	}
	// The whole preimage is built in one pooled buffer and hashed with one
	// Sum256: compiled to Wasm, a hash.Hash and a fresh buffer for the
	// canonical body cost a visible share of a request.
	bp := preimages.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledPreimage {
			preimages.Put(bp)
		}
	}()
	b := frame.Field((*bp)[:0], framingTag)
	b = frame.Field(b, strings.ToUpper(r.Method))
	b = frame.Field(b, NormalizeHost(r.Host))
	b = frame.Field(b, NormalizeTarget(r.Target))
	b = appendHeaders(b, r.Headers, sel.Headers)
	b, err := appendBody(b, r, sel)
	*bp = b[:0]
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	var out [len("sha256:") + 2*sha256.Size]byte
	copy(out[:], "sha256:")
	hex.Encode(out[len("sha256:"):], sum[:])
	return string(out[:]), nil
}

var preimages = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledPreimage keeps a rare huge body's buffer out of the pool.
const maxPooledPreimage = 1 << 20

// appendBody appends the body kind and the body, each a field, to b.
func appendBody(b []byte, r Request, sel Selection) ([]byte, error) {
	if len(r.Body) == 0 || !IsJSON(r.ContentType) {
		b = frame.Field(b, "raw")
		return frame.Field(b, r.Body), nil
	}
	b = frame.Field(b, "json")
	b, start := frame.Open(b) // the canonical body, its length once known
	canonical, err := Append(b, r.Body)
	if err != nil {
		return b, fmt.Errorf("request body: %w", err)
	}
	body := canonical[start:]
	if len(sel.Include) > 0 || len(sel.Exclude) > 0 {
		selected, err := selectFields(body, sel)
		if err != nil {
			return canonical, err
		}
		// sjson may hand back its input (nothing to delete): a copy keeps
		// Append from writing over what it reads.
		selected = bytes.Clone(selected)
		// The selection is built from canonical JSON by gjson and sjson,
		// so a failure here is a bug, reported rather than hashed.
		if canonical, err = Append(canonical[:start], selected); err != nil {
			return canonical, fmt.Errorf("selected body fields: %w", err)
		}
	}
	frame.Close(canonical, start)
	return canonical, nil
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

func appendHeaders(b []byte, headers [][2]string, selected []string) []byte {
	names := make([]string, 0, len(selected))
	for _, n := range selected {
		names = append(names, strings.ToLower(n))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	b = frame.Count(b, len(names))
	for _, name := range names {
		b, _ = frame.Header(b, headers, name)
	}
	return b
}
