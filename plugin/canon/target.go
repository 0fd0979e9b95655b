package canon

import (
	"slices"
	"strings"
)

// NormalizeTarget normalizes a request target (path and optional query) so
// that spellings of one resource that HTTP and URI rules call equivalent
// (RFC 3986 section 6.2.2) fingerprint alike:
//
//   - the fragment, if any, is dropped and an empty path becomes "/";
//   - percent-encodings get upper-case hex, and those of unreserved
//     characters (A-Z a-z 0-9 - . _ ~) are decoded;
//   - "." and ".." path segments are removed (RFC 3986 section 5.2.4);
//   - empty query parameters are dropped and the rest are sorted by name,
//     stably, so the order of repeated names is kept; an empty query is
//     dropped with its '?'.
//
// '+' and "%20" stay distinct, as do "%2F" and "/": servers differ on them.
func NormalizeTarget(target string) string {
	target, _, _ = strings.Cut(target, "#")
	path, query, _ := strings.Cut(target, "?")
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	path = removeDotSegments(normalizePercent(path))
	if query == "" {
		return path // most API targets: no parameters to split and sort
	}
	params := strings.Split(query, "&")
	params = slices.DeleteFunc(params, func(p string) bool { return p == "" })
	if len(params) == 0 {
		return path
	}
	for i, p := range params {
		params[i] = normalizePercent(p)
	}
	slices.SortStableFunc(params, func(a, b string) int {
		an, _, _ := strings.Cut(a, "=")
		bn, _, _ := strings.Cut(b, "=")
		return strings.Compare(an, bn)
	})
	return path + "?" + strings.Join(params, "&")
}

func normalizePercent(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b.WriteByte(c) // a lone '%' is kept as it is
			continue
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[v>>4])
			b.WriteByte(hex[v&0xF])
		}
		i += 2
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is RFC 3986 section 5.2.4 on an absolute path.
func removeDotSegments(path string) string {
	if !strings.Contains(path, ".") {
		return path
	}
	segs := strings.Split(path, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}
