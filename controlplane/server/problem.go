package server

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Problem types (RFC 9457 "type" members). They are URNs: stable names a
// client can switch on, not documents to fetch. The README lists them.
const (
	probPrefix          = "urn:idemgate:problem:"
	probBadRequest      = probPrefix + "bad-request"
	probUnauthorized    = probPrefix + "unauthorized"
	probForbidden       = probPrefix + "forbidden"
	probNotFound        = probPrefix + "not-found"
	probRecordNotFound  = probPrefix + "record-not-found"
	probMethod          = probPrefix + "method-not-allowed"
	probTooLarge        = probPrefix + "request-too-large"
	probStaleToken      = probPrefix + "stale-token"
	probNotInProgress   = probPrefix + "not-in-progress"
	probLeaseLive       = probPrefix + "lease-live"
	probUnavailable     = probPrefix + "store-unavailable"
	probUndecryptable   = probPrefix + "undecryptable"
	probInternal        = probPrefix + "internal"
	probEdgesNotTold    = probPrefix + "edges-not-told"
	probNotReconcilable = probPrefix + "not-reconcilable"
	probLookupFailed    = probPrefix + "reconcile-lookup-failed"
	probOverloaded      = api.ProblemOverloaded // shed by admission control: nothing reached the store
	contentTypeProblem  = "application/problem+json"
	contentTypeJSON     = "application/json"
	retryAfterSeconds   = 1 // Retry-After of a 503: Redis usually comes back or fails over within seconds
	headerRetryAfter    = "Retry-After"
	headerAllow         = "Allow"
	headerWWWAuth       = "WWW-Authenticate"
	headerRequestID     = "X-Request-Id"
	maxLoggedRequestIDs = 128 // bytes of a caller's X-Request-Id kept in logs
)

// problem is an error answer: its status, type and texts.
type problem struct {
	status int
	typ    string
	title  string
	detail string
}

func (p *problem) Error() string { return p.title + ": " + p.detail }

func badRequest(detail string) *problem {
	return &problem{http.StatusBadRequest, probBadRequest, "Bad request", detail}
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *problem) {
	h := w.Header()
	h.Set("Content-Type", contentTypeProblem)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.status == http.StatusServiceUnavailable {
		h.Set(headerRetryAfter, strconv.Itoa(retryAfterSeconds))
	}
	b, _ := json.Marshal(api.Problem{Type: p.typ, Title: p.title, Status: p.status, Detail: p.detail})
	w.WriteHeader(p.status)
	_, _ = w.Write(append(b, '\n'))
}

// writeJSON writes v as application/json with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are written: a bug
		writeProblem(w, &problem{http.StatusInternalServerError, probInternal, "Internal error", "cannot encode the answer"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	// Answers may carry stored responses, i.e. personal data.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
