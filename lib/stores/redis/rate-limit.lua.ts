/*
 * The rate-limit decision as one Lua script: every limit of a call is checked, then (when all
 * pass) charged, in one atomic step on the server. The arithmetic mirrors
 * lib/policies/rate-limit/algorithms.ts line by line (same operations in the same order on IEEE
 * doubles, so the memory store and Redis give the same decisions); keep the two in step.
 *
 * KEYS[i]   the state of limit i: a string `<code>:<n>:<n>…` for the O(1) algorithms, a list of
 *           timestamps (one per admitted unit, oldest first) for the sliding log. A key of the
 *           other of these two types (the limit changed algorithm) reads as absent; any other type
 *           raises WRONGTYPE.
 * ARGV[1]   '' to read the clock from Redis `TIME`; a number (ms) only in the store's own tests.
 * ARGV[2]   mode: 'c' consume, 'p' peek, 'r' refund.
 * ARGV[3]   cost.
 * ARGV[4+4(i-1)..7+4(i-1)]  limit i: algorithm code, limit, window (ms), burst.
 *
 * Reply: { allowed (1|0), retryAfterMs ('-1': never), now, remaining_1, resetMs_1, … } with
 * numbers as strings printed with 17 significant digits (exact round trip of a double).
 * Keys expire when their limit is full again (then their state equals an absent key).
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
if redis.replicate_commands then redis.replicate_commands() end
local TOL = 1e-9
local INF = math.huge
local floor = math.floor
local ceil = math.ceil
local tonumber = tonumber
local fmt = string.format

local now
local margin = 1
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
  -- a test clock runs apart from the server's: keep keys long enough not to expire early
  margin = 3600000
end
local mode = ARGV[2]
local cost = tonumber(ARGV[3])
local n = #KEYS

local function num(x) return fmt('%.17g', x) end

local function whole(units, capacity)
  local w = floor(units + capacity * TOL)
  if w < 0 then return 0 elseif w > capacity then return capacity end
  return w
end

-- out = { allowed, remaining, resetMs, retryAfterMs }

-- Token bucket. State: [deficit, updatedAt].
local function bucket_deficit(s, rate)
  local elapsed = now - s[2]
  local d
  if elapsed > 0 then d = s[1] - elapsed * rate else d = s[1] end
  if d > 0 then return d end
  return 0
end

local function tb_check(s, limit, windowMs, burst, c, out)
  local rate = limit / windowMs
  local capacity = burst
  local deficit = bucket_deficit(s, rate)
  local available = capacity - deficit
  out[2] = whole(available, capacity)
  out[3] = deficit / rate
  if c > capacity then out[1] = false; out[4] = INF
  elseif c <= available + capacity * TOL then out[1] = true; out[4] = 0
  else out[1] = false; out[4] = (c - available) / rate end
end

local function tb_update(s, limit, windowMs, burst, delta, out)
  local rate = limit / windowMs
  local deficit
  if delta > 0 then
    deficit = bucket_deficit(s, rate) + delta
  else
    local left = bucket_deficit(s, rate) + delta
    if left > 0 then deficit = left else deficit = 0 end
  end
  local updatedAt = s[2]
  if now > updatedAt then updatedAt = now end
  s[1] = deficit
  s[2] = updatedAt
  local fullAt = updatedAt + deficit / rate
  out[2] = whole(burst - deficit, burst)
  out[3] = fullAt - now
  return fullAt
end

-- GCRA. State: [tat].
local function gcra_check(s, limit, windowMs, burst, c, out)
  local interval = windowMs / limit
  local tolerance = burst * interval
  local tat = s[1]
  if not (tat > now) then tat = now end
  out[2] = whole((now + tolerance - tat) / interval, burst)
  out[3] = tat - now
  if c > burst then out[1] = false; out[4] = INF; return end
  local wait = tat + c * interval - tolerance - now
  if wait <= tolerance * TOL then out[1] = true; out[4] = 0 else out[1] = false; out[4] = wait end
end

local function gcra_charge(s, limit, windowMs, burst, c, out)
  local interval = windowMs / limit
  local base = s[1]
  if not (base > now) then base = now end
  local tat = base + c * interval
  s[1] = tat
  out[2] = whole((now + burst * interval - tat) / interval, burst)
  out[3] = tat - now
  return tat
end

local function gcra_refund(s, limit, windowMs, burst, c, out)
  local interval = windowMs / limit
  local base = s[1]
  if not (base > now) then base = now end
  local earlier = base - c * interval
  local tat = earlier
  if not (earlier > now) then tat = now end
  s[1] = tat
  out[2] = whole((now + burst * interval - tat) / interval, burst)
  out[3] = tat - now
  return tat
end

-- Fixed window. State: [windowIndex, count].
local function fw_check(s, limit, windowMs, c, out)
  local index = floor(now / windowMs)
  local count = 0
  if index <= s[1] then index = s[1]; count = s[2] end
  local left = limit - count
  if left > 0 then out[2] = left else out[2] = 0 end
  if count > 0 then out[3] = (index + 1) * windowMs - now else out[3] = 0 end
  if c > limit then out[1] = false; out[4] = INF
  elseif count + c <= limit then out[1] = true; out[4] = 0
  else out[1] = false; out[4] = (index + 1) * windowMs - now end
end

local function fw_charge(s, limit, windowMs, c, out)
  local index = floor(now / windowMs)
  local count = 0
  if index <= s[1] then index = s[1]; count = s[2] end
  count = count + c
  s[1] = index
  s[2] = count
  local e = (index + 1) * windowMs
  local left = limit - count
  if left > 0 then out[2] = left else out[2] = 0 end
  out[3] = e - now
  return e
end

local function fw_refund(s, limit, windowMs, c, out)
  local index = floor(now / windowMs)
  local count = 0
  if index <= s[1] then
    index = s[1]
    if s[2] > c then count = s[2] - c else count = 0 end
  end
  s[1] = index
  s[2] = count
  local fullAt
  if count > 0 then fullAt = (index + 1) * windowMs else fullAt = now end
  local left = limit - count
  if left > 0 then out[2] = left else out[2] = 0 end
  out[3] = fullAt - now
  return fullAt
end

-- Sliding window counter. State: [windowIndex, previous, current].
local function swc_load(s, windowMs)
  local index = floor(now / windowMs)
  local previous = 0
  local current = 0
  if index <= s[1] then
    index = s[1]; previous = s[2]; current = s[3]
  elseif index == s[1] + 1 then
    previous = s[3]
  end
  return index, previous, current
end

local function swc_check(s, limit, windowMs, c, out)
  local index, previous, current = swc_load(s, windowMs)
  local start = index * windowMs
  local elapsed = (now - start) / windowMs
  if elapsed < 0 then elapsed = 0 end
  local estimate = previous * (1 - elapsed) + current
  out[2] = whole(limit - estimate, limit)
  if current > 0 then out[3] = start + 2 * windowMs - now
  elseif previous > 0 then out[3] = start + windowMs - now
  else out[3] = 0 end
  if c > limit then out[1] = false; out[4] = INF
  elseif estimate + c <= limit + limit * TOL then out[1] = true; out[4] = 0
  elseif current + c <= limit then out[1] = false; out[4] = start + windowMs * (1 - (limit - current - c) / previous) - now
  else out[1] = false; out[4] = start + windowMs * (2 - (limit - c) / current) - now end
end

local function swc_charge(s, limit, windowMs, c, out)
  local index, previous, current = swc_load(s, windowMs)
  current = current + c
  s[1] = index; s[2] = previous; s[3] = current
  local start = index * windowMs
  local elapsed = (now - start) / windowMs
  if elapsed < 0 then elapsed = 0 end
  out[2] = whole(limit - previous * (1 - elapsed) - current, limit)
  local fullAt = start + 2 * windowMs
  out[3] = fullAt - now
  return fullAt
end

local function swc_refund(s, limit, windowMs, c, out)
  local index, previous, current = swc_load(s, windowMs)
  if current >= c then
    current = current - c
  else
    if previous > c - current then previous = previous - (c - current) else previous = 0 end
    current = 0
  end
  s[1] = index; s[2] = previous; s[3] = current
  local start = index * windowMs
  local elapsed = (now - start) / windowMs
  if elapsed < 0 then elapsed = 0 end
  out[2] = whole(limit - previous * (1 - elapsed) - current, limit)
  local fullAt
  if current > 0 then fullAt = start + 2 * windowMs
  elseif previous > 0 then fullAt = start + windowMs
  else fullAt = now end
  out[3] = fullAt - now
  return fullAt
end

-- Sliding window log: the list KEYS[i], oldest first. log = { total, expired }.
local function swl_load(key, total, windowMs)
  local horizon = now - windowMs
  local expired = 0
  while expired < total and tonumber(redis.call('LINDEX', key, expired)) <= horizon do
    expired = expired + 1
  end
  return total, expired
end

local function swl_check(key, log, limit, windowMs, c, out)
  local total = log[1]
  local expired = log[2]
  local count = total - expired
  if limit > count then out[2] = limit - count else out[2] = 0 end
  if count > 0 then out[3] = tonumber(redis.call('LINDEX', key, -1)) + windowMs - now else out[3] = 0 end
  if c > limit then out[1] = false; out[4] = INF
  elseif count + c <= limit then out[1] = true; out[4] = 0
  else
    local oldest = tonumber(redis.call('LINDEX', key, expired + count + c - limit - 1))
    out[1] = false; out[4] = oldest + windowMs - now
  end
end

local function swl_prune(key, log)
  if log[2] > 0 then
    if log[2] >= log[1] then redis.call('DEL', key) else redis.call('LTRIM', key, log[2], -1) end
  end
  return log[1] - log[2]
end

local function swl_charge(key, log, limit, windowMs, c, out)
  local count = swl_prune(key, log)
  local stamp = now
  if count > 0 then
    local newest = tonumber(redis.call('LINDEX', key, -1))
    if newest > stamp then stamp = newest end
  end
  local text = num(stamp)
  local chunk = {}
  local size = c
  if size > 512 then size = 512 end
  for j = 1, size do chunk[j] = text end
  local left = c
  while left > 0 do
    if left < size then
      for j = left + 1, size do chunk[j] = nil end
      size = left
    end
    redis.call('RPUSH', key, unpack(chunk))
    left = left - size
  end
  local remaining = limit - (count + c)
  if remaining > 0 then out[2] = remaining else out[2] = 0 end
  out[3] = stamp + windowMs - now
  return stamp + windowMs
end

local function swl_refund(key, log, limit, windowMs, c, out)
  local count = swl_prune(key, log)
  local kept = 0
  if count > c then kept = count - c end
  local fullAt
  if kept > 0 then
    if kept < count then redis.call('LTRIM', key, 0, kept - 1) end
    fullAt = tonumber(redis.call('LINDEX', key, kept - 1)) + windowMs
  else
    if count > 0 then redis.call('DEL', key) end
    fullAt = now
  end
  local left = limit - kept
  if left > 0 then out[2] = left else out[2] = 0 end
  out[3] = fullAt - now
  return fullAt
end

-- Reads the state of an O(1) algorithm; nil when absent or kept by another algorithm.
local function load(raw, code)
  if not raw or string.sub(raw, 1, 1) ~= code then return nil end
  local s = {}
  local k = 0
  for part in string.gmatch(string.sub(raw, 3), '[^:]+') do
    k = k + 1
    s[k] = tonumber(part)
  end
  return s
end

local function save(key, code, s, fullAt)
  if not (fullAt > now) then
    redis.call('DEL', key)
    return
  end
  local text = code
  for k = 1, #s do text = text .. ':' .. num(s[k]) end
  redis.call('SET', key, text, 'PX', ceil(fullAt - now) + margin)
end

local function expire(key, fullAt)
  if fullAt > now then redis.call('PEXPIRE', key, ceil(fullAt - now) + margin) end
end

local codes = {}
local limits = {}
local windows = {}
local bursts = {}
local states = {}
local present = {}
local stale = {}
for i = 1, n do
  local base = 4 * i
  local code = ARGV[base]
  codes[i] = code
  limits[i] = tonumber(ARGV[base + 1])
  windows[i] = tonumber(ARGV[base + 2])
  bursts[i] = tonumber(ARGV[base + 3])
  -- A limit whose algorithm changed at run time between the log (a list) and the others (a
  -- string) finds its key of the other type: it starts afresh, its old state is dropped when
  -- charged. Any other type is not ours: the error is raised (a permanent error).
  local key = KEYS[i]
  if code == 'l' then
    local total = redis.pcall('LLEN', key)
    if type(total) == 'table' then
      if redis.call('TYPE', key).ok ~= 'string' then return total end
      stale[i] = true
      states[i] = { 0, 0 }
      present[i] = false
    else
      local expired
      total, expired = swl_load(key, total, windows[i])
      states[i] = { total, expired }
      present[i] = total > 0
    end
  else
    local raw = redis.pcall('GET', key)
    if type(raw) == 'table' then
      if redis.call('TYPE', key).ok ~= 'list' then return raw end
      stale[i] = true
      raw = false
    end
    local s = load(raw, code)
    present[i] = s ~= nil
    if s == nil then s = { 0, 0, 0 } end
    states[i] = s
  end
end

local reply = { 1, '0', num(now) }
local out = { false, 0, 0, 0 }

local function check(i, c)
  local code = codes[i]
  local s = states[i]
  if code == 't' then tb_check(s, limits[i], windows[i], bursts[i], c, out)
  elseif code == 'g' then gcra_check(s, limits[i], windows[i], bursts[i], c, out)
  elseif code == 'f' then fw_check(s, limits[i], windows[i], c, out)
  elseif code == 'c' then swc_check(s, limits[i], windows[i], c, out)
  elseif code == 'l' then swl_check(KEYS[i], s, limits[i], windows[i], c, out)
  else return redis.error_reply('ERR nest-resilience: unknown algorithm code ' .. tostring(code)) end
end

if mode == 'r' then
  for i = 1, n do
    local code = codes[i]
    local s = states[i]
    local key = KEYS[i]
    if not present[i] then
      -- a limit without state is full: nothing to give back
      local e = check(i, 0)
      if e then return e end
    elseif code == 't' then save(key, code, s, tb_update(s, limits[i], windows[i], bursts[i], -cost, out))
    elseif code == 'g' then save(key, code, s, gcra_refund(s, limits[i], windows[i], bursts[i], cost, out))
    elseif code == 'f' then save(key, code, s, fw_refund(s, limits[i], windows[i], cost, out))
    elseif code == 'c' then save(key, code, s, swc_refund(s, limits[i], windows[i], cost, out))
    else expire(key, swl_refund(key, s, limits[i], windows[i], cost, out)) end
    reply[2 + 2 * i] = num(out[2])
    reply[3 + 2 * i] = num(out[3])
  end
  return reply
end

local allowed = true
local retry = 0
for i = 1, n do
  local e = check(i, cost)
  if e then return e end
  reply[2 + 2 * i] = num(out[2])
  reply[3 + 2 * i] = num(out[3])
  if not out[1] then
    allowed = false
    if out[4] > retry then retry = out[4] end
  end
end
if not allowed then
  reply[1] = 0
  if retry == INF then reply[2] = '-1' else reply[2] = num(retry) end
  return reply
end
if mode == 'c' then
  for i = 1, n do
    local code = codes[i]
    local s = states[i]
    local key = KEYS[i]
    if stale[i] then redis.call('DEL', key) end
    if code == 't' then save(key, code, s, tb_update(s, limits[i], windows[i], bursts[i], cost, out))
    elseif code == 'g' then save(key, code, s, gcra_charge(s, limits[i], windows[i], bursts[i], cost, out))
    elseif code == 'f' then save(key, code, s, fw_charge(s, limits[i], windows[i], cost, out))
    elseif code == 'c' then save(key, code, s, swc_charge(s, limits[i], windows[i], cost, out))
    else expire(key, swl_charge(key, s, limits[i], windows[i], cost, out)) end
    reply[2 + 2 * i] = num(out[2])
    reply[3 + 2 * i] = num(out[3])
  end
end
return reply
`;
