package policy

import (
	"slices"
	"strings"
)

// DefaultReplayHeaders are the response headers a replay returns unless
// configured otherwise: those that describe the representation or point to
// the created resource. Date is fresh on a replay, Content-Length is
// recomputed.
var DefaultReplayHeaders = []string{
	"cache-control", "content-disposition", "content-encoding", "content-language",
	"content-location", "content-type", "etag", "expires", "last-modified",
	"link", "location", "vary",
}

// neverReplayed are headers a replay must not copy, whatever the
// configuration: hop-by-hop fields (RFC 9110 7.6.1), framing and date that
// the replay recomputes, and the replay marker itself. set-cookie has its
// own switch, replay_set_cookie, so that it is never allowed by accident.
var neverReplayed = []string{
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
	"content-length", "date", "idempotent-replayed",
}

// ReplayHeader reports whether a replay returns the response header name
// (lower case, as Envoy presents it).
func (r *Route) ReplayHeader(name string) bool {
	return slices.Contains(r.ReplayHeaders, name)
}

// DefaultReplayedHeader marks a replayed response unless a route's
// replay_header names another (Idempotency-Replayed, X-Idempotent-Replayed
// in other APIs).
const DefaultReplayedHeader = "idempotent-replayed"

// replayedHeader checks a route's replay marker. The filter adds it to
// every replay, so it must not be a header the replay copies from the
// stored response, one that frames or dates it, or the not-executed header
// (removed from the route's responses).
func replayedHeader(path string, name *string, r *Route) (string, error) {
	n, err := responseMarker(path, name, r, markerRules{
		def:      DefaultReplayedHeader,
		exempt:   DefaultReplayedHeader, // in neverReplayed, so that no replay copies a stored one
		needed:   "the replay frames, dates or must never carry",
		replayed: ": a replay would carry it twice",
	})
	if err == nil && n == r.NotExecutedHeader {
		return "", fieldErr(path, "%s is the route's not_executed_header, which the filter removes from its responses", n)
	}
	return n, err
}

// notExecutedHeader checks the route's not-executed header. The filter
// removes it from every response of the route, so it must not be a header
// a response needs or a replay returns.
func notExecutedHeader(path string, name *string, r *Route) (string, error) {
	return responseMarker(path, name, r, markerRules{
		def:      DefaultNotExecutedHeader,
		needed:   "responses need; the not-executed header is removed from every response",
		replayed: "; the not-executed header is removed from every response",
	})
}

// markerRules are what sets a route's two marker headers apart: the
// default, a name accepted as is, and why a refused name may not be one.
type markerRules struct {
	def, exempt string
	// needed ends "X is a header ...", for a header a response needs or
	// a replay frames; replayed ends "X is a replayed header (...)...".
	needed, replayed string
}

// responseMarker reads a response header the filter adds to a route's
// responses or removes from them (path names the field; rules.def when
// unset): a lower-case response header name, not a pseudo-header, not a
// header a response needs or a replay frames (neverReplayed, set-cookie),
// and not one a replay returns.
func responseMarker(path string, name *string, r *Route, rules markerRules) (string, error) {
	if name == nil {
		return rules.def, nil
	}
	n, err := headerName(path, *name)
	switch {
	case err != nil:
		return "", err
	case strings.HasPrefix(n, ":"):
		return "", fieldErr(path, "want a response header name, not a pseudo-header, got %q", *name)
	case n == rules.exempt:
		return n, nil
	case n == "set-cookie" || slices.Contains(neverReplayed, n):
		return "", fieldErr(path, "%s is a header %s", n, rules.needed)
	case r.ReplayHeader(n):
		return "", fieldErr(path, "%s is a replayed header (replay_headers or the safe default)%s", n, rules.replayed)
	}
	return n, nil
}
