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
// absent).
//
// # Holders and fences
//
// A token is "<generation>.<holder>". The holder is the id the reserve
// carried (api.ReserveRequest.Holder), else a nonce the store makes.
// ReleaseHolder(holder) serves a caller that never saw its reserve's
// answer: it deletes the record if that holder holds it (as Release would)
// and in every case writes a fence, a key beside the record
// ("<record key>f.<holder>", same Cluster slot) that lives FenceTTL
// (default DefaultFenceTTL, 2 minutes). A reserve carrying a fenced holder
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
// the request's TTL from the reservation (a takeover restarts it), and
// keeps the TTL in the record; a successful Complete restarts it from the
// moment the response is stored, so a definite response is replayed for a
// full TTL however late in the reservation it came. The reservation's TTL
// is therefore the bound on an unanswered request, and the completed
// record lives TTL after its response.
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
// NewClient's client retries a failed command once (DefaultMaxRetries). A
// retry may re-run a script whose reply was lost, which is safe because
// re-running a script with the same arguments changes nothing more than the
// first run:
//
//   - Reserve passes the holder id (a fresh nonce when the caller gave
//     none); a re-run that finds the record held under a token with that
//     holder answers acquired with that token.
//   - Complete passes a fresh call nonce, kept in the record; a re-run that
//     finds the record completed by this token and call answers success.
//     Another Complete with the same token gets ErrStaleToken.
//   - Abandon: a re-run (or any later abandon with the token) finds the
//     record abandoned under this token and answers success.
//   - ReleaseHolder sets the fence again and finds nothing to delete.
//   - Release deletes; a re-run finds the record absent (or held by a new
//     token) and changes nothing. It then reports ErrStaleToken, which is
//     still true: the caller's token no longer holds.
//   - Get reads; Delete and ForceRelease are admin actions whose re-run
//     finds the record absent and reports ErrNotFound.
//
// # Errors
//
// ErrStaleToken, ErrNotFound, ErrNotInProgress and ErrInvalidRequest
// describe the request; ErrFenced and ErrLeaseEnded come beside an answer
// that stands (see above); every failure to get an answer from Redis matches
// ErrUnavailable (and wraps the go-redis or context error). A stored
// response that cannot be decoded matches ErrUnreadableResponse; Reserve
// then still answers Completed (status and BodyOmitted) beside the error,
// because the operation ran. Operations never block longer than the
// client's timeouts (and retries) or ctx.
package store
