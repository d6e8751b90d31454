/*
 * The rate-limit decision as one Lua script: every limit of a call is checked, then (when all
 * pass) charged, in one atomic step on the server. The arithmetic mirrors
 * lib/policies/rate-limit/algorithms.ts line by line (same operations in the same order on IEEE
 * doubles, so the memory store and Redis give the same decisions); keep the two in step. The
 * code is written inline, without helper functions: a script's body runs on every call, and
 * every function it defines is a closure allocated per call.
 *
 * KEYS[i]   the state of limit i: for the O(1) algorithms a string, the algorithm's code followed
 *           by its state as little-endian doubles; for the sliding log a list of timestamps (one
 *           per admitted unit, oldest first, each a little-endian double). A key of the other of
 *           these two types (the limit changed algorithm) reads as absent; any other type raises
 *           WRONGTYPE.
 * ARGV[1]   '' to read the clock from Redis `TIME`; a number (ms) only in the store's own tests.
 * ARGV[2]   mode: 'c' consume, 'p' peek, 'r' refund.
 * ARGV[3]   cost.
 * ARGV[4+4(i-1)..7+4(i-1)]  limit i: algorithm code, limit, window (ms), burst.
 *
 * Reply: one string of little-endian doubles (exact, no decimal formatting on either side):
 * allowed (one byte, 1|0), retryAfterMs (inf: never), now, then per limit remaining and resetMs.
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
local INF = math.huge
local floor = math.floor
local ceil = math.ceil
local tonumber = tonumber
local pack = struct.pack
local unpack_ = struct.unpack
local call = redis.call
local KEYS = KEYS
local ARGV = ARGV

local now
local margin = 1
if ARGV[1] == '' then
  local t = call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
  -- a test clock runs apart from the server's: keep keys long enough not to expire early
  margin = 3600000
end
local mode = ARGV[2]
local cost = tonumber(ARGV[3])
local n = #KEYS

-- the only helper: whole units available, within [0, capacity]
local function whole(units, capacity)
  local w = floor(units + capacity * TOL)
  if w < 0 then return 0 elseif w > capacity then return capacity end
  return w
end

-- state of limit i in S[3i-2..3i] (the log: entries, expired entries at the head);
-- F[i]: 0 absent, 1 present, 2 the key holds the other layout (the limit changed algorithm)
local S, F = {}, {}
for i = 1, n do
  local base = 4 * i
  local code = ARGV[base]
  local key = KEYS[i]
  local b = 3 * i - 3
  S[b + 1] = 0; S[b + 2] = 0; S[b + 3] = 0
  F[i] = 0
  if code == 'l' then
    local total = redis.pcall('LLEN', key)
    if type(total) == 'table' then
      if call('TYPE', key).ok ~= 'string' then return total end
      F[i] = 2
    elseif total > 0 then
      local horizon = now - tonumber(ARGV[base + 2])
      local expired = 0
      while expired < total and unpack_('<d', call('LINDEX', key, expired)) <= horizon do expired = expired + 1 end
      S[b + 1] = total; S[b + 2] = expired
      F[i] = 1
    end
  else
    local raw = redis.pcall('GET', key)
    if type(raw) == 'table' then
      if call('TYPE', key).ok ~= 'list' then return raw end
      F[i] = 2
    elseif raw and string.byte(raw, 1) == string.byte(code, 1) then
      local size = #raw
      if code == 'c' then
        if size == 25 then S[b + 1], S[b + 2], S[b + 3] = unpack_('<ddd', raw, 2); F[i] = 1 end
      elseif code == 'g' then
        if size == 9 then S[b + 1] = unpack_('<d', raw, 2); F[i] = 1 end
      elseif size == 17 then
        S[b + 1], S[b + 2] = unpack_('<dd', raw, 2); F[i] = 1
      end
    end
  end
end

-- reply values: allowed, retryAfterMs, now, then remaining and resetMs per limit
local out = { 1, 0, now }
local allowed = true
local retry = 0

for i = 1, n do
  local base = 4 * i
  local code = ARGV[base]
  local limit = tonumber(ARGV[base + 1])
  local windowMs = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  local key = KEYS[i]
  local b = 3 * i - 3
  local remaining, resetMs
  if mode == 'r' and F[i] == 1 then
    -- refund: give up to cost units back, never beyond a full limit
    local fullAt
    if code == 't' then
      local rate = limit / windowMs
      local elapsed = now - S[b + 2]
      local d = S[b + 1]
      if elapsed > 0 then d = S[b + 1] - elapsed * rate end
      if not (d > 0) then d = 0 end
      local left = d - cost
      local deficit = 0
      if left > 0 then deficit = left end
      local updatedAt = S[b + 2]
      if now > updatedAt then updatedAt = now end
      S[b + 1] = deficit; S[b + 2] = updatedAt
      fullAt = updatedAt + deficit / rate
      remaining = whole(burst - deficit, burst)
    elseif code == 'g' then
      local interval = windowMs / limit
      local base = S[b + 1]
      if not (base > now) then base = now end
      local tat = base - cost * interval
      if not (tat > now) then tat = now end
      S[b + 1] = tat
      fullAt = tat
      remaining = whole((now + burst * interval - tat) / interval, burst)
    elseif code == 'f' then
      local index = floor(now / windowMs)
      local count = 0
      if index <= S[b + 1] then
        index = S[b + 1]
        if S[b + 2] > cost then count = S[b + 2] - cost end
      end
      S[b + 1] = index; S[b + 2] = count
      if count > 0 then fullAt = (index + 1) * windowMs else fullAt = now end
      remaining = limit - count
      if not (remaining > 0) then remaining = 0 end
    elseif code == 'c' then
      local index = floor(now / windowMs)
      local previous, current = 0, 0
      if index <= S[b + 1] then index = S[b + 1]; previous = S[b + 2]; current = S[b + 3]
      elseif index == S[b + 1] + 1 then previous = S[b + 3] end
      if current >= cost then
        current = current - cost
      else
        if previous > cost - current then previous = previous - (cost - current) else previous = 0 end
        current = 0
      end
      S[b + 1] = index; S[b + 2] = previous; S[b + 3] = current
      local start = index * windowMs
      local elapsed = (now - start) / windowMs
      if elapsed < 0 then elapsed = 0 end
      remaining = whole(limit - previous * (1 - elapsed) - current, limit)
      if current > 0 then fullAt = start + 2 * windowMs
      elseif previous > 0 then fullAt = start + windowMs
      else fullAt = now end
    else
      local total, expired = S[b + 1], S[b + 2]
      local count = total - expired
      local kept = 0
      if count > cost then kept = count - cost end
      if kept > 0 then
        call('LTRIM', key, expired, expired + kept - 1)
        fullAt = unpack_('<d', call('LINDEX', key, kept - 1)) + windowMs
      else
        call('DEL', key)
        fullAt = now
      end
      remaining = limit - kept
      if not (remaining > 0) then remaining = 0 end
    end
    resetMs = fullAt - now
    if code == 'l' then
      if fullAt > now then call('PEXPIRE', key, ceil(fullAt - now) + margin) end
    elseif fullAt > now then
      if code == 'c' then call('SET', key, 'c' .. pack('<ddd', S[b + 1], S[b + 2], S[b + 3]), 'PX', ceil(fullAt - now) + margin)
      elseif code == 'g' then call('SET', key, 'g' .. pack('<d', S[b + 1]), 'PX', ceil(fullAt - now) + margin)
      else call('SET', key, code .. pack('<dd', S[b + 1], S[b + 2]), 'PX', ceil(fullAt - now) + margin) end
    else
      call('DEL', key)
    end
  else
    -- check: whether a call of c units passes now; never writes
    local c = cost
    if mode == 'r' then c = 0 end
    local ok, wait
    if code == 't' then
      local rate = limit / windowMs
      local capacity = burst
      local elapsed = now - S[b + 2]
      local deficit = S[b + 1]
      if elapsed > 0 then deficit = S[b + 1] - elapsed * rate end
      if not (deficit > 0) then deficit = 0 end
      local available = capacity - deficit
      remaining = whole(available, capacity)
      resetMs = deficit / rate
      if c > capacity then ok = false; wait = INF
      elseif c <= available + capacity * TOL then ok = true
      else ok = false; wait = (c - available) / rate end
    elseif code == 'g' then
      local interval = windowMs / limit
      local tolerance = burst * interval
      local tat = S[b + 1]
      if not (tat > now) then tat = now end
      remaining = whole((now + tolerance - tat) / interval, burst)
      resetMs = tat - now
      if c > burst then ok = false; wait = INF
      else
        local w = tat + c * interval - tolerance - now
        if w <= tolerance * TOL then ok = true else ok = false; wait = w end
      end
    elseif code == 'f' then
      local index = floor(now / windowMs)
      local count = 0
      if index <= S[b + 1] then index = S[b + 1]; count = S[b + 2] end
      remaining = limit - count
      if not (remaining > 0) then remaining = 0 end
      if count > 0 then resetMs = (index + 1) * windowMs - now else resetMs = 0 end
      if c > limit then ok = false; wait = INF
      elseif count + c <= limit then ok = true
      else ok = false; wait = (index + 1) * windowMs - now end
    elseif code == 'c' then
      local index = floor(now / windowMs)
      local previous, current = 0, 0
      if index <= S[b + 1] then index = S[b + 1]; previous = S[b + 2]; current = S[b + 3]
      elseif index == S[b + 1] + 1 then previous = S[b + 3] end
      local start = index * windowMs
      local elapsed = (now - start) / windowMs
      if elapsed < 0 then elapsed = 0 end
      local estimate = previous * (1 - elapsed) + current
      remaining = whole(limit - estimate, limit)
      if current > 0 then resetMs = start + 2 * windowMs - now
      elseif previous > 0 then resetMs = start + windowMs - now
      else resetMs = 0 end
      if c > limit then ok = false; wait = INF
      elseif estimate + c <= limit + limit * TOL then ok = true
      elseif current + c <= limit then ok = false; wait = start + windowMs * (1 - (limit - current - c) / previous) - now
      else ok = false; wait = start + windowMs * (2 - (limit - c) / current) - now end
    elseif code == 'l' then
      local total, expired = S[b + 1], S[b + 2]
      local count = total - expired
      if limit > count then remaining = limit - count else remaining = 0 end
      if count > 0 then resetMs = unpack_('<d', call('LINDEX', key, -1)) + windowMs - now else resetMs = 0 end
      if c > limit then ok = false; wait = INF
      elseif count + c <= limit then ok = true
      else
        ok = false
        wait = unpack_('<d', call('LINDEX', key, expired + count + c - limit - 1)) + windowMs - now
      end
    else
      return redis.error_reply('ERR nest-resilience: unknown algorithm code ' .. tostring(code))
    end
    if not ok then
      allowed = false
      if wait > retry then retry = wait end
    end
  end
  out[2 + 2 * i] = remaining
  out[3 + 2 * i] = resetMs
end

if mode ~= 'r' and not allowed then
  out[1] = 0
  out[2] = retry
elseif mode == 'c' then
  -- charge: every limit had room
  for i = 1, n do
    local base = 4 * i
    local code = ARGV[base]
    local limit = tonumber(ARGV[base + 1])
    local windowMs = tonumber(ARGV[base + 2])
    local burst = tonumber(ARGV[base + 3])
    local key = KEYS[i]
    local b = 3 * i - 3
    local remaining, fullAt
    if F[i] == 2 then call('DEL', key) end
    if code == 't' then
      local rate = limit / windowMs
      local elapsed = now - S[b + 2]
      local d = S[b + 1]
      if elapsed > 0 then d = S[b + 1] - elapsed * rate end
      if not (d > 0) then d = 0 end
      local deficit = d + cost
      local updatedAt = S[b + 2]
      if now > updatedAt then updatedAt = now end
      fullAt = updatedAt + deficit / rate
      remaining = whole(burst - deficit, burst)
      call('SET', key, 't' .. pack('<dd', deficit, updatedAt), 'PX', ceil(fullAt - now) + margin)
    elseif code == 'g' then
      local interval = windowMs / limit
      local base = S[b + 1]
      if not (base > now) then base = now end
      local tat = base + cost * interval
      fullAt = tat
      remaining = whole((now + burst * interval - tat) / interval, burst)
      call('SET', key, 'g' .. pack('<d', tat), 'PX', ceil(fullAt - now) + margin)
    elseif code == 'f' then
      local index = floor(now / windowMs)
      local count = 0
      if index <= S[b + 1] then index = S[b + 1]; count = S[b + 2] end
      count = count + cost
      fullAt = (index + 1) * windowMs
      remaining = limit - count
      if not (remaining > 0) then remaining = 0 end
      call('SET', key, 'f' .. pack('<dd', index, count), 'PX', ceil(fullAt - now) + margin)
    elseif code == 'c' then
      local index = floor(now / windowMs)
      local previous, current = 0, 0
      if index <= S[b + 1] then index = S[b + 1]; previous = S[b + 2]; current = S[b + 3]
      elseif index == S[b + 1] + 1 then previous = S[b + 3] end
      current = current + cost
      local start = index * windowMs
      local elapsed = (now - start) / windowMs
      if elapsed < 0 then elapsed = 0 end
      remaining = whole(limit - previous * (1 - elapsed) - current, limit)
      fullAt = start + 2 * windowMs
      call('SET', key, 'c' .. pack('<ddd', index, previous, current), 'PX', ceil(fullAt - now) + margin)
    else
      local total, expired = S[b + 1], S[b + 2]
      if expired > 0 then
        if expired >= total then call('DEL', key) else call('LTRIM', key, expired, -1) end
      end
      local count = total - expired
      local stamp = now
      if count > 0 then
        local newest = unpack_('<d', call('LINDEX', key, -1))
        if newest > stamp then stamp = newest end
      end
      local entry = pack('<d', stamp)
      if cost == 1 then
        call('RPUSH', key, entry)
      else
        local size = cost
        if size > 512 then size = 512 end
        local chunk = {}
        for j = 1, size do chunk[j] = entry end
        local left = cost
        while left > 0 do
          if left < size then
            for j = left + 1, size do chunk[j] = nil end
            size = left
          end
          call('RPUSH', key, unpack(chunk))
          left = left - size
        end
      end
      remaining = limit - (count + cost)
      if not (remaining > 0) then remaining = 0 end
      fullAt = stamp + windowMs
      call('PEXPIRE', key, ceil(fullAt - now) + margin)
    end
    out[2 + 2 * i] = remaining
    out[3 + 2 * i] = fullAt - now
  end
end
if n == 1 then return pack('<Bdddd', out[1], out[2], now, out[4], out[5]) end
return pack('<Bd' .. string.rep('d', 1 + 2 * n), unpack(out))
`;
