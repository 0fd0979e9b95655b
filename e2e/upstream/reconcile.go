package upstream

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// The reconcile contract (controlplane/README.md), the upstream's side.
//
// The gateway sends every request of a route with on_indeterminate:
// reconcile with HeaderAttempt, its reservation's token. The upstream
// records the attempt with the operation — here, under the same lock that
// counts the execution, as a real service would in the transaction that
// writes its row — together with the response the operation produced (for
// X-Demo-Fail-After and X-Demo-Drop the 201 it would have sent: the
// payment exists, only its answer failed). The control plane then asks
// POST /__idempotency/{attempt}:
//
//   - executed: the stored response, which retries replay;
//   - not executed: the attempt is tombstoned first, so that a copy of the
//     request still in flight is refused (409, marked not executed) instead
//     of executing after the key was released — the promise that makes
//     "not_executed" safe; with dry_run nothing is written;
//   - unknown: an attempt created before this process started. The table
//     lives in memory, like the execution counter: after a restart the
//     upstream cannot tell what its previous run executed, and says so
//     rather than guess.

// HeaderAttempt is the attempt id the gateway forwards (the filter's
// default attempt_header).
const HeaderAttempt = "Idemgate-Attempt"

// TokenEnv is the environment variable from which cmd/demo-upstream takes
// Options.ReconcileToken (the stack sets it, and the control plane's
// IDEMGATE_RECONCILE_TOKEN, to the same value).
const TokenEnv = "IDEM_UPSTREAM_RECONCILE_TOKEN"

// PathReconcile is the lookup route; the control plane's URL template is
// http://<upstream>/__idempotency/{attempt}.
const PathReconcile = "/__idempotency/"

const (
	// MaxAttempts bounds the attempt table. Past it, requests carrying a
	// new attempt are refused without executing (503, marked not
	// executed) and lookups of unknown attempts fail (503): a tombstone
	// or an execution that cannot be recorded must not happen at all.
	MaxAttempts = 1 << 20
	// maxQuery bounds a lookup's body.
	maxQuery = 64 << 10
	// unknownRetry is the retry_after_ms of an "unknown" answer.
	unknownRetry = 5 * time.Second
)

// attempt is what the upstream recorded for one attempt id.
type attempt struct {
	key      string // the Idempotency-Key it carried, kept with the row
	executed bool   // false: tombstoned by a lookup, refused from then on
	resp     api.StoredResponse
}

// begin decides, atomically with recording it, what a request carrying
// attempt id does: run (and record the response built by run) or not.
// run is called under the lock, so that a lookup sees either no
// execution (and tombstones the attempt first) or the whole of it.
func (s *Server) begin(id, key string, run func() api.StoredResponse) (st attempt, executed, ok bool) {
	s.attemptsMu.Lock()
	defer s.attemptsMu.Unlock()
	if a, seen := s.attempts[id]; seen {
		return *a, false, true
	}
	if len(s.attempts) >= s.maxAttempts {
		return attempt{}, false, false
	}
	a := &attempt{key: key, executed: true, resp: run()}
	s.attempts[id] = a
	return *a, true, true
}

// lookup answers a reconcile query for attempt id.
func (s *Server) lookup(q api.ReconcileQuery) (api.ReconcileAnswer, error) {
	s.attemptsMu.Lock()
	defer s.attemptsMu.Unlock()
	if a, seen := s.attempts[q.Attempt]; seen {
		if a.executed {
			resp := a.resp
			return api.ReconcileAnswer{Outcome: api.ReconcileExecuted, Response: &resp}, nil
		}
		return api.ReconcileAnswer{Outcome: api.ReconcileNotExecuted}, nil
	}
	if q.CreatedAt.IsZero() || q.CreatedAt.Before(s.started) {
		return api.ReconcileAnswer{Outcome: api.ReconcileUnknown, RetryAfterMS: unknownRetry.Milliseconds()}, nil
	}
	if q.DryRun {
		return api.ReconcileAnswer{Outcome: api.ReconcileNotExecuted}, nil
	}
	if len(s.attempts) >= s.maxAttempts {
		return api.ReconcileAnswer{}, errors.New("attempt table full: cannot record the tombstone")
	}
	s.attempts[q.Attempt] = &attempt{key: q.Key}
	return api.ReconcileAnswer{Outcome: api.ReconcileNotExecuted}, nil
}

// serveReconcile is POST /__idempotency/{attempt}.
func (s *Server) serveReconcile(w http.ResponseWriter, r *http.Request) {
	if s.token != "" {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, []byte("Bearer "+s.token)) != 1 {
			writeError(w, http.StatusUnauthorized, "a lookup needs Authorization: Bearer <the reconcile credential>")
			return
		}
	}
	q, err := decodeQuery(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if id := r.PathValue("attempt"); q.Attempt != id {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("attempt %q in the body, %q in the path", q.Attempt, id))
		return
	}
	ans, err := s.lookup(q)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	s.log.Info("reconcile lookup", "attempt", q.Attempt, "key", q.Key, "dry_run", q.DryRun, "outcome", ans.Outcome)
	writeJSON(w, http.StatusOK, ans)
}

func decodeQuery(body io.Reader) (api.ReconcileQuery, error) {
	var q api.ReconcileQuery
	b, err := io.ReadAll(io.LimitReader(body, maxQuery+1))
	if err != nil {
		return q, fmt.Errorf("reading the query: %w", err)
	}
	if len(b) > maxQuery {
		return q, fmt.Errorf("query over %d bytes", maxQuery)
	}
	if err := json.Unmarshal(b, &q); err != nil {
		return q, fmt.Errorf("query: %w", err)
	}
	if q.Attempt == "" {
		return q, errors.New("query: attempt is empty")
	}
	return q, nil
}

// refuseTombstoned answers a request whose attempt a lookup has answered
// "not executed": it must not run, and says so the way X-Demo-Status does.
func refuseTombstoned(w http.ResponseWriter, id string) {
	w.Header().Set(HeaderNotExecuted, "1")
	writeError(w, http.StatusConflict, fmt.Sprintf("attempt %s was answered not executed to a lookup: refused, not executed", id))
}

// writeStored writes a recorded response as it was first sent.
func writeStored(w http.ResponseWriter, resp api.StoredResponse) {
	for _, h := range resp.Headers {
		w.Header().Add(h[0], h[1])
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}
