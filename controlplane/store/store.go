package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Errors of the store. Match them with errors.Is.
var (
	// ErrStaleToken: Complete, Release or Abandon presented a token that
	// does not hold: the record is absent, held under another token (taken
	// over after the lease ran out), completed (but Complete of a record
	// completed under the same token succeeds: a retry), or abandoned.
	// Nothing changed.
	ErrStaleToken = errors.New("token does not hold the key")
	// ErrNotFound: no record for scope and key.
	ErrNotFound = errors.New("no record for this scope and key")
	// ErrNotInProgress: ForceRelease found a completed record and left it.
	// (An indeterminate record is released like an in-progress one.)
	ErrNotInProgress = errors.New("record is not in progress")
	// ErrLeaseLive: DeleteUnlessLeased or ReleaseUnlessLeased found the
	// record in progress with its lease still running: the original
	// request may still be executing, and freeing the key would let its
	// retry run a second time. Nothing changed; the record is returned
	// beside it (LeaseExpiresAt says when the lease ends).
	ErrLeaseLive = errors.New("the record's lease still runs")
	// ErrInvalidRequest: the request failed validation (bad scope, key,
	// fingerprint, lease, TTL, token or status); the detail is wrapped in.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrInvalidOptions: Options failed validation; see Options.Validate.
	ErrInvalidOptions = errors.New("invalid store options")
	// ErrUnreadableResponse: a completed record's stored response cannot
	// be decoded (corrupt headers). Reserve still answers Completed, with
	// the status and BodyOmitted, and returns this error beside it so the
	// caller can log and count it: the operation ran, and a caller that
	// treated it as an outage might run it again. Get with body returns
	// it alone.
	ErrUnreadableResponse = errors.New("stored response cannot be read")
	// ErrFenced: Reserve met the fence its holder wrote by releasing by
	// holder id before this reserve arrived. The reserve changed nothing;
	// it is answered InProgress (LeaseRemainingMS: how long the fence
	// still stands) beside this error, so that the caller, which already
	// gave the attempt up, forwards nothing and has nothing to release.
	ErrFenced = errors.New("holder released before its reserve arrived")
	// ErrLeaseEnded: Reserve found an in-progress record whose lease had
	// ended without word from its holder, on a route that locks, and made
	// it indeterminate: a key just burned. It is returned beside the
	// Indeterminate answer (which stands) so that the caller can log and
	// count the transition; later reserves answer Indeterminate alone.
	ErrLeaseEnded = errors.New("the holder's lease ended without word: the key is now indeterminate")
	// ErrUnavailable wraps every failure to get an answer from Redis
	// (network, timeout, cluster down, context ended, unexpected reply).
	ErrUnavailable = errors.New("redis unavailable")
)

// DefaultFenceTTL is the least a release by holder id fences that holder
// out when it does not hold the record: a whole default reservation
// (lease + TTL). A reserve normally arrives within seconds of its release
// (the filter's control-plane timeout, the service's op timeout, a Redis
// retry), but one that arrived after the fence would acquire with nobody
// to answer it, leaving the key indeterminate for its TTL; a fence that
// outlives any reservation it could create costs nothing comparable (one
// tiny key per client that left during its reserve, a holder id being
// used for one attempt only).
const DefaultFenceTTL = api.DefaultTTL + api.DefaultLease

// DefaultReconcileDelay is Options.ReconcileDelay when zero.
const DefaultReconcileDelay = time.Second

// DefaultPrefix starts every Redis key of the store.
const DefaultPrefix = "idemgate"

// Options configures a Store. Zero values take the defaults.
type Options struct {
	// Prefix of every Redis key; default DefaultPrefix. It must not contain
	// '{' or '}' (they would move the Cluster hash tag) nor control
	// characters, and is at most 64 bytes.
	Prefix string
	// MaxStoredResponse caps the bytes of a stored response, counted by
	// api.StoredSize; over it only the status is stored, with BodyOmitted.
	// Default api.DefaultMaxStoredBody.
	MaxStoredResponse int
	// DefaultLease and DefaultTTL replace a zero LeaseMS / TTLMS of a
	// reserve; a zero LeaseMS gets min(DefaultLease, the reserve's TTL).
	// Defaults api.DefaultLease and api.DefaultTTL.
	DefaultLease time.Duration
	DefaultTTL   time.Duration
	// FingerprintKey, when set, keys the hash Redis keeps of each
	// fingerprint (HMAC-SHA-256); unset, a plain SHA-256. See
	// fingerprint.go. PreviousFingerprintKeys are still accepted (key
	// rotation): a record stored under one is rewritten under the current
	// key on its next reserve.
	FingerprintKey          []byte
	PreviousFingerprintKeys [][]byte
	// FenceTTL is how long a fence written by a release by holder stands;
	// default the longer of DefaultFenceTTL and DefaultLease + DefaultTTL.
	FenceTTL time.Duration
	// MaxRetries is how often the store sends an operation again after an
	// error a failover or restart causes (see exec): 0 means
	// DefaultMaxRetries, a negative value never. The retries back off
	// (10 ms doubling, at most 200 ms) and stay within the caller's
	// context deadline.
	MaxRetries int
	// Durable makes every state-changing operation wait for replicas (and
	// with Fsync, the AOF) before it answers; zero value: off.
	Durable Durability
	// ReconcileDelay is how long after its holder abandoned it a record
	// on a route that reconciles is first looked up (its attempt may
	// still be on its way to the upstream); default DefaultReconcileDelay.
	ReconcileDelay time.Duration
	// Observer receives retries, WAIT shortfalls and durations, and the
	// failovers the topology watcher sees.
	Observer Observer
}

// Validate reports whether the options are usable; the service should call
// it at start. New does not fail: a Store built from invalid options
// returns the validation error (matching ErrInvalidOptions) from every
// operation.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if len(o.Prefix) > 64 {
		return o, fmt.Errorf("%w: prefix is %d bytes, more than 64", ErrInvalidOptions, len(o.Prefix))
	}
	for _, r := range o.Prefix {
		if r == '{' || r == '}' || r < 0x20 || r == 0x7f {
			return o, fmt.Errorf("%w: prefix %q contains '{', '}' or a control character", ErrInvalidOptions, o.Prefix)
		}
	}
	switch {
	case o.MaxStoredResponse == 0:
		o.MaxStoredResponse = api.DefaultMaxStoredBody
	case o.MaxStoredResponse < 0:
		return o, fmt.Errorf("%w: MaxStoredResponse %d is negative", ErrInvalidOptions, o.MaxStoredResponse)
	}
	switch {
	case o.ReconcileDelay == 0:
		o.ReconcileDelay = DefaultReconcileDelay
	case o.ReconcileDelay < time.Millisecond || o.ReconcileDelay > api.MaxTTL:
		return o, fmt.Errorf("%w: reconcile delay %v must be from 1ms to %v", ErrInvalidOptions, o.ReconcileDelay, api.MaxTTL)
	}
	if o.DefaultLease == 0 {
		o.DefaultLease = api.DefaultLease
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = api.DefaultTTL
	}
	if o.FenceTTL == 0 {
		o.FenceTTL = max(DefaultFenceTTL, o.DefaultLease+o.DefaultTTL)
	}
	// Up to a whole longest reservation (lease + TTL, each up to api.MaxTTL).
	if o.FenceTTL < time.Millisecond || o.FenceTTL > 2*api.MaxTTL {
		return o, fmt.Errorf("%w: fence TTL %v must be from 1ms to %v", ErrInvalidOptions, o.FenceTTL, 2*api.MaxTTL)
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = DefaultMaxRetries
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.Durable.Replicas < 0 || o.Durable.Timeout < 0 {
		return o, fmt.Errorf("%w: durable replicas %d and timeout %v must not be negative", ErrInvalidOptions, o.Durable.Replicas, o.Durable.Timeout)
	}
	if o.Durable.Timeout == 0 {
		o.Durable.Timeout = DefaultDurableTimeout
	}
	if o.Durable.On() && o.Durable.Timeout < time.Millisecond {
		// WAIT takes whole milliseconds, and 0 would mean forever.
		return o, fmt.Errorf("%w: durable timeout %v is under 1ms", ErrInvalidOptions, o.Durable.Timeout)
	}
	if o.FingerprintKey != nil && len(o.FingerprintKey) < 16 {
		return o, fmt.Errorf("%w: the fingerprint key is %d bytes; want at least 16", ErrInvalidOptions, len(o.FingerprintKey))
	}
	for _, k := range o.PreviousFingerprintKeys {
		if len(k) < 16 {
			return o, fmt.Errorf("%w: a previous fingerprint key is %d bytes; want at least 16", ErrInvalidOptions, len(k))
		}
	}
	if o.DefaultLease < time.Millisecond || o.DefaultTTL < time.Millisecond {
		return o, fmt.Errorf("%w: default lease %v and TTL %v must be at least 1ms", ErrInvalidOptions, o.DefaultLease, o.DefaultTTL)
	}
	if o.DefaultTTL > api.MaxTTL {
		return o, fmt.Errorf("%w: default TTL %v is longer than %v", ErrInvalidOptions, o.DefaultTTL, api.MaxTTL)
	}
	if o.DefaultTTL < o.DefaultLease {
		return o, fmt.Errorf("%w: default TTL %v is shorter than the default lease %v", ErrInvalidOptions, o.DefaultTTL, o.DefaultLease)
	}
	return o, nil
}

// Store keeps idempotency records in Redis. It is safe for concurrent use.
type Store struct {
	c      redis.UniversalClient
	opt    Options
	optErr error
	// topology replaces Topology in WatchTopology (tests).
	topology func(context.Context) (string, error)
}

// New returns a Store on c. See Options.Validate for invalid options.
func New(c redis.UniversalClient, opt Options) *Store {
	o, err := opt.withDefaults()
	return &Store{c: c, opt: o, optErr: err}
}

// RecordKey is the Redis key of the record for scope and key:
//
//	<prefix>:{<base64url(scope)>.<base64url(key)>}
//
// The braces make the whole encoded pair the Cluster hash tag, so all of a
// record's data lives in one slot and different records spread over slots.
// Scope and key may contain '{' and '}'; base64url (unpadded) has neither,
// nor '.', so the tag is unambiguous and reversible, and every key of one
// scope shares the prefix "<prefix>:{<base64url(scope)>." (a SCAN pattern).
func (s *Store) RecordKey(scope, key string) string {
	enc := base64.RawURLEncoding
	var b strings.Builder
	b.Grow(len(s.opt.Prefix) + 4 + enc.EncodedLen(len(scope)) + enc.EncodedLen(len(key)))
	b.WriteString(s.opt.Prefix)
	b.WriteString(":{")
	b.WriteString(enc.EncodeToString([]byte(scope)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString([]byte(key)))
	b.WriteByte('}')
	return b.String()
}

// fenceKey is the key of holder's fence on the record of scope and key: the
// record's key (so the same hash tag, the same Cluster slot) + "f." +
// holder. It does not end in '}', which tells it from records in a SCAN.
func (s *Store) fenceKey(scope, key, holder string) string {
	return s.RecordKey(scope, key) + "f." + holder
}

// newNonce returns 128 random bits (base32, 26 characters). crypto/rand
// never fails on supported platforms (Go 1.24+ crashes instead).
func newNonce() string { return rand.Text() }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

func validateScopeKey(scope, key string) error {
	if err := api.ValidateName("scope", scope); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err := api.ValidateName("key", key); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

func validateToken(tok string) error {
	if err := api.ValidateToken(tok); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

func unavailable(op string, err error) error {
	if errors.Is(err, ErrNotDurable) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
}

func unexpected(op string, reply any) error {
	return fmt.Errorf("store: %s: %w: unexpected reply %T %v", op, ErrUnavailable, reply, reply)
}

// Reserve asks for scope+key on behalf of a request with fingerprint
// req.Fingerprint. See the package comment for the state machine.
//
// A completed record whose stored response cannot be decoded is answered
// Completed with its status and BodyOmitted, together with an error
// matching ErrUnreadableResponse: the caller should answer the response
// and report the error.
func (s *Store) Reserve(ctx context.Context, req api.ReserveRequest) (api.ReserveResponse, error) {
	var none api.ReserveResponse
	if s.optErr != nil {
		return none, s.optErr
	}
	if err := validateScopeKey(req.Scope, req.Key); err != nil {
		return none, err
	}
	if err := api.ValidateFingerprint(req.Fingerprint); err != nil {
		return none, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	lease, ttl := req.LeaseMS, req.TTLMS
	if lease < 0 {
		return none, invalid("lease_ms %d is negative", lease)
	}
	if ttl < 0 {
		return none, invalid("ttl_ms %d is negative", ttl)
	}
	if ttl == 0 {
		ttl = s.opt.DefaultTTL.Milliseconds()
	}
	if ttl > api.MaxTTL.Milliseconds() {
		return none, invalid("ttl %dms is longer than %dms", ttl, api.MaxTTL.Milliseconds())
	}
	if lease == 0 {
		// The default lease, but never past the record's TTL: a caller
		// that asks only for a short TTL means the record to be short.
		lease = min(s.opt.DefaultLease.Milliseconds(), ttl)
	}
	if ttl < lease {
		return none, invalid("ttl %dms is shorter than the lease %dms", ttl, lease)
	}
	if err := api.ValidateOnIndeterminate(req.OnIndeterminate); err != nil {
		return none, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err := api.ValidateReconcileTarget(req.OnIndeterminate, req.ReconcileTarget); err != nil {
		return none, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	oi, target := api.LeaseLock, ""
	switch req.OnIndeterminate {
	case api.LeaseRelease:
		oi = api.LeaseRelease
	case api.LeaseReconcile:
		oi, target = api.LeaseReconcile, req.ReconcileTarget
		if target == "" {
			target = api.DefaultReconcileTarget
		}
	}
	holder := req.Holder
	if holder == "" {
		// 26 characters of base32: a valid holder id nobody else knows.
		holder = newNonce()
	} else if err := api.ValidateHolder(holder); err != nil {
		return none, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}

	fp, others := s.fingerprintForms(req.Fingerprint)
	args := make([]any, 0, 7+len(others))
	args = append(args, fp, lease, ttl, holder, oi, req.Fingerprint, target)
	for _, o := range others {
		args = append(args, o)
	}
	rk := s.RecordKey(req.Scope, req.Key)
	cmd := s.run(ctx, call{op: "reserve", script: reserveScript, write: true,
		keys: []string{rk, s.fenceKey(req.Scope, req.Key, holder), s.reconcileIndexKey(rk)}, args: args})
	v, err := cmd.Slice()
	if sv, ok := cmd.Val().([]any); ok && len(sv) > 0 && sv[0] != string(api.Acquired) && errors.As(err, new(*shortfall)) {
		// Durable mode: only an acquisition needs its replicas. Every
		// other answer forwards nothing, and acting on it stays right
		// should a failover lose what the master read (a completion is
		// stored only after the operation ran); answered 503, a
		// fail-open route would forward the duplicate.
		v, err = sv, nil
	}
	if err != nil {
		return none, unavailable("reserve", err)
	}
	if len(v) == 0 {
		return none, unexpected("reserve", v)
	}
	outcome, _ := v[0].(string)
	switch {
	case outcome == string(api.Acquired) && len(v) == 2:
		tok, ok := v[1].(string)
		if !ok {
			break
		}
		return api.ReserveResponse{Outcome: api.Acquired, Token: tok}, nil
	case outcome == string(api.InProgress) && len(v) == 2:
		ms, ok := v[1].(int64)
		if !ok {
			break
		}
		return api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: ms}, nil
	case outcome == string(api.Indeterminate) && len(v) == 4:
		ms, ok1 := v[1].(int64)
		ended, ok2 := v[2].(string)
		rin, ok3 := v[3].(int64)
		if !ok1 || !ok2 || !ok3 {
			break
		}
		res := api.ReserveResponse{Outcome: api.Indeterminate, ExpiresInMS: ms, ReconcileInMS: rin}
		if ended == "lease_ended" {
			return res, ErrLeaseEnded
		}
		return res, nil
	case outcome == "fenced" && len(v) == 2:
		ms, ok := v[1].(int64)
		if !ok {
			break
		}
		return api.ReserveResponse{Outcome: api.InProgress, LeaseRemainingMS: ms}, ErrFenced
	case outcome == string(api.Mismatch):
		return api.ReserveResponse{Outcome: api.Mismatch}, nil
	case outcome == string(api.Completed) && len(v) == 6:
		status, ok1 := v[1].(int64)
		hdr, ok2 := v[2].(string)
		body, ok3 := v[3].(string)
		omit, ok4 := v[4].(string)
		pttl, ok5 := v[5].(int64)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			break
		}
		resp, err := decodeResponse(status, hdr, body, omit == "1")
		if err != nil {
			// The operation ran: answer completed with what is stored in
			// the clear, and report the corruption beside it.
			return api.ReserveResponse{Outcome: api.Completed, ExpiresInMS: pttl,
					Response: &api.StoredResponse{Status: int(status), BodyOmitted: true}},
				fmt.Errorf("store: reserve: %w", err)
		}
		return api.ReserveResponse{Outcome: api.Completed, ExpiresInMS: pttl, Response: resp}, nil
	}
	return none, unexpected("reserve", v)
}

// Complete stores resp for the holder of req.Token. When the record is
// already completed under that token (a retried call) it succeeds and
// changes nothing. ErrStaleToken when the token does not hold; nothing
// changed then. A response over the cap is
// stored as its status only, with BodyOmitted.
func (s *Store) Complete(ctx context.Context, req api.CompleteRequest) error {
	if err := s.checkHeld(req.Scope, req.Key, req.Token); err != nil {
		return err
	}
	r := req.Response
	hdr, body, omitArg, err := s.encodeResponse("complete", r)
	if err != nil {
		return err
	}
	return s.runHeld(ctx, "complete", completeScript, req.Scope, req.Key, req.Token, newNonce(), r.Status, hdr, body, omitArg)
}

// checkHeld checks what Complete, Release and Abandon are given: usable
// options, the scope and key, the token.
func (s *Store) checkHeld(scope, key, tok string) error {
	if s.optErr != nil {
		return s.optErr
	}
	if err := validateScopeKey(scope, key); err != nil {
		return err
	}
	return validateToken(tok)
}

// runHeld runs one of the token scripts (complete, release, abandon) on
// the record of scope+key and its reconcile index, with ARGV = tok, args:
// each replies 1 when tok holds the record (and the change was made, or
// had been by a retried call), else 0, and then nothing changed:
// ErrStaleToken. Without the index (a migrating slot) the record is
// changed all the same; an oi=reconcile record then stays filed at its
// lease end: looked up later, but looked up.
func (s *Store) runHeld(ctx context.Context, op string, script *redis.Script, scope, key, tok string, args ...any) error {
	rk := s.RecordKey(scope, key)
	n, err := s.run(ctx, call{op: op, script: script, write: true, optional: 1,
		keys: []string{rk, s.reconcileIndexKey(rk)}, args: append([]any{tok}, args...)}).Int64()
	if err != nil {
		return unavailable(op, err)
	}
	if n != 1 {
		return ErrStaleToken
	}
	return nil
}

// encodeResponse validates r and encodes it for the record: the headers as
// JSON, the body, and "1" when over the cap (Options.MaxStoredResponse, or
// r.BodyOmitted): then only the status is stored.
func (s *Store) encodeResponse(op string, r api.StoredResponse) (hdr string, body []byte, omit string, err error) {
	if err := api.ValidateStatus(r.Status); err != nil {
		return "", nil, "", fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err := api.ValidateHeaders(r.Headers); err != nil {
		return "", nil, "", invalid("%v", err)
	}
	if r.BodyOmitted || api.StoredSize(r.Headers, len(r.Body)) > s.opt.MaxStoredResponse {
		return "", nil, "1", nil
	}
	if len(r.Headers) > 0 {
		b, err := json.Marshal(r.Headers)
		if err != nil {
			return "", nil, "", fmt.Errorf("store: %s: encode headers: %w", op, err)
		}
		hdr = string(b)
	}
	return hdr, r.Body, "", nil
}

// Release frees the reservation held by req.Token (in progress, or
// indeterminate because its lease ended): the record is gone and the next
// reserve acquires. ErrStaleToken when the token does not hold; nothing
// changed then. A request that names req.Holder instead goes to
// ReleaseHolder.
func (s *Store) Release(ctx context.Context, req api.ReleaseRequest) error {
	if req.Holder != "" {
		return invalid("release by holder goes through ReleaseHolder")
	}
	if err := s.checkHeld(req.Scope, req.Key, req.Token); err != nil {
		return err
	}
	return s.runHeld(ctx, "release", releaseScript, req.Scope, req.Key, req.Token)
}

// ReleaseHolder frees whatever the holder id holds on scope+key and keeps
// it from ever acquiring there: it writes (or restarts) the holder's fence
// for Options.FenceTTL, so that a reserve of this holder still on its way
// answers InProgress with ErrFenced instead of acquiring; then it deletes
// the record if this holder holds it (in progress, or indeterminate
// because its lease ended). A record held by another holder, completed,
// or abandoned by this holder (the request went out) is left alone.
// deleted says whether the record was deleted.
func (s *Store) ReleaseHolder(ctx context.Context, scope, key, holder string) (deleted bool, err error) {
	if s.optErr != nil {
		return false, s.optErr
	}
	if err := validateScopeKey(scope, key); err != nil {
		return false, err
	}
	if err := api.ValidateHolder(holder); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	rk := s.RecordKey(scope, key)
	n, err := s.run(ctx, call{op: "release_holder", script: releaseHolderScript, write: true, optional: 1,
		keys: []string{rk, s.fenceKey(scope, key, holder), s.reconcileIndexKey(rk)},
		args: []any{holder, s.opt.FenceTTL.Milliseconds()}}).Int64()
	if err != nil {
		return false, unavailable("release by holder", err)
	}
	return n == 1, nil
}

// Abandon marks the reservation held by req.Token (in progress, or
// indeterminate) abandoned: the request was forwarded and no response came
// back, so the operation may have run. The record keeps its fingerprint
// and expiry and loses its lease; a reserve with the same fingerprint
// answers Indeterminate with the record's remaining TTL (never a
// takeover), another fingerprint Mismatch; the token no longer completes
// or releases it. Abandoning again succeeds and changes nothing (a retried
// abandon is acknowledged). ForceRelease or Delete frees it, else the TTL.
// ErrStaleToken when the token does not hold; nothing changed then.
func (s *Store) Abandon(ctx context.Context, req api.AbandonRequest) error {
	if err := s.checkHeld(req.Scope, req.Key, req.Token); err != nil {
		return err
	}
	return s.runHeld(ctx, "abandon", abandonScript, req.Scope, req.Key, req.Token, newNonce(), s.opt.ReconcileDelay.Milliseconds())
}

// Get returns the record of scope+key; its Response (headers and body) only
// when withBody. ErrNotFound when absent.
func (s *Store) Get(ctx context.Context, scope, key string, withBody bool) (*api.Record, error) {
	arg := "0"
	if withBody {
		arg = "1"
	}
	v, err := s.runRecord(ctx, "get", getScript, false, scope, key, arg)
	if err != nil {
		return nil, err
	}
	return decodeRecord("get", scope, key, v, withBody)
}

// Delete removes the record of scope+key whatever its state and returns it
// as it was (without body). ErrNotFound when absent.
func (s *Store) Delete(ctx context.Context, scope, key string) (*api.Record, error) {
	return s.adminChange(ctx, "delete", deleteScript, scope, key, false)
}

// DeleteUnlessLeased is Delete, except that a record in progress whose
// lease still runs is left alone and returned with ErrLeaseLive.
func (s *Store) DeleteUnlessLeased(ctx context.Context, scope, key string) (*api.Record, error) {
	return s.adminChange(ctx, "delete", deleteScript, scope, key, true)
}

// runRecord runs one of the admin scripts that answer with a record (nil
// when there is none) on the record of scope+key.
func (s *Store) runRecord(ctx context.Context, op string, script *redis.Script, write bool, scope, key string, args ...any) ([]any, error) {
	if s.optErr != nil {
		return nil, s.optErr
	}
	if err := validateScopeKey(scope, key); err != nil {
		return nil, err
	}
	rk := s.RecordKey(scope, key)
	v, err := s.run(ctx, call{op: strings.ReplaceAll(op, " ", "_"), script: script, write: write, optional: 1,
		keys: []string{rk, s.reconcileIndexKey(rk)}, args: args}).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	return v, nil
}

// ForceRelease frees an in-progress or indeterminate record whatever its
// token (the holder's token becomes stale) and returns it as it was.
// ErrNotFound when absent; ErrNotInProgress when completed, nothing changed
// then, and the record is returned along with the error so the caller can
// show it.
func (s *Store) ForceRelease(ctx context.Context, scope, key string) (*api.Record, error) {
	return s.adminChange(ctx, "force release", forceReleaseScript, scope, key, false)
}

// ReleaseUnlessLeased is ForceRelease, except that a record in progress
// whose lease still runs is left alone and returned with ErrLeaseLive.
func (s *Store) ReleaseUnlessLeased(ctx context.Context, scope, key string) (*api.Record, error) {
	return s.adminChange(ctx, "force release", forceReleaseScript, scope, key, true)
}

// adminChange runs deleteScript or forceReleaseScript (guarded: refusing a
// live lease) and decodes {changed, record...}.
func (s *Store) adminChange(ctx context.Context, op string, script *redis.Script, scope, key string, guarded bool) (*api.Record, error) {
	guard := "0"
	if guarded {
		guard = "1"
	}
	v, err := s.runRecord(ctx, op, script, true, scope, key, guard)
	if err != nil {
		return nil, err
	}
	if len(v) < 1 {
		return nil, unexpected(op, v)
	}
	changed, ok := v[0].(int64)
	if !ok {
		return nil, unexpected(op, v)
	}
	rec, err := decodeRecord(op, scope, key, v[1:], false)
	if err != nil {
		return nil, err
	}
	switch changed {
	case 1:
		return rec, nil
	case 0:
		return rec, ErrNotInProgress
	case 2:
		return rec, ErrLeaseLive
	}
	return nil, unexpected(op, v)
}

// Ping checks that Redis answers (every node's connection is not checked
// on a Cluster: one node answering is enough for readiness).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// decodeRecord turns the admin scripts' reply {st, fp, cr, exp, lease, code,
// omit, hdr, body, oi, now, rt, ra, rl, next lookup, tok} into a Record.
func decodeRecord(op, scope, key string, v []any, withBody bool) (*api.Record, error) {
	if len(v) != recordFields {
		return nil, unexpected(op, v)
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	ms := func(i int) (time.Time, bool) {
		n, err := strconv.ParseInt(str(i), 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		return time.UnixMilli(n).UTC(), true
	}
	rec := &api.Record{Scope: scope, Key: key, Fingerprint: str(1), OnIndeterminate: str(9),
		ReconcileTarget: str(11), ReconcileLast: str(13)}
	if n, err := strconv.Atoi(str(12)); err == nil {
		rec.ReconcileAttempts = n
	}
	if next, ok := ms(14); ok {
		rec.ReconcileNextAt = &next
	}
	var ok1, ok2 bool
	rec.CreatedAt, ok1 = ms(2)
	rec.ExpiresAt, ok2 = ms(3)
	if !ok1 || !ok2 {
		return nil, unexpected(op, v)
	}
	switch str(0) {
	case "p":
		rec.State = api.StateInProgress
		if le, ok := ms(4); ok {
			rec.LeaseExpiresAt = &le
			// A lease that ended on a record that locks makes it
			// indeterminate; the next reserve writes that down, but the
			// operator sees it now.
			if now, ok := ms(10); ok && !le.After(now) && str(9) != api.LeaseRelease {
				rec.State = api.StateIndeterminate
			}
		}
	case "i":
		rec.State = api.StateIndeterminate
	case "c":
		rec.State = api.StateCompleted
		status, err := strconv.ParseInt(str(5), 10, 64)
		if err != nil {
			return nil, unexpected(op, v)
		}
		rec.Status = int(status)
		rec.BodyOmitted = str(6) == "1"
		if withBody {
			resp, err := decodeResponse(status, str(7), str(8), rec.BodyOmitted)
			if err != nil {
				return nil, fmt.Errorf("store: %s: %w", op, err)
			}
			rec.Response = resp
		}
	default:
		return nil, unexpected(op, v)
	}
	return rec, nil
}

// recordFields is the length of the admin scripts' record reply.
const recordFields = 16

func decodeResponse(status int64, hdr, body string, omitted bool) (*api.StoredResponse, error) {
	resp := &api.StoredResponse{Status: int(status), BodyOmitted: omitted}
	if hdr != "" {
		if err := json.Unmarshal([]byte(hdr), &resp.Headers); err != nil {
			return nil, fmt.Errorf("%w: stored headers are not valid JSON: %w", ErrUnreadableResponse, err)
		}
	}
	if body != "" {
		resp.Body = []byte(body)
	}
	return resp, nil
}
