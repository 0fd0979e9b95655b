// Package api holds the wire types of the control plane's HTTP/JSON API,
// shared by the service and by the Wasm filter. It imports only the
// standard library (no network code), so the filter can use it without
// pulling in Redis or network code.
package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// Paths of the API. The filter calls the first four; operators the admin
// ones (also through idemctl keys).
const (
	PathReserve      = "/v1/reserve"
	PathComplete     = "/v1/complete"
	PathRelease      = "/v1/release"
	PathAbandon      = "/v1/abandon"
	PathAdminKeys    = "/v1/admin/keys"         // GET, DELETE ?scope=S&key=K
	PathAdminRelease = "/v1/admin/keys/release" // POST ?scope=S&key=K
	// PathAdminReconcile (POST ?scope=S&key=K[&dry_run=1]) asks the
	// upstream now whether the record's attempt ran and, unless dry_run,
	// applies the answer (AdminResult with Answer).
	PathAdminReconcile = "/v1/admin/keys/reconcile"
	// PathAdminKeyList (GET ?state=indeterminate|in_progress[&scope=S]
	// [&cursor=C][&limit=N]) answers KeyList: records in that state,
	// never bodies, a bounded page per call.
	PathAdminKeyList = "/v1/admin/keys/list"
	// PathEdgeEpoch (GET) answers EdgeEpoch: the filter's tick polls it to
	// learn that an operator changed records its edge cache may hold.
	PathEdgeEpoch = "/v1/edge-epoch"
	PathHealthz   = "/healthz"
	PathReadyz    = "/readyz"
	PathMetrics   = "/metrics"
)

// Defaults both sides share; the limits are in rules.go.
const (
	DefaultLease         = 30 * time.Second
	DefaultTTL           = 24 * time.Hour
	DefaultMaxStoredBody = 1 << 20 // bytes of a stored response, counted by StoredSize
)

// Outcome is the result of a reserve.
type Outcome string

const (
	// Acquired: the caller holds the key until Complete, Release or the
	// lease ends; it must forward the request upstream.
	Acquired Outcome = "acquired"
	// InProgress: another holder's lease is live (LeaseRemainingMS);
	// retry later. Also the answer to a reserve whose Holder released by
	// holder before this reserve arrived (LeaseRemainingMS: how long its
	// fence stands): nothing was reserved.
	InProgress Outcome = "in_progress"
	// Mismatch: the key was used with another fingerprint (422).
	Mismatch Outcome = "mismatch"
	// Completed: the operation ran; replay Response.
	Completed Outcome = "completed"
	// Indeterminate: a request with this key was forwarded and its outcome
	// is unknown (the holder abandoned it, or its lease ended on a route
	// that locks); retrying will not help until an operator or the
	// record's TTL (ExpiresInMS) resolves it.
	Indeterminate Outcome = "indeterminate"
)

// What a reservation becomes when its lease ends without word from its
// holder (ReserveRequest.OnIndeterminate).
const (
	// LeaseLock (the default, also for ""): the record becomes
	// indeterminate; it is never handed to another request.
	LeaseLock = "lock"
	// LeaseRelease: the next reserve takes the key over (a route that
	// opted in: its operation is safe to run again).
	LeaseRelease = "release"
	// LeaseReconcile: the record becomes indeterminate, as with
	// LeaseLock, and the control plane then asks the upstream (the
	// reserve's ReconcileTarget) whether the attempt ran: executed
	// completes the record with the upstream's response, not executed
	// releases it, unknown asks again later.
	LeaseReconcile = "reconcile"
)

// MaxReconcileTargetLen bounds ReserveRequest.ReconcileTarget.
const MaxReconcileTargetLen = 64

// DefaultReconcileTarget is the target of a reserve that names none.
const DefaultReconcileTarget = "default"

// Holder ids: what ReserveRequest.Holder and ReleaseRequest.Holder accept.
const (
	MinHolderLen = 16
	MaxHolderLen = 64
)

// EdgeEpochPoll is how often each filter VM polls PathEdgeEpoch. An
// operator's delete or release reaches every edge cache within
// EdgeEpochPoll plus the filter's control-plane timeout while the control
// plane is reachable.
const EdgeEpochPoll = time.Second

// ReserveRequest asks for the key scope+key for a request whose fingerprint
// is Fingerprint. Zero LeaseMS or TTLMS mean the service's defaults; a zero
// LeaseMS never exceeds the TTL (min(default lease, TTL)).
type ReserveRequest struct {
	Scope       string `json:"scope"`
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint"`
	LeaseMS     int64  `json:"lease_ms,omitempty"`
	TTLMS       int64  `json:"ttl_ms,omitempty"`
	// OnIndeterminate is LeaseLock ("" too) or LeaseRelease: what the
	// record becomes when this reservation's lease ends without word from
	// its holder. The record keeps the value of the reserve that acquired
	// it.
	OnIndeterminate string `json:"on_indeterminate,omitempty"`
	// ReconcileTarget names the lookup the control plane asks on a
	// LeaseReconcile route ("" = DefaultReconcileTarget); only with
	// LeaseReconcile. See ValidateReconcileTarget.
	ReconcileTarget string `json:"reconcile_target,omitempty"`
	// Holder is an id the caller chooses for this reserve attempt
	// (MinHolderLen to MaxHolderLen bytes of [A-Za-z0-9_-], at least 128
	// random bits): an acquired token ends with "." + Holder, and a
	// ReleaseRequest may name the Holder instead of the token, so that a
	// caller that never saw the answer (its client left first) can free
	// what it may hold. Optional: without it the service picks the id.
	Holder string `json:"holder,omitempty"`
}

// ReserveResponse carries the outcome and what goes with it.
type ReserveResponse struct {
	Outcome Outcome `json:"outcome"`
	// Token is the fencing token of an Acquired reservation: Complete and
	// Release must present it, and a newer reservation invalidates it.
	Token string `json:"token,omitempty"`
	// LeaseRemainingMS is how long an InProgress holder's lease still runs.
	LeaseRemainingMS int64 `json:"lease_remaining_ms,omitempty"`
	// ExpiresInMS is how long an Indeterminate or Completed record still
	// lives (its remaining TTL in Redis). A filter caching a Completed
	// replay at the edge keeps it no longer. Absent (0) on a Completed
	// answer: not said (an older control plane, or a key without expiry).
	ExpiresInMS int64 `json:"expires_in_ms,omitempty"`
	// ReconcileInMS, on an Indeterminate answer for a record being
	// reconciled, is when the next lookup of the upstream is due (≥1): a
	// retry after it may find the record resolved. Absent otherwise.
	ReconcileInMS int64 `json:"reconcile_in_ms,omitempty"`
	// Response is the stored response of a Completed key.
	Response *StoredResponse `json:"response,omitempty"`
}

// StoredResponse is an upstream response kept for replay.
type StoredResponse struct {
	Status int `json:"status"`
	// Headers are [name, value] pairs, in order; see ValidateHeaders.
	Headers Headers `json:"headers,omitempty"`
	Body    []byte  `json:"body,omitempty"` // base64 in JSON
	// BodyOmitted marks a response whose headers and body exceeded the
	// service's cap: only Status was stored. A replay of it cannot be
	// faithful; the filter decides what to answer.
	BodyOmitted bool `json:"body_omitted,omitempty"`
}

// CompleteRequest stores the response of the holder of Token.
type CompleteRequest struct {
	Scope    string         `json:"scope"`
	Key      string         `json:"key"`
	Token    string         `json:"token"`
	Response StoredResponse `json:"response"`
}

// ReleaseRequest frees the reservation of the holder of Token, after a
// transactional failure, so that a retry may execute. Exactly one of
// Token and Holder is set: by Holder (the id its reserve carried) it frees
// the record only when that holder holds it, and when no record exists
// yet it fences the holder out, so that the reserve, should it arrive
// later, does not acquire.
type ReleaseRequest struct {
	Scope  string `json:"scope"`
	Key    string `json:"key"`
	Token  string `json:"token,omitempty"`
	Holder string `json:"holder,omitempty"`
}

// AbandonRequest marks the reservation of the holder of Token
// indeterminate: the request was forwarded upstream but no response came
// back, so the operation may have run. The key is neither released (a
// retry must not execute again) nor completed (there is nothing to
// replay): retries are answered Indeterminate until the record's TTL ends
// or an operator releases or deletes it. Abandoning again is
// acknowledged.
type AbandonRequest struct {
	Scope string `json:"scope"`
	Key   string `json:"key"`
	Token string `json:"token"`
}

// EdgeEpoch is the answer of PathEdgeEpoch: a number that changes whenever
// an operator deletes or releases a record, and after Redis loses its data
// (it then starts again from Redis's clock, in µs: never a value the edges
// knew). Compare it for equality. An edge-cache entry filled while the
// filter knew another epoch is not replayed.
type EdgeEpoch struct {
	Epoch int64 `json:"epoch"`
}

// Result is the answer to Complete, Release and Abandon: "completed",
// "released" or "indeterminate".
type Result struct {
	Outcome string `json:"outcome"`
}

// State of a record.
type State string

const (
	StateInProgress State = "in_progress"
	StateCompleted  State = "completed"
	// StateIndeterminate: the holder abandoned the key after forwarding the
	// request without getting a response (see AbandonRequest), or its
	// lease ended without word on a route that locks.
	StateIndeterminate State = "indeterminate"
)

// Record is what the admin API shows of a key. The body is left out unless
// asked for: stored responses carry personal data.
type Record struct {
	Scope string `json:"scope"`
	Key   string `json:"key"`
	State State  `json:"state"`
	// Fingerprint is what the store keeps: a hash of the fingerprint
	// ("k1:" keyed, "s1:" unkeyed), never the fingerprint itself (only
	// records written before hashing show it, until their next reserve).
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// LeaseExpiresAt: in progress. A record whose lease ended on a route
	// that locks shows State indeterminate with this lease end (in the
	// past) until a reserve writes the state down and drops the lease.
	LeaseExpiresAt *time.Time      `json:"lease_expires_at,omitempty"`
	Status         int             `json:"status,omitempty"` // completed only
	BodyOmitted    bool            `json:"body_omitted,omitempty"`
	Response       *StoredResponse `json:"response,omitempty"` // only with ?body=1
	// OnIndeterminate is what the acquiring reserve asked for
	// (LeaseLock, LeaseRelease, LeaseReconcile); "" for records written
	// before it was shown (lock).
	OnIndeterminate string `json:"on_indeterminate,omitempty"`
	// ReconcileTarget, ReconcileAttempts, ReconcileLast and
	// ReconcileNextAt describe a LeaseReconcile record: its lookup
	// target, how many lookups were answered (the one that resolved it
	// included), the last answer (ReconcileExecuted on a record a lookup
	// completed, else ReconcileUnknown or ReconcileFailed: a record a
	// lookup released is gone) and when the next lookup is due (absent
	// when the record is not in the reconcile index).
	ReconcileTarget   string     `json:"reconcile_target,omitempty"`
	ReconcileAttempts int        `json:"reconcile_attempts,omitempty"`
	ReconcileLast     string     `json:"reconcile_last,omitempty"`
	ReconcileNextAt   *time.Time `json:"reconcile_next_at,omitempty"`
}

// Pages of PathAdminKeyList: limit is how many records' keys one call
// examines at most (about: a Redis SCAN may return a few more).
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// KeyList answers PathAdminKeyList: the records of the page (without
// bodies) and the cursor of the next page; an empty Cursor means the scan
// is complete. A page may be empty while Cursor is not: keep going.
type KeyList struct {
	Records []Record `json:"records"`
	Cursor  string   `json:"cursor,omitempty"`
}

// Effect of an admin mutation, as idemctl reports it too.
type Effect string

const (
	EffectDeleted      Effect = "deleted"
	EffectReleased     Effect = "released"
	EffectNoop         Effect = "noop"
	EffectWouldDelete  Effect = "would_delete"
	EffectWouldRelease Effect = "would_release"
	// EffectCompleted: a reconcile stored the upstream's response.
	EffectCompleted     Effect = "completed"
	EffectWouldComplete Effect = "would_complete"
)

// AdminResult answers DELETE, release and reconcile on the admin API.
type AdminResult struct {
	Effect Effect  `json:"effect"`
	Record *Record `json:"record,omitempty"` // the record before the change
	// Answer is the upstream's answer to a reconcile (its response's
	// body left out unless asked for with ?body=1).
	Answer *ReconcileAnswer `json:"answer,omitempty"`
}

// ReconcileQuery is the JSON body the control plane POSTs to the
// upstream's lookup URL: did the attempt Attempt (the token the filter
// forwarded in the attempt header) of Key run?
type ReconcileQuery struct {
	Attempt     string    `json:"attempt"`
	Key         string    `json:"key"`         // the Idempotency-Key as the client sent it
	Scope       string    `json:"scope"`       // the record's scope (the filter's hash of the principal)
	Fingerprint string    `json:"fingerprint"` // the stored (hashed) fingerprint form
	CreatedAt   time.Time `json:"created_at"`  // when the reservation was made (Redis clock)
	// DryRun asks the upstream to answer without writing anything (no
	// tombstone): a "not_executed" answer is then only informative.
	DryRun bool `json:"dry_run,omitempty"`
}

// ReconcileAnswer is the upstream's answer to a ReconcileQuery (HTTP 200
// only; anything else is a failed lookup). See ValidateReconcileAnswer.
type ReconcileAnswer struct {
	Outcome string `json:"outcome"` // ReconcileExecuted | ReconcileNotExecuted | ReconcileUnknown
	// Response is what retries replay; required with ReconcileExecuted.
	Response *StoredResponse `json:"response,omitempty"`
	// RetryAfterMS, optional with ReconcileUnknown: when to ask again.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// Outcomes of a lookup (ReconcileAnswer.Outcome).
const (
	// ReconcileExecuted: the attempt ran; Response is its answer.
	ReconcileExecuted = "executed"
	// ReconcileNotExecuted: the attempt did not run, and the upstream has
	// durably recorded that it refuses this attempt id from now on.
	ReconcileNotExecuted = "not_executed"
	// ReconcileUnknown: the upstream cannot tell yet; ask again later.
	ReconcileUnknown = "unknown"
	// ReconcileFailed is never an answer: Record.ReconcileLast shows it
	// for a lookup that failed (transport error, a status other than 200,
	// an invalid answer).
	ReconcileFailed = "failed"
)

// Problem is an RFC 9457 problem details body (application/problem+json),
// the shape of every error the service returns.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ProblemOverloaded is the problem type of a 503 the control plane's
// admission control answers before any store call: the request changed
// nothing, so a shed reserve reserved nothing and leaves no holder to
// release.
const ProblemOverloaded = "urn:idemgate:problem:overloaded"

// Headers are a stored response's header fields as [name, value] pairs. In
// JSON: an array of two-string arrays. Decoding is strict where
// encoding/json is not for Go arrays (it pads ["a"] to ["a", ""], drops a
// third element and turns null into ["", ""]): every entry must be exactly
// two strings, else UnmarshalJSON fails with a *HeaderError.
type Headers [][2]string

// UnmarshalJSON decodes [[name, value], ...] strictly; null is no headers.
func (h *Headers) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(b, &entries); err != nil {
		return &HeaderError{Index: -1, Reason: "want an array of [name, value] pairs, got JSON " + jsonKind(b)}
	}
	out := make(Headers, len(entries))
	for i, raw := range entries {
		var pair []json.RawMessage
		if jsonKind(raw) != "array" || json.Unmarshal(raw, &pair) != nil {
			return &HeaderError{Index: i, Reason: "want [name, value], got JSON " + jsonKind(raw)}
		}
		if len(pair) != 2 {
			s := "s"
			if len(pair) == 1 {
				s = ""
			}
			return &HeaderError{Index: i, Reason: fmt.Sprintf("want [name, value], got %d element%s", len(pair), s)}
		}
		for j, what := range [2]string{"name", "value"} {
			if jsonKind(pair[j]) != "string" || json.Unmarshal(pair[j], &out[i][j]) != nil {
				return &HeaderError{Index: i, Reason: what + " is not a string"}
			}
		}
	}
	*h = out
	return nil
}

// jsonKind names the kind of a JSON value by its first byte.
func jsonKind(b []byte) string {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '[':
			return "array"
		case '{':
			return "object"
		case '"':
			return "string"
		case 't', 'f':
			return "boolean"
		case 'n':
			return "null"
		}
		return "number"
	}
	return "nothing"
}

// HeaderError reports a malformed or invalid stored header: Index is its
// position in the headers (-1: the headers as a whole).
type HeaderError struct {
	Index  int
	Reason string
}

func (e *HeaderError) Error() string {
	if e.Index < 0 {
		return "response.headers: " + e.Reason
	}
	return fmt.Sprintf("response.headers[%d]: %s", e.Index, e.Reason)
}

// ValidateHeaders checks stored headers before they are kept for replay:
// every name is a non-empty RFC 9110 token (so no pseudo-headers such as
// ":status", no spaces, no colons, ASCII only) and no value contains CR, LF
// or NUL, which would let a stored response split or smuggle a replayed
// one. The error is a *HeaderError naming the first bad entry.
func ValidateHeaders(h [][2]string) error {
	for i, kv := range h {
		name, value := kv[0], kv[1]
		if name == "" {
			return &HeaderError{Index: i, Reason: "name is empty"}
		}
		for j := 0; j < len(name); j++ {
			if !isTokenChar(name[j]) {
				return &HeaderError{Index: i, Reason: fmt.Sprintf("name is not an RFC 9110 token (byte %d)", j)}
			}
		}
		for j := 0; j < len(value); j++ {
			if c := value[j]; c == '\r' || c == '\n' || c == 0 {
				return &HeaderError{Index: i, Reason: fmt.Sprintf("value has a CR, LF or NUL at byte %d", j)}
			}
		}
	}
	return nil
}

// isTokenChar reports whether c is an RFC 9110 tchar:
// "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" /
// "`" / "|" / "~" / DIGIT / ALPHA.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
