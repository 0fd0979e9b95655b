package main

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// problem is one of the answers the filter gives itself: an RFC 9457
// application/problem+json body. The titles of 400 (missing), 409 (in
// progress) and 422 are the IETF draft's (draft-ietf-httpapi-idempotency-
// key-header, section 2.7).
type problem struct {
	status     int
	typ, title string
}

var (
	probKeyMissing   = problem{400, "urn:idemgate:problem:key-missing", "Idempotency-Key is missing"}
	probKeyMalformed = problem{400, "urn:idemgate:problem:key-malformed", "Idempotency-Key is malformed"}
	probBadJSON      = problem{400, "urn:idemgate:problem:invalid-json", "Request body is not valid JSON"}
	probTooLarge     = problem{413, "urn:idemgate:problem:body-too-large", "Request body is too large"}
	probKeyReused    = problem{422, "urn:idemgate:problem:key-reused", "Idempotency-Key is already used"}
	probInProgress   = problem{409, "urn:idemgate:problem:in-progress", "A request is outstanding for this Idempotency-Key"}
	probDuplicate    = problem{409, "urn:idemgate:problem:duplicate", "A request with this Idempotency-Key was already processed"}
	probUnavailable  = problem{503, "urn:idemgate:problem:unavailable", "Idempotency service unavailable"}
	// A governed request the VM's max_held_bytes has no room for (held.go).
	probOverloaded = problem{503, "urn:idemgate:problem:overloaded", "The gateway is overloaded"}
	// A request without a principal (its route's scope values absent or
	// empty) where the route does not allow anonymous callers.
	probPrincipalMissing = problem{401, "urn:idemgate:problem:principal-missing", "The request carries no principal"}
	// A request whose Envoy route's metadata names a policy route the
	// configuration lacks (envoyroute.go).
	probRouteUnknown = problem{500, "urn:idemgate:problem:policy-route-unknown", "The gateway's idempotency policy is misconfigured"}
	// A governed request with a compressed body.
	probContentEncoding = problem{415, "urn:idemgate:problem:content-encoding", "Content-Encoding is not supported"}
	// probIndeterminate has no Retry-After (retrying will not help; an
	// operator or a new key will) unless the control plane is reconciling
	// the record with the upstream: then Retry-After says when it asks next.
	probIndeterminate = problem{409, "urn:idemgate:problem:indeterminate", "The outcome of the request with this Idempotency-Key is unknown"}
)

// sendProblem answers the client with p; retryAfter > 0 adds Retry-After
// in seconds; extra headers follow. The stream must be paused (the caller returns ActionPause or
// is a callout callback): Envoy expects no further iteration after a
// local reply.
func sendProblem(p problem, detail string, retryAfter int, extra ...[2]string) {
	body, _ := json.Marshal(api.Problem{Type: p.typ, Title: p.title, Status: p.status, Detail: detail})
	headers := [][2]string{{"content-type", "application/problem+json"}, {"cache-control", "no-store"}}
	if retryAfter > 0 {
		headers = append(headers, [2]string{"retry-after", strconv.Itoa(retryAfter)})
	}
	headers = append(headers, extra...)
	if err := proxywasm.SendHttpResponse(uint32(p.status), headers, body, -1); err != nil {
		proxywasm.LogErrorf("idempotency filter: send %d: %v", p.status, err)
	}
}

// sendReplay answers with a stored response: its status and body, the
// stored headers the route replays (never hop-by-hop ones, content-length
// or date; set-cookie only when configured), and the route's replay_header
// (Idempotent-Replayed by default), whether the edge cache or the control
// plane had the response.
func sendReplay(r *policy.Route, stored *api.StoredResponse) {
	headers := replayHeaders(r, stored.Headers)
	headers = append(headers, [2]string{r.ReplayedHeader, "true"})
	if err := proxywasm.SendHttpResponse(uint32(stored.Status), headers, stored.Body, -1); err != nil {
		proxywasm.LogErrorf("idempotency filter: send replay %d: %v", stored.Status, err)
	}
}

// replayHeaders keeps the headers a route replays and that the control
// plane accepts (RFC 9110 names, no CR, LF or NUL in values). It serves
// both directions: what complete stores and what a replay returns.
//
// Values are made valid UTF-8 here, each invalid byte becoming U+FFFD as
// JSON carries it to the control plane, so that the edge cache stores
// and replays the very bytes a replay from the control plane returns.
func replayHeaders(r *policy.Route, in [][2]string) [][2]string {
	var out [][2]string
	for _, kv := range in {
		name := asciiLower(kv[0])
		if !r.ReplayHeader(name) {
			continue
		}
		h := [2]string{name, validUTF8(kv[1])}
		if api.ValidateHeaders([][2]string{h}) != nil {
			continue
		}
		out = append(out, h)
	}
	return out
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json writes it (strings.ToValidUTF8
// would replace a run of them with one).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
