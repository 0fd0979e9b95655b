package policy

import (
	"fmt"
	"path"
	"strings"
)

// Match returns the first route, in configuration order, whose own match
// (host, path and methods; no route_name) governs a request, or nil;
// Select also weighs Envoy's route name and metadata. host is the
// :authority (any case, port ignored), target the :path (query and
// fragment ignored), method the :method (exact).
//
// Paths are compared as Envoy forwards them: turn on Envoy's normalize_path
// and merge_slashes so that /a//b and /a/./b are not another route.
func (c *Config) Match(host, target, method string) *Route {
	host = normalizeHost(host)
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	for i := range c.Routes {
		if r := &c.Routes[i]; r.Match.SelectsByPath() && r.Match.matches(host, target, method) {
			return r
		}
	}
	return nil
}

func (m *RouteMatch) matches(host, p, method string) bool {
	if !m.hasMethod(method) || !m.matchHost(host) {
		return false
	}
	switch {
	case m.Path != "":
		return p == m.Path
	case m.Prefix != "":
		return strings.HasPrefix(p, m.Prefix)
	case m.Glob != "":
		return matchGlob(m.Glob, p)
	}
	return true // no path: a route_name route, for any path of its Envoy route
}

func (m *RouteMatch) hasMethod(method string) bool {
	for _, x := range m.Methods {
		if x == method {
			return true
		}
	}
	return false
}

// matchHost: an empty pattern matches any host; "*.example.com" any host
// ending in ".example.com" with at least one character before (as Envoy's
// suffix wildcards: a.b.example.com too, example.com not); else exact.
// Both sides are lower case here.
func (m *RouteMatch) matchHost(host string) bool {
	switch {
	case m.Host == "":
		return true
	case strings.HasPrefix(m.Host, "*"):
		return len(host) > len(m.Host)-1 && strings.HasSuffix(host, m.Host[1:])
	default:
		return host == m.Host
	}
}

// normalizeHost lowers the case and drops a port: "API.Example.com:8443"
// → "api.example.com", "[::1]:8080" → "[::1]".
func normalizeHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".") // the FQDN form names the same host
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// matchGlob: '*' matches any run of characters within one path segment
// (not '/'); a final "/**" matches the rest of the path: "/v1/**" matches
// "/v1", "/v1/" and "/v1/a/b". Patterns are checked by validateGlob.
func matchGlob(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "/**"); ok {
		if p == base {
			return true
		}
		if base == "" {
			return strings.HasPrefix(p, "/")
		}
		// The base may hold '*': match it against as many leading
		// segments as it has.
		n := strings.Count(base, "/")
		cut := segmentEnd(p, n)
		if cut < 0 {
			return false
		}
		ok, _ := path.Match(base, p[:cut])
		return ok
	}
	ok, _ := path.Match(pattern, p)
	return ok
}

// segmentEnd returns the index of the '/' that ends the first n segments of
// p (p[:i] is those segments), len(p) when p has exactly n, or -1.
func segmentEnd(p string, n int) int {
	seen := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			if seen == n {
				return i
			}
			seen++
		}
	}
	if seen == n {
		return len(p)
	}
	return -1
}

// validateGlob refuses what matchGlob does not define, so that nobody
// writes "?" or "[a-z]" expecting it to work.
func validateGlob(g string) error {
	if !strings.HasPrefix(g, "/") {
		return fmt.Errorf("must start with '/'")
	}
	if i := strings.IndexAny(g, "?[]{}\\#"); i >= 0 {
		return fmt.Errorf("%q at byte %d: only '*' and a final \"/**\" are wildcards", g[i], i)
	}
	if i := strings.Index(g, "**"); i >= 0 && (i != len(g)-2 || g[i-1] != '/') {
		return fmt.Errorf("\"**\" is allowed only as the last segment (\"/v1/**\")")
	}
	return nil
}
