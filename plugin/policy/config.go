package policy

import (
	"fmt"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/canon"
)

// Config is a parsed and validated plugin configuration, defaults applied.
// It is read-only after Parse and, where a scope names hmac_key_env,
// ResolveEnv.
type Config struct {
	ControlPlane ControlPlane
	Routes       []Route // at least one; Match picks the first that matches
	// EdgeCacheSlots is how many entries the edge cache (proxy-wasm shared
	// data, one per Envoy vm_id) holds at most: a key hashes to one slot
	// and a newer entry replaces what the slot held. With each entry at
	// most its route's EdgeCacheMaxEntryBytes, the cache's memory is
	// bounded by EdgeCacheSlots × the largest EdgeCacheMaxEntryBytes.
	// 0 turns the edge cache off.
	EdgeCacheSlots int
	// MaxHeldBytes bounds the bytes the governed streams of one plugin
	// context (one per Envoy worker) hold at once; a new governed request
	// that would exceed it is answered 503 + Retry-After. See the README's
	// "max_held_bytes" for what counts and the bound on linear memory.
	MaxHeldBytes int
}

// ControlPlane says how the filter reaches the key service.
type ControlPlane struct {
	Cluster   string // Envoy cluster of the control plane
	Authority string // :authority of the callouts
	Token     string // bearer token; empty only with InsecureNoAuth
	// TokenEnv names the environment variable of the Wasm VM holding the
	// token; ResolveEnv reads it into Token. "" when the token is inline.
	TokenEnv       string
	InsecureNoAuth bool          // send no token (a local demo, never production)
	Timeout        time.Duration // of one callout
}

// Route is the idempotency policy of the requests one match selects.
type Route struct {
	// Name names the route for Envoy's route metadata to select it
	// (envoyroute.go); "" when unnamed.
	Name         string
	Match        RouteMatch
	KeyHeader    string // lower case, as Envoy presents header names
	KeyFormat    KeyFormat
	Required     bool // a request without the key gets 400; else it passes ungoverned
	MaxKeyLength int  // bytes, after sf-string unescaping
	Scope        Scope
	Fingerprint  canon.Selection // header names in lower case
	MaxBodyBytes int             // request bodies buffered; 413 beyond
	// MaxStoredResponseBytes caps a stored response, counted as the
	// control plane counts it: 3 (the status) + every stored header's
	// name and value + the body. Beyond it only the status is stored
	// (body_omitted) and the response is not buffered further.
	MaxStoredResponseBytes int
	// EdgeCacheTTL bounds how long a completed response is replayed from
	// this Envoy's edge cache without asking the control plane (also by
	// TTL); 0 keeps the route's responses out of the edge cache.
	EdgeCacheTTL time.Duration
	// EdgeCacheMaxEntryBytes: a larger entry (fingerprint, status,
	// headers, body and framing) is not cached at the edge.
	EdgeCacheMaxEntryBytes int
	TTL                    time.Duration // how long a completed response is kept
	Lease                  time.Duration // how long a reservation holds without an answer

	// StoreStatuses, ReleaseStatuses and IndeterminateStatuses partition
	// 200–599; see Classify.
	StoreStatuses         StatusSet
	ReleaseStatuses       StatusSet
	IndeterminateStatuses StatusSet
	// NotExecutedHeader (lower case) is the response header by which the
	// upstream says "nothing happened, a retry is safe": its presence
	// releases the key whatever the status. The filter removes it from
	// every response of the route, so that clients never see it.
	NotExecutedHeader string

	// AllowAnonymous lets requests without a principal (every scope value
	// absent or empty) through, sharing one scope; without it such a
	// request is refused with 401.
	AllowAnonymous bool
	// HostAliases maps a host (as CanonicalHost normalizes it) to the host
	// whose records it shares; nil when the route names none.
	HostAliases map[string]string

	OnDuplicate     OnDuplicate
	OnInProgress    OnInProgress
	WaitTimeout     time.Duration // with OnInProgress == Wait; ≤ Lease
	FailureMode     FailureMode
	OnIndeterminate OnIndeterminate
	// ReconcileTarget names the control plane's lookup target (its
	// --reconcile-url NAME) with OnIndeterminate == Reconcile; "" is the
	// control plane's "default". Always "" on other routes.
	ReconcileTarget string
	// AttemptHeader (lower case) is the request header that carries the
	// reservation's token to the upstream with OnIndeterminate ==
	// Reconcile, the client's own values removed; "" on other routes,
	// which add none.
	AttemptHeader string

	// ReplayHeaders are the response headers a replay returns, lower case:
	// DefaultReplayHeaders, the configured replay_headers, and set-cookie
	// when ReplaySetCookie.
	ReplayHeaders   []string
	ReplaySetCookie bool
	// ReplayedHeader (lower case) marks every replayed response, with the
	// value "true": DefaultReplayedHeader unless replay_header names
	// another.
	ReplayedHeader string
}

// RouteMatch selects requests. At most one of Path, Prefix and Glob is
// set; with none, RouteName selects (or, on a named route, only Envoy's
// route metadata does: see Select).
type RouteMatch struct {
	Host   string // lower case; "" any, "*.example.com" a suffix, else exact
	Path   string // exact path
	Prefix string // string prefix, as Envoy's prefix match
	Glob   string // see matchGlob
	// RouteName is the Envoy route name (xds.route_name) the route
	// applies to; "" for any. A route with one matches only requests
	// Envoy routed by that route.
	RouteName string
	Methods   []string
}

// Scope names what identifies the principal: a key is unique per scope, so
// two clients never share (or replay) each other's keys. Values are hashed
// before they leave the filter: with plain SHA-256, or with HMAC-SHA-256
// under HMACKey so that a low-entropy credential (a short API key) cannot
// be recovered from a Redis dump by guessing.
type Scope struct {
	Headers  []string       // request header names, lower case
	Metadata *MetadataScope // a value from Envoy's dynamic metadata
	// HMACKeyEnv names the environment variable (as Envoy's
	// vm_config.environment_variables gives it to the VM) that holds
	// HMACKey; ResolveEnv reads it. "" when the key is inline or unset.
	HMACKeyEnv string
	// HMACKey keys the scope hash; nil means plain SHA-256. At least
	// MinHMACKeyBytes, used as the bytes written (not decoded).
	HMACKey Secret
}

// Secret is key material; it formats as "<redacted>" so that logging a
// configuration does not leak it.
type Secret []byte

func (s Secret) String() string {
	if s == nil {
		return "<none>"
	}
	return "<redacted>"
}

// GoString keeps %#v from printing the bytes.
func (s Secret) GoString() string { return s.String() }

// MetadataScope is a value in a filter's dynamic metadata, e.g. the "sub"
// claim jwt_authn writes: Filter "envoy.filters.http.jwt_authn", Path
// ["payload", "sub"] (the first element is the metadata key jwt_authn's
// payload_in_metadata names).
type MetadataScope struct {
	Filter string
	Path   []string
}

// OnDuplicate: what a completed duplicate gets.
type OnDuplicate string

const (
	Replay OnDuplicate = "replay" // the stored response (default)
	Reject OnDuplicate = "reject" // 409: for APIs that refuse duplicates
)

// OnInProgress: what a duplicate gets while the original runs.
type OnInProgress string

const (
	Conflict OnInProgress = "conflict" // 409 + Retry-After (default)
	Wait     OnInProgress = "wait"     // held until the original completes, bounded by WaitTimeout
)

// FailureMode: what a governed request gets when the control plane cannot
// be reached or answers an error.
type FailureMode string

const (
	FailClosed FailureMode = "closed" // 503 + Retry-After (default)
	FailOpen   FailureMode = "open"   // forwarded ungoverned, counted and logged
)

// OnIndeterminate: what happens to the key when a forwarded request gets no
// response (upstream reset or timeout, or the client went away).
type OnIndeterminate string

const (
	// Lock keeps the key in progress until the lease ends (retries get
	// 409), then marks it indeterminate (the control plane's abandon) so
	// that an operator or the TTL resolves it. Default.
	Lock OnIndeterminate = "lock"
	// ReleaseKey frees the key: a retry executes again, although the
	// operation may have run. Opt in only for operations that are safe to
	// repeat or that the upstream deduplicates itself.
	ReleaseKey OnIndeterminate = "release"
	// Reconcile marks the key indeterminate as Lock does, and the control
	// plane then asks the upstream whether the attempt ran: executed, the
	// record is completed with the upstream's response; not executed, the
	// key is released. Every forwarded request carries its attempt id
	// (AttemptHeader) so that the upstream can answer for that attempt.
	Reconcile OnIndeterminate = "reconcile"
)

// Defaults and bounds.
const (
	MaxKeyLength        = api.MaxKeyLen // the control plane's bound
	DefaultKeyHeader    = "idempotency-key"
	DefaultTimeout      = 500 * time.Millisecond
	MaxTimeout          = 10 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	MaxMaxBodyBytes     = 64 << 20
	// DefaultMaxStoredResponseBytes is the control plane's default
	// --max-stored-response: a larger complete may be refused with 413.
	DefaultMaxStoredResponseBytes = api.DefaultMaxStoredBody
	MaxMaxStoredResponseBytes     = 64 << 20
	DefaultEdgeCacheTTL           = 5 * time.Minute
	MaxEdgeCacheTTL               = time.Hour
	DefaultEdgeCacheMaxEntryBytes = 64 << 10
	MaxEdgeCacheMaxEntryBytes     = 16 << 20
	DefaultEdgeCacheSlots         = 1024
	MaxEdgeCacheSlots             = 1 << 20
	DefaultMaxHeldBytes           = 16 << 20
	MinMaxHeldBytes               = 64 << 10
	MaxMaxHeldBytes               = 1 << 30
	DefaultTTL                    = api.DefaultTTL
	DefaultLease                  = api.DefaultLease
	MinLease                      = time.Second
	DefaultWaitTimeout            = 5 * time.Second
	// DefaultAttemptHeader carries the attempt id on reconcile routes
	// unless a route names another.
	DefaultAttemptHeader = "idemgate-attempt"
	// MaxReconcileTargetLen bounds reconcile_target, as the control
	// plane bounds its target names.
	MaxReconcileTargetLen = api.MaxReconcileTargetLen
	// MinHMACKeyBytes is the shortest scope HMAC key: SHA-256's output
	// size, so that the key is never the weaker secret.
	MinHMACKeyBytes = 32
)

// DefaultMethods are the methods a route governs when it names none: the
// non-idempotent ones. PUT and DELETE are idempotent by definition.
var DefaultMethods = []string{"POST", "PATCH"}

// Classify says what becomes of the key after an upstream response with
// this status (the not-executed header, which releases whatever the
// status, is the filter's to check). A status outside 200–599 (a 600 or
// above) is stored: never releasing on what the policy does not cover
// means never executing twice by accident.
func (r *Route) Classify(status int) Outcome {
	switch {
	case r.ReleaseStatuses.Has(status):
		return Release
	case r.IndeterminateStatuses.Has(status):
		return Indeterminate
	}
	return Store
}

// DefaultNotExecutedHeader is the response header by which an upstream
// marks a response as "not executed" unless a route names another.
const DefaultNotExecutedHeader = "idempotency-not-executed"

// String leaves the token out, so that logging a configuration does not
// leak it (fmt uses it for a ControlPlane nested in a Config too).
func (cp ControlPlane) String() string {
	token := ""
	if cp.Token != "" {
		token = "<redacted>"
	}
	return fmt.Sprintf("{Cluster:%s Authority:%s Token:%s TokenEnv:%s InsecureNoAuth:%t Timeout:%v}",
		cp.Cluster, cp.Authority, token, cp.TokenEnv, cp.InsecureNoAuth, cp.Timeout)
}
