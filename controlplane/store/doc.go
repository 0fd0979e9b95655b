// Package store keeps the control plane's idempotency records in Redis
// (standalone, Sentinel or Cluster) through go-redis's UniversalClient.
//
// # State machine
//
// One record per scope+key, as in DESIGN.md, "Record state machine":
//
//	state                              reserve, same fingerprint          other fingerprint
//	absent                             → in_progress, new token: acquired same
//	in_progress, lease live            in_progress (+ remaining lease);   mismatch
//	                                   its own holder: acquired, same token
//	in_progress, lease over, lock      → indeterminate: indeterminate     mismatch
//	  (or reconcile)
//	in_progress, lease over, release   taken over, new token: acquired    mismatch
//	indeterminate                      indeterminate (+ remaining TTL)    mismatch
//	completed                          completed (+ stored response)      mismatch
//	the holder's fence (see below)     in_progress (+ ErrFenced)          same
//
// The reserve that finds a lease ended on a route that locks writes the
// record indeterminate and answers Indeterminate together with
// ErrLeaseEnded, so that the caller can log and count a key that just
// burned; later reserves answer Indeterminate alone.
//
// "lock" is the default: the reserve that acquired the record says what
// the record becomes when its lease ends (api.ReserveRequest
// .OnIndeterminate), and a takeover records the taker's choice.
// "reconcile" behaves as lock and, besides, asks the upstream (see
// Reconcile below).
//
// Complete(token) turns an in-progress record into a completed one, and
// so it does a record that went indeterminate because its lease ended: the
// holder's late answer still lands. Release(token) deletes such a record
// (absent again). Abandon(token) marks it indeterminate for good: the
// request was forwarded but no response came back, so the operation may
// have run; the token then neither completes nor releases it, and
// abandoning again is acknowledged. An indeterminate record has no lease
// and is never taken over: it stays until its TTL ends or an operator
// frees it (ForceRelease, Delete). All three return ErrStaleToken and
// change nothing when the token does not hold (another holder, completed,
// absent), except a Complete of a record already completed under the same
// token: that is a retry of the one attempt's one response, answered
// success without any change.
//
// # Reconcile
//
// A record reserved with on_indeterminate reconcile keeps its lookup
// target and is filed in the reconcile index, a sorted set of record keys
// scored by when their next lookup is due (Redis TIME, ms): at the lease
// end when acquired (a holder re-run that restarts the lease moves it, a
// takeover files or unfiles by the taker's choice), at the latest
// Options.ReconcileDelay (default 1s) after an abandon (the attempt may
// still be on its way upstream). Complete, release, release by holder and
// the admin delete and release drop the entry with the record. A reserve
// that finds such a record indeterminate answers ReconcileInMS beside
// Indeterminate (and files an entry a failover lost, due now).
//
// ClaimDue hands the due records to the reconciler, each for a claim
// (its entry moves to the claim's end, so that control planes share the
// work and never ask about one record twice at once); it writes down a
// lease that ended (indeterminate, as a reserve would), files a live lease
// at its end, and drops the entries of records gone, completed or not
// reconciling. The answer is then applied under the attempt's token:
// ApplyExecuted completes the record with the upstream's response (the
// cap of Complete holds), ApplyNotExecuted deletes it, Postpone files it
// for the next lookup and counts the attempt. Each acts only while the
// record is still indeterminate (or its lease ended) under that token on
// a route that reconciles: a record its holder completed or released
// meanwhile, or one reserved again under another token, is left alone
// (applied=false, or ErrStaleToken from Postpone). LoadForReconcile reads
// one record for an operator's lookup.
//
// The index must live in the record's Cluster slot for the scripts to
// touch one slot: standalone and Sentinel use one key, "<prefix>:rx"; a
// Cluster one per slot, "<prefix>:rx:{<tag>}", where the tag is a short
// string of that slot (a table of 16384, computed once), and ClaimDue
// reads every slot's index on every master, pipelined per master. While a
// slot migrates, Redis answers TRYAGAIN to a script whose keys are not all
// on one side, and the index of a slot that files nothing exists nowhere:
// complete, release, release by holder, abandon, the applies and the admin
// scripts are then retried without the index (exec, call.optional), so
// that they follow ASK as a one-key script does. What they would have
// tidied the claim tidies; an abandon so retried leaves the record filed
// at its lease end (looked up later, still looked up).
//
// # Holders and fences
//
// A token is "<generation>.<holder>". The holder is the id the reserve
// carried (api.ReserveRequest.Holder), else a nonce the store makes.
// ReleaseHolder(holder) serves a caller that never saw its reserve's
// answer: it deletes the record if that holder holds it (as Release would)
// and in every case writes a fence, a key beside the record
// ("<record key>f.<holder>", same Cluster slot) that lives FenceTTL
// (default a whole reservation: DefaultLease + DefaultTTL, at least
// DefaultFenceTTL, 24h30s), so that a reserve arriving late never
// acquires a key nobody will answer. A reserve carrying a fenced holder
// changes nothing and is answered InProgress with ErrFenced; a reserve of
// any other holder does not see the fence.
//
// # Fingerprints at rest
//
// The record keeps a keyed hash of the fingerprint, not the fingerprint:
// see fingerprint.go for the forms, key rotation, and records written
// before hashing.
//
// # Expiry
//
// Every record expires (PEXPIRE), whatever its state. Reserve gives it
// lease + TTL from the reservation on a route that locks (so that a
// reservation whose lease ends unanswered stays indeterminate a full TTL,
// even when the lease equals the TTL), the TTL on a route that releases (a
// takeover restarts it the same way), and keeps the TTL in the record; a
// successful Complete restarts it at the TTL from the moment the response
// is stored, so a definite response is replayed for a full TTL however
// late in the reservation it came. The reservation's expiry is therefore
// the bound on an unanswered request, and the completed record lives TTL
// after its response.
//
// # One round trip, one clock
//
// Each operation is one Lua script run with EVALSHA, falling back to EVAL
// when Redis answers NOSCRIPT (after a restart or failover, or on a new
// Cluster node). Scripts read the time with redis.call('TIME'): leases and
// expiry are judged by Redis's clock, the one clock all instances share.
//
// # Keys
//
// A record is a single hash at
//
//	<prefix>:{<base64url(scope)>.<base64url(key)>}
//
// (see Store.RecordKey). The braces hold the Cluster hash tag. Encoding
// scope and key keeps '{' and '}' in them from moving the tag, keeps the
// key reversible for operators, and gives every key of a scope a common
// prefix.
//
// # Fencing tokens
//
// A token is "<generation>.<holder>": the generation is 1 when the record
// is created and grows by one at every takeover, so the newer holder's
// token always differs from the older one's; the holder id carries at
// least 128 random bits (the caller's, or crypto/rand's made in Go and
// passed to the script), so a token is not reused, not even by a record
// that expired and was created again (whose generation starts at 1 again).
//
// # Stored responses and the cap
//
// A completed record keeps the fingerprint, creation and expiry times, the
// status, the headers (JSON) and the raw body. If 3 (the status) plus the
// lengths of all header names and values plus the body exceed
// Options.MaxStoredResponse (default api.DefaultMaxStoredBody, 1 MiB), only
// the status is stored and the record is marked BodyOmitted: a replay gets
// Status and BodyOmitted=true and no headers or body, and the filter
// decides what to answer.
//
// # Retries
//
// Every script goes through one execution path (exec.go): a failover or
// restart error (READONLY, LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, a
// refused, reset or closed connection, a timeout) is retried up to
// Options.MaxRetries times (DefaultMaxRetries) with a short backoff within
// the caller's deadline; go-redis's own retries are off so that each retry
// is counted (Observer.Retry). On a Cluster the store sends each script to
// the master of the record's slot itself and follows MOVED and ASK. A
// retry may re-run a script whose reply was lost, which is safe because
// re-running a script with the same arguments (the store keeps every
// argument, nonces included, for all attempts of one call) changes nothing
// more than the first run:
//
//   - Reserve passes the holder id (a fresh nonce when the caller gave
//     none); a re-run that finds the record held under a token with that
//     holder answers acquired with that token (its lease started again
//     should it have ended meanwhile: the holder, which never saw an
//     answer, forwarded nothing). A re-run after the first
//     run found a lease ended and wrote the record indeterminate answers
//     Indeterminate without ErrLeaseEnded (the state is the same).
//   - Complete: a re-run, or another Complete with the same token (the
//     caller's retry after a lost answer, with a fresh call nonce), finds
//     the record completed by this token and answers success; the first
//     response and expiry stay.
//   - Abandon: a re-run (or any later abandon with the token) finds the
//     record abandoned under this token and answers success.
//   - ReleaseHolder sets the fence again and finds nothing to delete.
//   - Release deletes; a re-run finds the record absent (or held by a new
//     token) and changes nothing. It then reports ErrStaleToken, which is
//     still true: the caller's token no longer holds. A filter takes a
//     stale answer to a release as final, which is harmless.
//   - BumpEdgeEpoch is the exception: a re-run increments again. The
//     edges compare the epoch for equality, so a second increment only
//     tells them a second time to drop what they cached.
//   - ApplyExecuted: a re-run (same call nonce) finds the record
//     completed by this call and answers applied; ApplyNotExecuted's
//     re-run finds it gone and answers applied=false; Postpone's re-run
//     (same nonce) counts the attempt once and files it again. A claim is
//     not retried: the next ClaimDue finds what it left.
//   - Get and EdgeEpoch read (EdgeEpoch seeds an absent epoch with SET NX);
//     Delete and ForceRelease are admin actions whose re-run finds the
//     record absent and reports ErrNotFound.
//
// # Durable mode
//
// With Options.Durable on, every state-changing script (reserve, complete,
// release, release by holder, abandon, the admin delete and release, the
// edge-epoch bump, the reconcile applies and Postpone) is followed, in the same pipeline and so on the same
// connection, by WAIT N timeout (or WAITAOF 1 N timeout with Fsync), and
// the operation answers only once N replicas acknowledged; fewer in time
// is an error matching ErrNotDurable (and ErrUnavailable), the change
// perhaps standing on the master. A Reserve that does not acquire
// (completed, in progress, mismatch, indeterminate, fenced) answers
// whatever the WAIT says: it forwards nothing, so acting on it stays
// right should a failover lose what the master read, and a 503 would let
// a fail-open caller forward a duplicate. WAIT counts the writes of its own
// connection: a re-run that changes nothing rewrites a field with its own
// value so that its WAIT covers the first run's write (scripts.go).
// Reads (Get, EdgeEpoch, List, LoadForReconcile) do not wait, nor does
// ClaimDue: a claim lost in a failover only lets a lookup happen again.
//
// # Errors
//
// ErrStaleToken, ErrNotFound, ErrNotInProgress and ErrInvalidRequest
// describe the request; ErrFenced and ErrLeaseEnded come beside an answer
// that stands (see above); every failure to get an answer from Redis matches
// ErrUnavailable (and wraps the go-redis or context error), and so does
// ErrNotDurable, a durable-mode change too few replicas acknowledged in
// time (the change may stand on the master). A stored
// response that cannot be decoded matches ErrUnreadableResponse; Reserve
// then still answers Completed (status and BodyOmitted) beside the error,
// because the operation ran. Operations never block longer than the
// client's timeouts (and retries) or ctx.
package store
