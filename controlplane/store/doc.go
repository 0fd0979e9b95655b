// Package store keeps the control plane's idempotency records in Redis
// (standalone, Sentinel or Cluster) through go-redis's UniversalClient.
//
// # State machine
//
// One record per scope+key, as in DESIGN.md, "Record state machine":
//
//	state                    reserve, same fingerprint             other fingerprint
//	absent                   → in_progress, new token: acquired    same
//	in_progress, lease live  in_progress (+ remaining lease)       mismatch
//	in_progress, lease over  taken over, new token: acquired       mismatch
//	indeterminate            in_progress (+ remaining TTL)         mismatch
//	completed                completed (+ stored response)         mismatch
//
// Complete(token) turns an in-progress record into a completed one;
// Release(token) deletes it (absent again); Abandon(token) marks it
// indeterminate: the request was forwarded but no response came back, so
// the operation may have run. An indeterminate record has no lease and is
// never taken over: it stays until its TTL ends or an operator frees it
// (ForceRelease, Delete). All three return ErrStaleToken and change
// nothing when the token does not hold; after Abandon the token holds for
// nothing. A holder whose lease ran
// out but was not taken over still holds: its Complete or Release succeeds.
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
// A token is "<generation>.<nonce>": the generation is 1 when the record is
// created and grows by one at every takeover, so the newer holder's token
// always differs from the older one's; the nonce is 128 random bits from
// crypto/rand made in Go and passed to the script, so a token is never
// reused, not even by a record that expired and was created again (whose
// generation starts at 1 again).
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
//   - Reserve passes a fresh nonce per call; a re-run that finds the record
//     held under a token with that nonce answers acquired with that token.
//   - Complete passes a fresh call nonce, kept in the record; a re-run that
//     finds the record completed by this token and call answers success.
//     Another Complete with the same token gets ErrStaleToken.
//   - Abandon passes a fresh call nonce, kept in the record like
//     Complete's; a re-run that finds the record abandoned by this token
//     and call answers success.
//   - Release deletes; a re-run finds the record absent (or held by a new
//     token) and changes nothing. It then reports ErrStaleToken, which is
//     still true: the caller's token no longer holds.
//   - Get reads; Delete and ForceRelease are admin actions whose re-run
//     finds the record absent and reports ErrNotFound.
//
// # Errors
//
// ErrStaleToken, ErrNotFound, ErrNotInProgress and ErrInvalidRequest
// describe the request; every failure to get an answer from Redis matches
// ErrUnavailable (and wraps the go-redis or context error). A stored
// response that cannot be decoded matches ErrUnreadableResponse; Reserve
// then still answers Completed (status and BodyOmitted) beside the error,
// because the operation ran. Operations never block longer than the
// client's timeouts (and retries) or ctx.
package store
