package store

import "github.com/redis/go-redis/v9"

// The record is one Redis hash, KEYS[1], with the fields
//
//	st     "p" in progress | "c" completed | "i" indeterminate
//	why    of an indeterminate record: "e" its lease ended without word
//	       from the holder (the holder's token still completes or
//	       releases it), "a" the holder abandoned it (the request was
//	       forwarded and no answer came back)
//	fp     keyed hash of the request fingerprint ("k1:"/"s1:" + hex, see
//	       fingerprint.go); records written before it keep the
//	       fingerprint itself, until a reserve rewrites it
//	gen    generation: 1 on creation, +1 on every takeover
//	tok    fencing token of the current holder, "<gen>.<holder>"
//	hd     the current holder's id (the token's tail)
//	oi     "release" when the acquiring reserve said on_indeterminate
//	       release, "reconcile" when it said reconcile (the record is
//	       then filed in the reconcile index, see below); anything else
//	       (absent in older records) is lock
//	rt     reconcile: the lookup target's name
//	ra     reconcile: lookups answered without resolving the record
//	rl     reconcile: the last answer (executed, not_executed, unknown,
//	       failed)
//	rn     reconcile: nonce of the Postpone call that counted the last
//	       lookup (a re-run counts it once)
//	lease  lease end, ms since the epoch by Redis TIME (in progress only)
//	cr     creation, ms (Redis TIME)
//	exp    expiry, ms (Redis TIME); the key's PEXPIRE matches it. A
//	       reservation that locks lives lease + ttl (a full TTL past
//	       its lease), one that releases ttl; complete restarts it at ttl
//	ttl    the record's TTL, ms, as reserved; complete restarts it
//	code   stored status (completed)
//	hdr    stored headers as a JSON array of [name, value] (completed)
//	body   stored body, raw bytes (completed)
//	omit   "1" when headers and body were over the cap (completed)
//	cn     nonce of the Complete (or Abandon) call that completed (or
//	       abandoned) the record
//
// Beside it, in the same Cluster slot (same hash tag), a fence
// "<record key>f.<holder>" (a string, PEXPIRE FenceTTL) says that this
// holder released by holder id: a reserve carrying it never acquires.
//
// The reconcile index (Store.reconcileIndexKey, in the record's slot) is
// a sorted set: member the record's key, score when its next lookup is due
// (ms, Redis TIME). Every script on a record gets it in KEYS, last (and
// where only tidying needs it, it may be left out: see call.optional):
// reserve files an oi=reconcile record at its lease end when it acquires
// (or restarts the lease), abandon brings that forward to now +
// ReconcileDelay (never later than it was), complete and every script
// that deletes the record drop it, the claim moves it to the end of the
// claim, Postpone to the next lookup. An entry whose record is gone,
// completed or not oi=reconcile is dropped by the claim that meets it.
//
// Every script reads the clock with redis.call('TIME') so that all
// control-plane instances share Redis's clock; Redis 7 replicates the
// scripts' effects, not the scripts, so the non-deterministic TIME is fine.
//
// A re-run that answers success without a change (a retried reserve of the
// same holder, complete of the same token, abandon) rewrites one field
// with the value it has: in durable mode the WAIT that follows is
// documented to count the writes of its own connection, and the first
// run's write, perhaps on another connection whose WAIT fell short, must
// be covered before the re-run is acknowledged. (Redis 7.0 in fact moves
// every connection's WAIT offset to the master's after any command; the
// rewrite keeps this true whatever the version.) Redis propagates an HSET
// even when the value does not change, and the replication stream is
// ordered.

// nowMS is the shared preamble: the current time in ms by Redis's clock.
const nowMS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// fileEarlierFn files member m in index ix at `at` unless it is filed
// earlier already (ZADD LT, written out so that it runs on every Redis
// and on the embedded store).
const fileEarlierFn = `
local function fileEarlier(ix, m, at)
  local sc = tonumber(redis.call('ZSCORE', ix, m))
  if not sc or sc > at then
    redis.call('ZADD', ix, at, m)
  end
end
`

// reserveScript: KEYS = record, the holder's fence, the reconcile index.
// ARGV = stored form of the fingerprint (keyed hash under the current
// key), lease ms, ttl ms, holder, on_indeterminate ("release", "lock" or
// "reconcile"), the fingerprint itself (compared only with records
// written before fingerprints were hashed, which carry no "k1:"/"s1:"
// mark), the reconcile target, then any other accepted hashed forms
// (previous keys).
//
// Replies {"acquired", token} | {"in_progress", remaining lease ms} |
// {"indeterminate", remaining TTL ms, "lease_ended" when this reserve
// found the lease ended and wrote the record indeterminate else "",
// ms until the next lookup of an oi=reconcile record (≥1) else 0} |
// {"fenced", remaining fence ms} |
// {"mismatch"} | {"completed", status, headers JSON, body, omitted,
// remaining TTL ms (0 when the key has no expiry)}.
var reserveScript = redis.NewScript(nowMS + fileEarlierFn + `
local k, fp, lease, ttl, holder, oi = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local ix = KEYS[3]
-- reconcileIn: when the next lookup of an indeterminate oi=reconcile
-- record is due. An entry lost (a failover that dropped the index write)
-- is filed again, due now: the record must not wait for its TTL.
local function reconcileIn(roi)
  if roi ~= 'reconcile' then
    return 0
  end
  local sc = tonumber(redis.call('ZSCORE', ix, k))
  if not sc then
    redis.call('ZADD', ix, now, k)
    return 1
  end
  return math.max(sc - now, 1)
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'fenced', math.max(redis.call('PTTL', KEYS[2]), 1)}
end
local r = redis.call('HMGET', k, 'st', 'fp', 'gen', 'tok', 'lease', 'oi')
-- On a route that locks, the reservation outlives its lease by a full TTL:
-- when the lease ends without word the record turns indeterminate and
-- must stay so (the request may have run) instead of expiring with the
-- lease and letting a retry acquire.
local life = ttl
if oi ~= 'release' then
  life = lease + ttl
end
if not r[1] then
  local tok = '1.' .. holder
  redis.call('HSET', k, 'st', 'p', 'fp', fp, 'gen', 1, 'tok', tok, 'hd', holder, 'oi', oi,
    'lease', now + lease, 'cr', now, 'exp', now + life, 'ttl', ttl)
  if oi == 'reconcile' then
    -- Due when the lease ends: a holder that never answers is asked about.
    redis.call('HSET', k, 'rt', ARGV[7])
    redis.call('ZADD', ix, now + lease, k)
  end
  redis.call('PEXPIRE', k, life)
  return {'acquired', tok}
end
local stored = r[2] or ''
local match = stored == fp
if not match then
  local mark = string.sub(stored, 1, 3)
  if mark == 'k1:' or mark == 's1:' then
    for i = 8, #ARGV do
      if stored == ARGV[i] then match = true end
    end
  else
    match = stored == ARGV[6]
  end
  if not match then
    return {'mismatch'}
  end
  -- Written under a previous key or before hashing: store the current
  -- form, so that the clear fingerprint leaves Redis on first use.
  redis.call('HSET', k, 'fp', fp)
end
if r[1] == 'c' then
  local c = redis.call('HMGET', k, 'code', 'hdr', 'body', 'omit')
  -- How long the record still lives: an edge cache keeps the replay no
  -- longer. 0 for a key without expiry (not ours), "unknown".
  return {'completed', tonumber(c[1]) or 0, c[2] or '', c[3] or '', c[4] or '',
    math.max(redis.call('PTTL', k), 0)}
end
if r[1] == 'i' then
  return {'indeterminate', math.max(redis.call('PTTL', k), 1), '', reconcileIn(r[6])}
end
local gen, tok, le = tonumber(r[3]) or 0, r[4], tonumber(r[5]) or 0
if tok == gen .. '.' .. holder then
  -- The holder asks again (a retried call whose reply was lost): answer
  -- as the first run did. It never saw an answer, so it forwarded
  -- nothing: a lease that ended meanwhile starts again rather than
  -- burning the key under a holder that never ran the request.
  if le > now then
    -- Rewrite a field with its own value: WAIT counts only the writes of
    -- its own connection, and the first run may have written on another.
    redis.call('HSET', k, 'tok', tok)
  else
    redis.call('HSET', k, 'lease', now + lease, 'exp', now + life)
    redis.call('PEXPIRE', k, life)
    if r[6] == 'reconcile' then
      redis.call('ZADD', ix, now + lease, k)
    end
  end
  return {'acquired', tok}
end
if le > now then
  return {'in_progress', le - now}
end
if r[6] ~= 'release' then
  -- The lease ended without word from the holder, who forwarded the
  -- request: it may have run. Never hand it over; the holder's token
  -- still completes or releases it.
  redis.call('HSET', k, 'st', 'i', 'why', 'e')
  redis.call('HDEL', k, 'lease')
  return {'indeterminate', math.max(redis.call('PTTL', k), 1), 'lease_ended', reconcileIn(r[6])}
end
-- The route opted into takeover: a new generation makes the old token
-- stale, and the new attempt gets a full TTL and its own choice.
gen = gen + 1
tok = gen .. '.' .. holder
redis.call('HSET', k, 'gen', gen, 'tok', tok, 'hd', holder, 'oi', oi,
  'lease', now + lease, 'exp', now + life, 'ttl', ttl)
redis.call('HDEL', k, 'ra', 'rl', 'rn')
if oi == 'reconcile' then
  redis.call('HSET', k, 'rt', ARGV[7])
  redis.call('ZADD', ix, now + lease, k)
else
  redis.call('HDEL', k, 'rt')
  redis.call('ZREM', ix, k)
end
redis.call('PEXPIRE', k, life)
return {'acquired', tok}
`)

// storeResponseFn (after nowMS) completes record k: the response of
// ARGV (status ARGV[3], headers JSON ARGV[4], body ARGV[5], omitted
// ARGV[6]) under the call nonce ARGV[2], with any further field-value
// pairs; the lease goes, the expiry restarts at the record's ttl (an older
// record without one keeps its expiry), and the reconcile index entry
// (KEYS[2], when given) goes. Shared by complete and the reconciler's
// executed answer, which must store a response exactly alike.
const storeResponseFn = `
local function storeResponse(k, ttl, ...)
  redis.call('HSET', k, 'st', 'c', 'code', ARGV[3], 'hdr', ARGV[4], 'body', ARGV[5],
    'omit', ARGV[6], 'cn', ARGV[2], ...)
  redis.call('HDEL', k, 'lease', 'why')
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then
    redis.call('HSET', k, 'exp', now + ttl)
    redis.call('PEXPIRE', k, ttl)
  end
  if KEYS[2] then
    redis.call('ZREM', KEYS[2], k)
  end
end
`

// completeScript: KEYS = record, reconcile index. ARGV = token, call
// nonce, status, headers JSON, body,
// omitted ("1" or ""). Replies 1 when stored, or when the record is already
// completed under this token (a retried call: nothing changes, the first
// response stays), 0 when the token does not hold; then nothing changed. The token
// holds on an in-progress record (lease live or not) and on one that went
// indeterminate because its lease ended: a late complete still lands.
//
// A definite response is kept for the record's TTL from the moment it is
// stored: the script sets exp = now + ttl and PEXPIREs the key, so that a
// response completed near the end of the TTL given at reserve does not
// vanish at once and let a retry execute again. A re-run (same token)
// leaves the expiry where the first run put it. A
// record without 'ttl' (written by an older version) keeps its expiry.
var completeScript = redis.NewScript(nowMS + storeResponseFn + `
local k = KEYS[1]
local r = redis.call('HMGET', k, 'st', 'tok', 'cn', 'ttl', 'why')
if r[2] ~= ARGV[1] then
  return 0
end
if r[1] == 'c' then
  -- Completed under this very token: a retry of the call (go-redis's,
  -- same nonce) or of the caller's (a fresh nonce) after a lost answer.
  -- One token is one attempt with one response: it was delivered.
  -- The same-value write makes this connection's WAIT cover the first
  -- run's write (see reserveScript).
  redis.call('HSET', k, 'st', 'c')
  return 1
end
if r[1] ~= 'p' and not (r[1] == 'i' and r[5] == 'e') then
  return 0
end
storeResponse(k, r[4])
return 1
`)

// abandonScript: KEYS = record, reconcile index. ARGV = token, call
// nonce, reconcile delay ms. Marks the record indeterminate
// (abandoned) when its token is the one given and it is in progress or
// already indeterminate: no lease (it cannot be taken over), expiry
// unchanged (the reservation's TTL bounds it). Abandoning again is a
// success that changes nothing more, so that a retried abandon is
// acknowledged. Replies 1 then, 0 otherwise (nothing changed). An
// oi=reconcile record is due for its lookup a delay from now (the
// attempt may still be on its way upstream), unless due earlier.
var abandonScript = redis.NewScript(nowMS + fileEarlierFn + `
local k = KEYS[1]
local r = redis.call('HMGET', k, 'st', 'tok', 'why', 'oi')
if r[2] ~= ARGV[1] or (r[1] ~= 'p' and r[1] ~= 'i') then
  return 0
end
if r[1] == 'i' and r[3] == 'a' then
  redis.call('HSET', k, 'why', 'a') -- for WAIT, see reserveScript
  return 1
end
redis.call('HSET', k, 'st', 'i', 'why', 'a', 'cn', ARGV[2])
redis.call('HDEL', k, 'lease')
if r[4] == 'reconcile' and KEYS[2] then
  fileEarlier(KEYS[2], k, now + tonumber(ARGV[3]))
end
return 1
`)

// releaseScript: KEYS = record, reconcile index. ARGV = token. Deletes the record when that token holds
// it (in progress, or indeterminate because its lease ended: the holder
// knows the request did not run) and replies 1; otherwise replies 0 and
// changes nothing. An abandoned record is not released by its token: the
// holder said the request went out.
var releaseScript = redis.NewScript(forgetFn + `
local r = redis.call('HMGET', KEYS[1], 'st', 'tok', 'why')
if r[2] ~= ARGV[1] or not (r[1] == 'p' or (r[1] == 'i' and r[3] == 'e')) then
  return 0
end
forget(KEYS[2])
return 1
`)

// forgetFn deletes the record KEYS[1] and its entry in the reconcile
// index idx (nil when the index is not given: a slot migrating).
const forgetFn = `
local function forget(idx)
  redis.call('DEL', KEYS[1])
  if idx then
    redis.call('ZREM', idx, KEYS[1])
  end
end
`

// releaseHolderScript: KEYS = record, the holder's fence, the reconcile
// index. ARGV = holder,
// fence ms. Writes the fence (or restarts it) whatever the record holds,
// so that a reserve of this holder still on its way never acquires, then
// deletes the record when this holder holds it as releaseScript would.
// Replies 1 when the record was deleted, 0 when only the fence was
// written.
var releaseHolderScript = redis.NewScript(forgetFn + `
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
local r = redis.call('HMGET', KEYS[1], 'st', 'tok', 'why', 'gen')
if not r[1] or r[2] ~= tostring(r[4]) .. '.' .. ARGV[1] then
  return 0
end
if r[1] == 'p' or (r[1] == 'i' and r[3] == 'e') then
  forget(KEYS[3])
  return 1
end
return 0
`)

// recordFn reads a record for the admin scripts: nil when absent, else
// {st, fp, cr, exp, lease, code, omit, hdr, body, oi, now, rt, ra, rl,
// next lookup, tok} (hdr and body only when withBody, else false; now is
// Redis's TIME in ms, to tell a lease that ended; next lookup the score
// in the reconcile index ix, false when not filed).
const recordFn = `
local function record(k, ix, withBody)
  local r = redis.call('HMGET', k, 'st', 'fp', 'cr', 'exp', 'lease', 'code', 'omit')
  if not r[1] then
    return nil
  end
  if withBody then
    local b = redis.call('HMGET', k, 'hdr', 'body')
    r[8], r[9] = b[1], b[2]
  else
    r[8], r[9] = false, false
  end
  local t = redis.call('TIME')
  local x = redis.call('HMGET', k, 'oi', 'rt', 'ra', 'rl', 'tok')
  r[10] = x[1] or false
  r[11] = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  r[12], r[13], r[14] = x[2] or false, x[3] or false, x[4] or false
  local sc = ix and redis.call('ZSCORE', ix, k)
  r[15] = sc and string.format('%d', tonumber(sc)) or false
  r[16] = x[5] or false
  return r
end

-- leaseLive tells a record in progress whose lease still runs: its holder
-- may still be executing the request.
local function leaseLive(r)
  return r[1] == 'p' and tonumber(r[5]) ~= nil and tonumber(r[5]) > tonumber(r[11])
end
`

// getScript: KEYS = record, reconcile index. ARGV = "1" to include
// headers and body. Replies nil when absent, else the record.
var getScript = redis.NewScript(recordFn + `
return record(KEYS[1], KEYS[2], ARGV[1] == '1') or false
`)

// dropFn deletes the record r was read from (KEYS[1]) and its entry in
// the reconcile index (KEYS[2], when given), unless ARGV[1] is "1" and
// its lease still runs; it replies {changed, record...}: changed is 1
// when deleted, 2 when refused (nothing changed).
const dropFn = forgetFn + `
local function drop(r)
  if ARGV[1] == '1' and leaseLive(r) then
    table.insert(r, 1, 2)
    return r
  end
  forget(KEYS[2])
  table.insert(r, 1, 1)
  return r
end
`

// deleteScript: KEYS = record, reconcile index. ARGV = "1" to refuse a
// record whose lease still runs. Deletes the record (whatever its state,
// unless refused). Replies nil when absent, else dropFn's reply.
var deleteScript = redis.NewScript(recordFn + dropFn + `
local r = record(KEYS[1], KEYS[2], false)
if not r then
  return false
end
return drop(r)
`)

// forceReleaseScript: KEYS = record, reconcile index. ARGV = "1" to
// refuse a record whose lease still runs. Frees an in-progress or
// indeterminate record whatever its token. Replies nil when absent, else
// {changed, record...}: changed is 0 when the record is completed and was
// left alone, else dropFn's (1: it was in progress or indeterminate and
// is now gone, 2: refused).
var forceReleaseScript = redis.NewScript(recordFn + dropFn + `
local r = record(KEYS[1], KEYS[2], false)
if not r then
  return false
end
if r[1] == 'c' then
  table.insert(r, 1, 0)
  return r
end
return drop(r)
`)

// seedEpoch is the preamble of the edge-epoch scripts: when KEYS[1] is
// absent (never set, or Redis lost its data) it is first set to Redis's
// TIME in microseconds since the Unix epoch, so that every data loss
// starts the epoch at a value later than any it held before (each bump
// adds 1; a million bumps a second would be needed to catch up). Built
// as a string: Lua's tostring of a 16-digit number is not exact.
const seedEpoch = `
local v = redis.call('GET', KEYS[1])
if not v then
  local t = redis.call('TIME')
  v = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[1], v, 'NX')
end
`

// edgeEpochScript replies the edge epoch (a string of digits), seeding it
// when absent.
var edgeEpochScript = redis.NewScript(seedEpoch + `
return v
`)

// bumpEdgeEpochScript increments the edge epoch, seeding it first when
// absent, and replies the new value.
var bumpEdgeEpochScript = redis.NewScript(seedEpoch + `
return redis.call('INCR', KEYS[1])
`)
