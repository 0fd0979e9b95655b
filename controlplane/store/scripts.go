package store

import "github.com/redis/go-redis/v9"

// The record is one Redis hash, KEYS[1], with the fields
//
//	st     "p" in progress | "c" completed | "i" indeterminate (abandoned)
//	fp     request fingerprint
//	gen    generation: 1 on creation, +1 on every takeover
//	tok    fencing token of the current holder, "<gen>.<nonce>"
//	lease  lease end, ms since the epoch by Redis TIME (in progress only)
//	cr     creation, ms (Redis TIME)
//	exp    expiry, ms (Redis TIME); the key's PEXPIRE matches it
//	ttl    the record's TTL, ms, as reserved; complete restarts it
//	code   stored status (completed)
//	hdr    stored headers as a JSON array of [name, value] (completed)
//	body   stored body, raw bytes (completed)
//	omit   "1" when headers and body were over the cap (completed)
//	cn     nonce of the Complete (or Abandon) call that completed (or
//	       abandoned) the record
//
// Every script reads the clock with redis.call('TIME') so that all
// control-plane instances share Redis's clock; Redis 7 replicates the
// scripts' effects, not the scripts, so the non-deterministic TIME is fine.

// nowMS is the shared preamble: the current time in ms by Redis's clock.
const nowMS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// reserveScript: ARGV = fingerprint, lease ms, ttl ms, nonce.
// Replies {"acquired", token} | {"in_progress", remaining ms} | {"mismatch"}
// | {"completed", status, headers JSON, body, omitted}. An indeterminate
// record is in progress for as long as it lives (remaining ms = its PTTL),
// never taken over.
var reserveScript = redis.NewScript(nowMS + `
local k, fp, lease, ttl, nonce = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local r = redis.call('HMGET', k, 'st', 'fp', 'gen', 'tok', 'lease')
if not r[1] then
  local tok = '1.' .. nonce
  redis.call('HSET', k, 'st', 'p', 'fp', fp, 'gen', 1, 'tok', tok,
    'lease', now + lease, 'cr', now, 'exp', now + ttl, 'ttl', ttl)
  redis.call('PEXPIRE', k, ttl)
  return {'acquired', tok}
end
if r[2] ~= fp then
  return {'mismatch'}
end
if r[1] == 'c' then
  local c = redis.call('HMGET', k, 'code', 'hdr', 'body', 'omit')
  return {'completed', tonumber(c[1]) or 0, c[2] or '', c[3] or '', c[4] or ''}
end
if r[1] == 'i' then
  return {'in_progress', math.max(redis.call('PTTL', k), 1)}
end
local gen, tok, le = tonumber(r[3]), r[4], tonumber(r[5])
if le > now then
  -- The holder's token carries this call's nonce: the client retried a
  -- call whose reply was lost. Answer as the first run did.
  if tok == gen .. '.' .. nonce then
    return {'acquired', tok}
  end
  return {'in_progress', le - now}
end
-- The holder's lease ran out: take over with a new generation, which makes
-- the old token stale, and give the new attempt a full TTL.
gen = gen + 1
tok = gen .. '.' .. nonce
redis.call('HSET', k, 'gen', gen, 'tok', tok, 'lease', now + lease, 'exp', now + ttl, 'ttl', ttl)
redis.call('PEXPIRE', k, ttl)
return {'acquired', tok}
`)

// completeScript: ARGV = token, call nonce, status, headers JSON, body,
// omitted ("1" or ""). Replies 1 when stored (or already stored by this very
// call), 0 when the token does not hold; then nothing changed.
//
// A definite response is kept for the record's TTL from the moment it is
// stored: the script sets exp = now + ttl and PEXPIREs the key, so that a
// response completed near the end of the TTL given at reserve does not
// vanish at once and let a retry execute again. The re-run of this very
// call (same call nonce) leaves the expiry where the first run put it. A
// record without 'ttl' (written by an older version) keeps its expiry.
var completeScript = redis.NewScript(nowMS + `
local k = KEYS[1]
local r = redis.call('HMGET', k, 'st', 'tok', 'cn', 'ttl')
if r[2] ~= ARGV[1] then
  return 0
end
if r[1] ~= 'p' then
  if r[1] == 'c' and r[3] == ARGV[2] then
    return 1
  end
  return 0
end
redis.call('HSET', k, 'st', 'c', 'code', ARGV[3], 'hdr', ARGV[4], 'body', ARGV[5],
  'omit', ARGV[6], 'cn', ARGV[2])
redis.call('HDEL', k, 'lease')
local ttl = tonumber(r[4])
if ttl and ttl > 0 then
  redis.call('HSET', k, 'exp', now + ttl)
  redis.call('PEXPIRE', k, ttl)
end
return 1
`)

// abandonScript: ARGV = token, call nonce. Marks the record indeterminate
// when it is in progress under that token: no lease (it cannot be taken
// over), expiry unchanged (the reservation's TTL bounds it), and the token
// no longer holds. Replies 1 when marked (or already marked by this very
// call), 0 otherwise; then nothing changed.
var abandonScript = redis.NewScript(`
local k = KEYS[1]
local r = redis.call('HMGET', k, 'st', 'tok', 'cn')
if r[2] ~= ARGV[1] then
  return 0
end
if r[1] ~= 'p' then
  if r[1] == 'i' and r[3] == ARGV[2] then
    return 1
  end
  return 0
end
redis.call('HSET', k, 'st', 'i', 'cn', ARGV[2])
redis.call('HDEL', k, 'lease')
return 1
`)

// releaseScript: ARGV = token. Deletes the record when it is in progress
// under that token and replies 1; otherwise replies 0 and changes nothing.
var releaseScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'st', 'tok')
if r[1] ~= 'p' or r[2] ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
`)

// recordFn reads a record for the admin scripts: nil when absent, else
// {st, fp, cr, exp, lease, code, omit, hdr, body} (hdr and body only when
// withBody, else false).
const recordFn = `
local function record(k, withBody)
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
  return r
end
`

// getScript: ARGV = "1" to include headers and body. Replies nil when
// absent, else the record.
var getScript = redis.NewScript(recordFn + `
return record(KEYS[1], ARGV[1] == '1') or false
`)

// deleteScript deletes the record whatever its state and replies it as it
// was (without body), or nil when absent.
var deleteScript = redis.NewScript(recordFn + `
local r = record(KEYS[1], false)
if not r then
  return false
end
redis.call('DEL', KEYS[1])
return r
`)

// forceReleaseScript frees an in-progress or indeterminate record whatever
// its token. Replies nil when absent, else {changed, record...}: changed is
// 1 when the record was in progress or indeterminate and is now gone, 0
// when it is completed and was left alone.
var forceReleaseScript = redis.NewScript(recordFn + `
local r = record(KEYS[1], false)
if not r then
  return false
end
if r[1] == 'c' then
  table.insert(r, 1, 0)
  return r
end
redis.call('DEL', KEYS[1])
table.insert(r, 1, 1)
return r
`)
