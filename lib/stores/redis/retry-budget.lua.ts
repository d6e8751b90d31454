import { RedisScript } from './shared-redis.js';

// One exchange of an instance with the fleet's retry budget, atomic, with Redis TIME as the clock.
//
// KEYS[1] slots: a hash of `c<slot>` (calls) and `r<slot>` (withdrawals) per slot of the window
// KEYS[2] floor: a hash { tokens, at } for the fleet's floor bucket
// KEYS[3] instances: a sorted set of the instances exchanging, scored by their last exchange
//
// ARGV: 1 instance id, 2 calls to deposit, 3 withdrawals to charge to the current slot,
// 4 slot of the previous grant, 5 unused part of it (given back to that slot, if still live),
// 6 unused floor tokens (given back to the bucket), 7 ratio, 8 floor rate (tokens/s),
// 9 floor capacity, 10 window (ms), 11 slots per window, 12 instance ttl (ms), 13 '1' to get a
// new grant, '0' to leave (close).
//
// A grant is withdrawn here, at once: an instance spends only what Redis has already charged, so
// instances working from a stale view cannot spend the same tokens twice.
//
// Replies { ratio grant, floor grant, slot, instances, fleet calls, fleet withdrawals }, numbers
// with decimals as strings.
const LUA = `
-- tostring keeps 14 digits: a grant given back rounded up would create tokens out of nothing.
local function exact(x) return string.format('%.17g', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local windowMs = tonumber(ARGV[10])
local slots = tonumber(ARGV[11])
local slot = math.floor(now / (windowMs / slots))
local oldest = slot - slots + 1
local calls = tonumber(ARGV[2])
local extra = tonumber(ARGV[3])
local grantSlot = tonumber(ARGV[4])
local unused = tonumber(ARGV[5])
if calls > 0 then redis.call('HINCRBY', KEYS[1], 'c' .. slot, calls) end
if extra ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. slot, extra) end
if unused > 0 and grantSlot >= oldest and grantSlot <= slot then
  redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. grantSlot, -unused)
end

local fields = redis.call('HGETALL', KEYS[1])
local fleetCalls, fleetRetries = 0, 0
for i = 1, #fields, 2 do
  local field = fields[i]
  local at = tonumber(string.sub(field, 2))
  if at == nil or at < oldest then
    redis.call('HDEL', KEYS[1], field)
  elseif string.sub(field, 1, 1) == 'c' then
    fleetCalls = fleetCalls + tonumber(fields[i + 1])
  else
    fleetRetries = fleetRetries + tonumber(fields[i + 1])
  end
end

local want = ARGV[13] == '1'
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[12]))
if want then redis.call('ZADD', KEYS[3], now, ARGV[1]) else redis.call('ZREM', KEYS[3], ARGV[1]) end
local instances = redis.call('ZCARD', KEYS[3])
if instances < 1 then instances = 1 end

local rate = tonumber(ARGV[8])
local cap = tonumber(ARGV[9])
local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = tonumber(bucket[1])
local last = tonumber(bucket[2])
if tokens == nil or last == nil then
  tokens = cap
  last = now
end
if now > last then
  tokens = math.min(cap, tokens + (now - last) * rate / 1000)
  last = now
end
tokens = math.min(cap, tokens + tonumber(ARGV[6]))

local grant, floorGrant = 0, 0
if want then
  local balance = tonumber(ARGV[7]) * fleetCalls - fleetRetries
  -- A share of the balance for each instance exchanging, but at least one whole token when there is one.
  if balance >= 1 then grant = math.min(balance, math.max(1, balance / instances)) end
  if tokens >= 1 then floorGrant = math.min(tokens, math.max(1, tokens / instances)) end
  if grant > 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. slot, grant)
    fleetRetries = fleetRetries + grant
  end
  tokens = tokens - floorGrant
end
redis.call('HSET', KEYS[2], 'tokens', exact(tokens), 'at', exact(last))

local keep = windowMs * 2 + tonumber(ARGV[12])
local refillMs = 0
if rate > 0 then refillMs = math.ceil(cap / rate * 1000) end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], math.max(keep, refillMs + tonumber(ARGV[12])))
redis.call('PEXPIRE', KEYS[3], keep)
return { exact(grant), exact(floorGrant), slot, instances, fleetCalls, exact(fleetRetries) }
`;

/** The retry budget's exchange script. */
export const RETRY_BUDGET_SCRIPT = new RedisScript('retry-budget', LUA);
