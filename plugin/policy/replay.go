package policy

import "slices"

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
