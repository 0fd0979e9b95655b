package store

import "github.com/redis/go-redis/v9"

// The reconcile scripts: KEYS = record, reconcile index (the record's
// slot). A record is reconcilable by token tok when it is oi=reconcile,
// held under tok, and indeterminate or in progress with its lease ended:
// then nobody else can resolve it (its holder can still complete or
// release a record whose lease ended, and the scripts check that it has
// not).

// reconcilableFn reads the record for the apply scripts: r = {st, tok, oi,
// lease, cn, ttl, ra, rn}, and ok when tok holds it as said above.
const reconcilableFn = `
local function reconcilable(k, tok)
  local r = redis.call('HMGET', k, 'st', 'tok', 'oi', 'lease', 'cn', 'ttl', 'ra', 'rn')
  local ok = r[2] == tok and r[3] == 'reconcile' and
    (r[1] == 'i' or (r[1] == 'p' and (tonumber(r[4]) or 0) <= now))
  return r, ok
end
`

// claimScript: ARGV = claim ms. Claims the record for a lookup when its
// index entry is due (score ≤ now; an entry another claimer moved to the
// end of its claim is not): its entry moves to now + claim. An in-progress
// record whose lease ended turns indeterminate as a reserve would; one
// whose lease still runs is filed at the lease end instead. An entry whose
// record is gone, completed or not oi=reconcile is dropped.
//
// Replies {"claimed", tok, rt, fp, cr, ra} | {"live"} | {"dropped"} |
// {"not_due"}.
var claimScript = redis.NewScript(nowMS + `
local k, ix = KEYS[1], KEYS[2]
local sc = tonumber(redis.call('ZSCORE', ix, k))
if not sc or sc > now then
  return {'not_due'}
end
local r = redis.call('HMGET', k, 'st', 'tok', 'oi', 'lease', 'rt', 'fp', 'cr', 'ra')
if not r[1] or r[1] == 'c' or r[3] ~= 'reconcile' then
  redis.call('ZREM', ix, k)
  return {'dropped'}
end
if r[1] == 'p' then
  local le = tonumber(r[4]) or 0
  if le > now then
    redis.call('ZADD', ix, le, k)
    return {'live'}
  end
  redis.call('HSET', k, 'st', 'i', 'why', 'e')
  redis.call('HDEL', k, 'lease')
end
redis.call('ZADD', ix, now + tonumber(ARGV[1]), k)
return {'claimed', r[2] or '', r[5] or '', r[6] or '', r[7] or '', r[8] or '0'}
`)

// applyExecutedScript: ARGV = token, call nonce, status, headers JSON,
// body, omitted. Completes a record reconcilable by the token with the
// upstream's response (expiry restarted at its TTL, as complete does) and
// drops its index entry. Replies 1 when applied, or when this very call
// applied it before (a re-run: same nonce; a same-value write for WAIT);
// 0 otherwise, nothing changed (completed by its holder or released
// meanwhile, another token).
var applyExecutedScript = redis.NewScript(nowMS + reconcilableFn + storeResponseFn + `
local k = KEYS[1]
local r, ok = reconcilable(k, ARGV[1])
if r[1] == 'c' and r[2] == ARGV[1] and r[5] == ARGV[2] then
  redis.call('HSET', k, 'st', 'c')
  return 1
end
if not ok then
  return 0
end
storeResponse(k, r[6], 'ra', (tonumber(r[7]) or 0) + 1, 'rl', 'executed')
return 1
`)

// applyNotExecutedScript: ARGV = token. Deletes a record reconcilable by
// the token and its index entry: the upstream refuses that attempt from
// now on, so a retry may execute. Replies 1 when deleted, 0 otherwise
// (nothing changed; a re-run finds the record gone and replies 0 too).
var applyNotExecutedScript = redis.NewScript(nowMS + reconcilableFn + forgetFn + `
local r, ok = reconcilable(KEYS[1], ARGV[1])
if not ok then
  return 0
end
forget(KEYS[2])
return 1
`)

// postponeScript: ARGV = token, ms until the next lookup, the last answer,
// call nonce. Files a record reconcilable by the token for its next
// lookup and counts the lookup (ra + 1, rl; a re-run with the same nonce
// counts it once). An in-progress record whose lease ended turns
// indeterminate as a reserve would. Replies 1, or 0 when the token does
// not hold it so (nothing changed).
var postponeScript = redis.NewScript(nowMS + reconcilableFn + `
local k = KEYS[1]
local r, ok = reconcilable(k, ARGV[1])
if not ok then
  return 0
end
if r[1] == 'p' then
  redis.call('HSET', k, 'st', 'i', 'why', 'e')
  redis.call('HDEL', k, 'lease')
end
if r[8] == ARGV[4] then
  redis.call('HSET', k, 'rn', ARGV[4]) -- for WAIT, see reserveScript
else
  redis.call('HSET', k, 'ra', (tonumber(r[7]) or 0) + 1, 'rl', ARGV[3], 'rn', ARGV[4])
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), k)
return 1
`)
