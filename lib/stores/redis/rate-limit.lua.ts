/*
 * The rate-limit decisions as one Lua script: every limit of a decision is checked, then (when
 * all pass) charged, in one atomic step on the server. One call may carry several decisions of
 * the same limits and mode (those a process makes in the same turn of its event loop): they run one after the
 * other, each with its own keys and cost, on one reading of the clock. The arithmetic mirrors
 * lib/policies/rate-limit/algorithms.ts line by line (same operations in the same order on IEEE
 * doubles, so the memory store and Redis give the same decisions); keep the two in step.
 *
 * The script is written for Redis's CPU. Measured in instructions (callgrind, Redis 7.0), a lone
 * one-limit token-bucket decision costs about 73k: the call with its arguments 19k, `TIME` 12k,
 * `SET … PX` 14k, `GET` 3k, each `tonumber` 1.5–2k (a `strtod`), each closure defined 2k with
 * its upvalues, a small table 1–4k. So a call's fixed cost (`EVALSHA`, `TIME`, reading the
 * limits) is paid once for all its decisions (34k per decision in calls of 32); each limit is
 * read once and a consume's charge is computed from the check's values; no function is defined;
 * no table is built for one limit; `tonumber` runs only where an algorithm needs it.
 *
 * KEYS      the keys of decision d (1..D) are KEYS[(d-1)n+1 .. dn], one per limit. Each holds
 *           the state of its limit: for the O(1) algorithms a string, the algorithm's code
 *           followed by its state as little-endian doubles; for the sliding log a list of
 *           timestamps (one per admitted unit, oldest first, each a little-endian double). A key
 *           of the other of these two types (the limit changed algorithm) reads as absent; any
 *           other type fails that decision alone with WRONGTYPE.
 * ARGV[1]   mode: 'c' consume, 'p' peek, 'r' refund.
 * ARGV[2]   n, the number of limits; D = #KEYS / n decisions (1 when n = 0).
 * ARGV[4i-1..4i+2]  limit i: algorithm code, limit, window (ms), burst.
 * ARGV[2+4n+d]      the cost of decision d.
 * ARGV[3+4n+D]      absent: the clock is Redis `TIME`; a number (ms) only in the store's own tests.
 *
 * Reply: one string of little-endian numbers (exact, no decimal formatting on either side): now,
 * then per decision either allowed (one byte, 1|0), retryAfterMs (inf: never) and per limit
 * remaining and resetMs; or the byte 2, a 4-byte length and the Redis error of that decision.
 * Keys expire when their limit is full again (then their state equals an absent key).
 *
 * Needs Redis ≥ 5: a script that reads `TIME` and then writes relies on effects replication,
 * the default since Redis 5.
 */

/** The code that stands for each algorithm in the script's arguments and stored state. */
export const ALGORITHM_CODES = Object.freeze({
  'token-bucket': 't',
  gcra: 'g',
  'fixed-window': 'f',
  'sliding-window-counter': 'c',
  'sliding-window-log': 'l',
} as const);

/** The rate-limit script (see the file comment for its keys, arguments and reply). */
export const RATE_LIMIT_SCRIPT = String.raw`
local TOL = 1e-9
local MAX_SLACK = 1e-3
local function slack(capacity)
  local units = capacity * TOL
  if units < MAX_SLACK then return units end
  return MAX_SLACK
end
local INF = math.huge
local floor = math.floor
local ceil = math.ceil
local tonumber = tonumber
local pack = struct.pack
local unpack_ = struct.unpack
local call = redis.call
local pcall_ = redis.pcall
local KEYS = KEYS
local ARGV = ARGV

local mode = ARGV[1]
local charging = mode == 'c'
-- counts and costs are nearly always 1: compare strings rather than run strtod
local n = 1
if ARGV[2] ~= '1' then n = tonumber(ARGV[2]) end
-- the number of decisions (a decision without limits comes alone)
local D = 1
if n > 0 then D = #KEYS / n end
local now
local margin = 1
local clock = ARGV[3 + 4 * n + D]
if clock then
  now = tonumber(clock)
  -- a test clock runs apart from the server's: keep keys long enough not to expire early
  margin = 3600000
else
  local t = call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- the limits, read once for every decision: code, limit, window (ms), burst (t and g only);
-- one limit in locals, several in L
local code1, limit1, window1, burst1
local L
for i = 1, n do
  local b = 4 * i - 1
  local code = ARGV[b]
  local limit = tonumber(ARGV[b + 1])
  local windowMs = tonumber(ARGV[b + 2])
  local burst = 0
  if code == 't' or code == 'g' then burst = tonumber(ARGV[b + 3]) end
  if n == 1 then
    code1, limit1, window1, burst1 = code, limit, windowMs, burst
  else
    if i == 1 then L = {} end
    L[b - 2] = code; L[b - 1] = limit; L[b] = windowMs; L[b + 1] = burst
  end
end

-- several limits: a decision's replies per limit, and what each limit writes once every limit of
-- the decision has been read and checked
local out, pending
if n ~= 1 then
  out = {}
  pending = {}
end
-- several decisions: each one's reply
local parts, piece
if D > 1 then parts = {} end
-- the limit at hand (with one limit, still its values after the loop): whether it writes (its
-- refund, or its charge if the decision passes), its key and code; the log's length, expired
-- entries at its head, whether the key holds the other layout, entries a refund keeps; the new
-- state (the log: one entry), when the limit is full again, and the units then left
local writes, key, code, total, expired, other, kept, payload, fullAt, left

for d = 1, D do
  local cost = 1
  local costArg = ARGV[2 + 4 * n + d]
  if costArg ~= '1' then cost = tonumber(costArg) end
  local c = cost
  if mode == 'r' then c = 0 end
  local allowed = true
  local retry = 0
  -- a Redis error of this decision alone (one of its keys holds another type)
  local failure
  local remaining, resetMs

  for i = 1, n do
    local limit, windowMs, burst
    if L then
      local b = 4 * i - 4
      code, limit, windowMs, burst = L[b + 1], L[b + 2], L[b + 3], L[b + 4]
    else
      code, limit, windowMs, burst = code1, limit1, window1, burst1
    end
    key = KEYS[(d - 1) * n + i]
    total, expired, other, kept = 0, 0, false, 0
    payload, fullAt, left = nil, nil, nil

    -- read the state: raw (the O(1) algorithms), or the log's length, expired head and newest entry
    local raw
    local newest = 0
    if code == 'l' then
      local size = pcall_('LLEN', key)
      if type(size) == 'table' then
        if call('TYPE', key).ok ~= 'string' then failure = size.err; break end
        other = true
      elseif size > 0 then
        local horizon = now - windowMs
        total = size
        while expired < total and unpack_('<d', call('LINDEX', key, expired)) <= horizon do expired = expired + 1 end
        if expired < total then newest = unpack_('<d', call('LINDEX', key, -1)) end
      end
    else
      raw = pcall_('GET', key)
      if type(raw) == 'table' then
        if call('TYPE', key).ok ~= 'list' then failure = raw.err; break end
        raw = false
      end
    end

    -- refund: give up to cost units back, never beyond a full limit. Otherwise check whether c
    -- units pass now and, when they do, compute the charged state.
    local refunding = false
    local ok, wait = true, 0
    if code == 't' then
      local s1, s2 = 0, 0
      if raw and #raw == 17 then
        local tag
        tag, s1, s2 = unpack_('<Bdd', raw)
        if tag ~= 116 then s1, s2 = 0, 0 else refunding = mode == 'r' end
      end
      local rate = limit / windowMs
      local elapsed = now - s2
      local deficit = s1
      if elapsed > 0 then deficit = s1 - elapsed * rate end
      if not (deficit > 0) then deficit = 0 end
      local updatedAt = s2
      if now > updatedAt then updatedAt = now end
      if refunding then
        deficit = deficit - cost
        if not (deficit > 0) then deficit = 0 end
      else
        local available = burst - deficit
        remaining = floor(available + slack(burst))
        if remaining < 0 then remaining = 0 elseif remaining > burst then remaining = burst end
        resetMs = deficit / rate
        if c > burst then ok = false; wait = INF
        elseif c > available + slack(burst) then ok = false; wait = (c - available) / rate
        else deficit = deficit + cost end
      end
      if refunding or (charging and ok) then
        fullAt = updatedAt + deficit / rate
        left = floor(burst - deficit + slack(burst))
        if left < 0 then left = 0 elseif left > burst then left = burst end
        payload = pack('<Bdd', 116, deficit, updatedAt)
      end
    elseif code == 'g' then
      local tat = 0
      if raw and #raw == 9 then
        local tag
        tag, tat = unpack_('<Bd', raw)
        if tag ~= 103 then tat = 0 else refunding = mode == 'r' end
      end
      local interval = windowMs / limit
      local tolerance = burst * interval
      if not (tat > now) then tat = now end
      if refunding then
        tat = tat - cost * interval
        if not (tat > now) then tat = now end
      else
        remaining = floor((now + tolerance - tat) / interval + slack(burst))
        if remaining < 0 then remaining = 0 elseif remaining > burst then remaining = burst end
        resetMs = tat - now
        if c > burst then ok = false; wait = INF
        else
          local w = tat + c * interval - tolerance - now
          if w <= interval * slack(burst) then tat = tat + cost * interval else ok = false; wait = w end
        end
      end
      if refunding or (charging and ok) then
        fullAt = tat
        left = floor((now + tolerance - tat) / interval + slack(burst))
        if left < 0 then left = 0 elseif left > burst then left = burst end
        payload = pack('<Bd', 103, tat)
      end
    elseif code == 'f' then
      local s1, s2 = 0, 0
      if raw and #raw == 17 then
        local tag
        tag, s1, s2 = unpack_('<Bdd', raw)
        if tag ~= 102 then s1, s2 = 0, 0 else refunding = mode == 'r' end
      end
      local index = floor(now / windowMs)
      local count = 0
      if index <= s1 then index = s1; count = s2 end
      local windowEnd = (index + 1) * windowMs
      if refunding then
        if count > cost then count = count - cost else count = 0 end
        if count > 0 then fullAt = windowEnd else fullAt = now end
      else
        remaining = limit - count
        if not (remaining > 0) then remaining = 0 end
        if count > 0 then resetMs = windowEnd - now else resetMs = 0 end
        if c > limit then ok = false; wait = INF
        elseif count + c > limit then ok = false; wait = windowEnd - now
        else count = count + cost; fullAt = windowEnd end
      end
      if refunding or (charging and ok) then
        left = limit - count
        if not (left > 0) then left = 0 end
        payload = pack('<Bdd', 102, index, count)
      end
    elseif code == 'c' then
      local s1, s2, s3 = 0, 0, 0
      if raw and #raw == 25 then
        local tag
        tag, s1, s2, s3 = unpack_('<Bddd', raw)
        if tag ~= 99 then s1, s2, s3 = 0, 0, 0 else refunding = mode == 'r' end
      end
      local index = floor(now / windowMs)
      local previous, current = 0, 0
      if index <= s1 then index = s1; previous = s2; current = s3
      elseif index == s1 + 1 then previous = s3 end
      local start = index * windowMs
      local elapsed = (now - start) / windowMs
      if elapsed < 0 then elapsed = 0 end
      if refunding then
        -- the refunded units were charged most recently: take them from this window first
        if current >= cost then
          current = current - cost
        else
          if previous > cost - current then previous = previous - (cost - current) else previous = 0 end
          current = 0
        end
        if current > 0 then fullAt = start + 2 * windowMs
        elseif previous > 0 then fullAt = start + windowMs
        else fullAt = now end
      else
        local estimate = previous * (1 - elapsed) + current
        remaining = floor(limit - estimate + slack(limit))
        if remaining < 0 then remaining = 0 elseif remaining > limit then remaining = limit end
        if current > 0 then resetMs = start + 2 * windowMs - now
        elseif previous > 0 then resetMs = start + windowMs - now
        else resetMs = 0 end
        if c > limit then ok = false; wait = INF
        elseif estimate + c <= limit + slack(limit) then current = current + cost; fullAt = start + 2 * windowMs
        elseif current + c <= limit then ok = false; wait = start + windowMs * (1 - (limit - current - c) / previous) - now
        else ok = false; wait = start + windowMs * (2 - (limit - c) / current) - now end
      end
      if refunding or (charging and ok) then
        left = floor(limit - previous * (1 - elapsed) - current + slack(limit))
        if left < 0 then left = 0 elseif left > limit then left = limit end
        payload = pack('<Bddd', 99, index, previous, current)
      end
    elseif code == 'l' then
      local count = total - expired
      refunding = mode == 'r' and total > 0
      if refunding then
        -- the refunded units were charged most recently: keep the oldest live entries
        if count > cost then kept = count - cost end
        if kept > 0 then fullAt = unpack_('<d', call('LINDEX', key, expired + kept - 1)) + windowMs else fullAt = now end
        count = kept
      else
        if limit > count then remaining = limit - count else remaining = 0 end
        if count > 0 then resetMs = newest + windowMs - now else resetMs = 0 end
        if c > limit then ok = false; wait = INF
        elseif count + c > limit then
          ok = false
          wait = unpack_('<d', call('LINDEX', key, expired + count + c - limit - 1)) + windowMs - now
        elseif charging then
          local stamp = now
          if count > 0 and newest > stamp then stamp = newest end
          payload = pack('<d', stamp)
          fullAt = stamp + windowMs
          count = count + cost
        end
      end
      left = limit - count
      if not (left > 0) then left = 0 end
    else
      return redis.error_reply('ERR nest-resilience: unknown algorithm code ' .. tostring(code))
    end

    if refunding then
      remaining = left
      resetMs = fullAt - now
    elseif not ok then
      allowed = false
      if wait > retry then retry = wait end
    end
    writes = refunding or (charging and ok)
    if pending then
      local p = 10 * i - 10
      pending[p + 1] = writes; pending[p + 2] = key; pending[p + 3] = code; pending[p + 4] = total; pending[p + 5] = expired
      pending[p + 6] = other; pending[p + 7] = kept; pending[p + 8] = payload; pending[p + 9] = fullAt; pending[p + 10] = left
      out[2 * i - 1] = remaining
      out[2 * i] = resetMs
    end
  end

  if failure then
    if D == 1 then return pack('<dBI4', now, 2, #failure) .. failure end
    piece = pack('<BI4', 2, #failure) .. failure
  else
    if mode == 'r' or (charging and allowed) then
      -- every limit has been read and checked: write refunds, or charge every limit
      for i = 1, n do
        if pending then
          local p = 10 * i - 10
          writes, key, code, total, expired = pending[p + 1], pending[p + 2], pending[p + 3], pending[p + 4], pending[p + 5]
          other, kept, payload, fullAt, left = pending[p + 6], pending[p + 7], pending[p + 8], pending[p + 9], pending[p + 10]
          if charging then
            out[2 * i - 1] = left
            out[2 * i] = fullAt - now
          end
        elseif charging then
          remaining = left
          resetMs = fullAt - now
        end
        if writes then
          local ttl = ceil(fullAt - now) + margin
          if code ~= 'l' then
            if charging or fullAt > now then call('SET', key, payload, 'PX', ttl) else call('DEL', key) end
          elseif not charging then
            if kept > 0 then
              call('LTRIM', key, expired, expired + kept - 1)
              if fullAt > now then call('PEXPIRE', key, ttl) end
            else
              call('DEL', key)
            end
          else
            if other or (expired > 0 and expired >= total) then call('DEL', key)
            elseif expired > 0 then call('LTRIM', key, expired, -1) end
            if cost == 1 then
              call('RPUSH', key, payload)
            else
              local size = cost
              if size > 512 then size = 512 end
              local chunk = {}
              for j = 1, size do chunk[j] = payload end
              local rest = cost
              while rest > 0 do
                if rest < size then
                  for j = rest + 1, size do chunk[j] = nil end
                  size = rest
                end
                call('RPUSH', key, unpack(chunk))
                rest = rest - size
              end
            end
            call('PEXPIRE', key, ttl)
          end
        end
      end
    end
    local flag = 1
    if mode ~= 'r' and not allowed then flag = 0 else retry = 0 end
    -- a lone decision answers at once, in one string
    if D == 1 then
      if n == 1 then return pack('<dBddd', now, flag, retry, remaining, resetMs) end
      return pack('<dBd' .. string.rep('d', 2 * n), now, flag, retry, unpack(out))
    end
    if n == 1 then piece = pack('<Bddd', flag, retry, remaining, resetMs)
    else piece = pack('<Bd' .. string.rep('d', 2 * n), flag, retry, unpack(out)) end
  end
  if parts then parts[d] = piece end
end
return pack('<d', now) .. table.concat(parts)
`;
