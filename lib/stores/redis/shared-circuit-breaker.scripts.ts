import { RedisScript } from './shared-redis.js';

// The shared state of one breaker lives in three keys under one hash tag (one Cluster slot):
//   KEYS[1] state  HASH  state, gen, openUntil, probesOk, consec, reason
//   KEYS[2] window HASH  instanceId -> "calls failures slow consecutive expiresAt" (that instance's window)
//   KEYS[3] probes ZSET  probe lease id -> deadline (ms, Redis time)
// Every script reads the clock with TIME, applies the transitions that came due (OPEN -> HALF_OPEN
// at openUntil, HALF_OPEN -> OPEN when a probe lease passed its deadline), does its own work, and
// answers the same "view" of the state. Every transition bumps `gen`, so outcomes and probes admitted
// under an older generation never count.
//
// ARGV[1] deadline (Redis ms after which the command is stale and does nothing; 0: none)
// ARGV[2..11] configuration: minimumCalls, failureRateThreshold, slowCallRateThreshold,
//   consecutiveFailures (0: rate mode), quorum, openDuration, probeTimeout, halfOpenMaxCalls,
//   snapshotTtl, keyTtl
// ARGV[12..] per script
//
// The view: {code, now, state, gen, openUntil, reason, calls, failures, slow, consecutive,
//   instances, votes, probesInFlight, probesSucceeded}; window figures are -1 when not computed.
const PRELUDE = `
local S, W, P = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(ARGV[1])
local minCalls = tonumber(ARGV[2])
local failRate = tonumber(ARGV[3])
local slowRate = tonumber(ARGV[4])
local consecMax = tonumber(ARGV[5])
local quorum = tonumber(ARGV[6])
local openDuration = tonumber(ARGV[7])
local probeTimeout = tonumber(ARGV[8])
local halfMax = tonumber(ARGV[9])
local snapshotTtl = tonumber(ARGV[10])
local keyTtl = tonumber(ARGV[11])

local h = redis.call('HMGET', S, 'state', 'gen', 'openUntil', 'probesOk', 'consec', 'reason')
local state = h[1] or 'CLOSED'
local gen = tonumber(h[2])
local openUntil = tonumber(h[3]) or 0
local probesOk = tonumber(h[4]) or 0
local consec = tonumber(h[5]) or 0
local reason = h[6] or 'reset'
local dirty = false
-- A fresh breaker starts its generations at the current time, so a generation number from a
-- breaker whose keys expired is never taken for a current one.
if gen == nil then gen = now; dirty = true end
local fig = {-1, -1, -1, -1, -1}

local function view(code)
  return {code, now, state, gen, openUntil, reason, fig[1], fig[2], fig[3], consec, fig[4], fig[5], redis.call('ZCARD', P), probesOk}
end

local function transition(to, why, at)
  gen = gen + 1
  state = to
  reason = why
  probesOk = 0
  consec = 0
  dirty = true
  if to == 'OPEN' then openUntil = at + openDuration else openUntil = 0 end
  redis.call('DEL', W, P)
end

local function refresh()
  for _ = 1, 8 do
    if state == 'HALF_OPEN' then
      local oldest = redis.call('ZRANGE', P, 0, 0, 'WITHSCORES')
      if oldest[2] ~= nil and tonumber(oldest[2]) <= now then
        transition('OPEN', 'probeTimeout', tonumber(oldest[2]))
      else
        return
      end
    elseif state == 'OPEN' and now >= openUntil then
      transition('HALF_OPEN', 'openDurationElapsed', openUntil)
    else
      return
    end
  end
end

local function save()
  if dirty then
    redis.call('HSET', S, 'state', state, 'gen', string.format('%.0f', gen), 'openUntil', string.format('%.0f', openUntil),
      'probesOk', probesOk, 'consec', consec, 'reason', reason)
  end
  if state == 'FORCED_OPEN' or state == 'DISABLED' then redis.call('PERSIST', S) else redis.call('PEXPIRE', S, keyTtl) end
end

if deadline > 0 and now > deadline then return view('stale') end
`;

/**
 * Pushes one instance's window and the failures in a row of its last batch, then evaluates the
 * fleet-wide thresholds and opens the circuit when they are crossed (and, with a quorum, when
 * enough instances cross them on their own).
 * ARGV[12] instanceId, [13] the generation the window belongs to ('' when unknown),
 * [14] calls, [15] failures, [16] slow calls, [17] the instance's failures in a row,
 * [18] failures in a row at the end of the batch, [19] '1' when the batch holds a success.
 */
export const SYNC_SCRIPT = new RedisScript(
  'breaker-sync',
  `${PRELUDE}
refresh()
if state == 'CLOSED' and tonumber(ARGV[13]) == gen then
  local c, f, s, lc = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  if c > 0 or lc > 0 then
    redis.call('HSET', W, ARGV[12], string.format('%d %d %d %d %.0f', c, f, s, lc, now + snapshotTtl))
    redis.call('PEXPIRE', W, snapshotTtl)
  else
    redis.call('HDEL', W, ARGV[12])
  end
  local trailing = tonumber(ARGV[18])
  if ARGV[19] == '1' then
    consec = trailing
    dirty = true
  elseif trailing > 0 then
    consec = consec + trailing
    dirty = true
  end
end
if state == 'CLOSED' then
  local calls, fails, slows, n, votes = 0, 0, 0, 0, 0
  local share = math.ceil(minCalls / quorum)
  local cshare = math.ceil(consecMax / quorum)
  local all = redis.call('HGETALL', W)
  for i = 1, #all, 2 do
    local c, f, s, lc, exp = string.match(all[i + 1], '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
    if exp == nil or tonumber(exp) <= now then
      redis.call('HDEL', W, all[i])
    else
      c, f, s, lc = tonumber(c), tonumber(f), tonumber(s), tonumber(lc)
      n = n + 1
      calls = calls + c
      fails = fails + f
      slows = slows + s
      if consecMax > 0 then
        if lc >= cshare then votes = votes + 1 end
      elseif c > 0 and c >= share and (f * 100 >= failRate * c or s * 100 >= slowRate * c) then
        votes = votes + 1
      end
    end
  end
  fig = {calls, fails, slows, n, votes}
  if quorum <= 1 or votes >= quorum then
    if consecMax > 0 then
      if consec >= consecMax then transition('OPEN', 'consecutiveFailures', now) end
    elseif calls > 0 and calls >= minCalls then
      if fails * 100 >= failRate * calls then
        transition('OPEN', 'failureRate', now)
      elseif slows * 100 >= slowRate * calls then
        transition('OPEN', 'slowCallRate', now)
      end
    end
  end
end
save()
return view('ok')
`,
);

/**
 * Asks for a half-open probe lease: granted while the leases in flight plus the probes that
 * already succeeded stay below halfOpenMaxCalls, fleet-wide. A lease past its deadline re-opens
 * the circuit (probeTimeout), so a dead instance cannot pin HALF_OPEN.
 * ARGV[12] lease id. Codes: granted, denied, closed, disabled.
 */
export const PROBE_SCRIPT = new RedisScript(
  'breaker-probe',
  `${PRELUDE}
refresh()
local code = 'denied'
if state == 'HALF_OPEN' then
  if redis.call('ZCARD', P) + probesOk < halfMax then
    redis.call('ZADD', P, string.format('%.0f', now + probeTimeout), ARGV[12])
    redis.call('PEXPIRE', P, keyTtl)
    code = 'granted'
  end
elseif state == 'CLOSED' then
  code = 'closed'
elseif state == 'DISABLED' then
  code = 'disabled'
end
save()
return view(code)
`,
);

/**
 * Reports a probe's outcome. A probe counts only if its lease is still held in the generation
 * that granted it; otherwise the reply is 'late'.
 * ARGV[12] lease id, [13] generation, [14] 'success' | 'failure' | 'ignored', [15] '1' when slow.
 */
export const SETTLE_SCRIPT = new RedisScript(
  'breaker-settle',
  `${PRELUDE}
refresh()
local code = 'late'
if state == 'HALF_OPEN' and tonumber(ARGV[13]) == gen and redis.call('ZREM', P, ARGV[12]) == 1 then
  code = 'counted'
  local outcome = ARGV[14]
  if outcome == 'failure' then
    transition('OPEN', 'probeFailure', now)
  elseif outcome == 'success' then
    if ARGV[15] == '1' and slowRate < 100 then
      transition('OPEN', 'probeSlow', now)
    else
      probesOk = probesOk + 1
      dirty = true
      if probesOk >= halfMax then transition('CLOSED', 'probesSucceeded', now) end
    end
  end
end
save()
return view(code)
`,
);

/**
 * Forces a state fleet-wide: FORCED_OPEN and DISABLED persist until a reset, CLOSED starts an
 * empty window. ARGV[12] target state, [13] reason.
 */
export const ADMIN_SCRIPT = new RedisScript(
  'breaker-admin',
  `${PRELUDE}
refresh()
transition(ARGV[12], ARGV[13], now)
save()
return view('ok')
`,
);
