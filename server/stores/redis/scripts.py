"""The Lua scripts: each read-check-write on shared state runs in Redis as one step.

Times come from Redis's own clock (``TIME``), never an instance's, so leases mean the same
on every machine however their clocks drift.
"""

from __future__ import annotations

__all__ = [
    "ADMIT",
    "APPEND",
    "BUDGET_RESERVE",
    "BUDGET_SEED",
    "BUDGET_SETTLE",
    "EXPIRED",
    "RENEW",
    "RESCUE",
    "SETTLE_APPROVAL",
    "SIGNAL_CANCEL",
    "TAKE_TOKEN",
]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: active, slots, live, meta
# ARGV: stream id, user, session, message, started_at, owner, limit, lease ms, take (1/0),
#       meta ttl ms
# -> {"busy", "<stream id> <started_at>"} | {"ok"} | {"too_many"} | {"refused"}
ADMIT = (
    _NOW
    + """
local status = 'refused'
if ARGV[9] == '1' then
  local current = redis.call('GET', KEYS[1])
  if current then
    local other = string.match(current, '^(%S+)')
    local lease = redis.call('ZSCORE', KEYS[3], other)
    if lease and tonumber(lease) > now then
      return {'busy', current}
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then
    status = 'too_many'
  else
    status = 'ok'
  end
end
redis.call('HSET', KEYS[4], 'user', ARGV[2], 'session', ARGV[3], 'message', ARGV[4],
  'started', ARGV[5], 'owner', ARGV[6], 'last', 0)
redis.call('PEXPIRE', KEYS[4], ARGV[10])
if status == 'ok' then
  local lease_ms = tonumber(ARGV[8])
  redis.call('ZADD', KEYS[2], now + lease_ms, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], lease_ms)
  redis.call('ZADD', KEYS[3], now + lease_ms, ARGV[1])
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[5], 'PX', lease_ms)
end
return {status}
"""
)

# Clears the session's active turn if it is still this stream's. Expects KEYS[5] = active
# and ARGV[6] = stream id (APPEND) — written inline below for each script's own keys.
_CLEAR_ACTIVE = """
local current = redis.call('GET', {active})
if current and string.sub(current, 1, string.len({sid}) + 1) == {sid} .. ' ' then
  redis.call('DEL', {active})
end
"""

# The producer's writes. KEYS: log, meta, live, slots, active
# ARGV: owner, first id, terminal (1/0), log ttl ms, safety ttl ms, stream id, frames...
# -> the last id now in the log, or -1 when this instance no longer owns the turn (it was
#    declared lost, or Redis lost the turn's keys).
APPEND = (
    """
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then
  return -1
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
local first = tonumber(ARGV[2])
local count = #ARGV - 6
local terminal = ARGV[3] == '1'
for i = 1, count do
  local id = first + i - 1
  if id > last then
    if terminal and i == count then
      redis.call('XADD', KEYS[1], '0-' .. id, 'f', ARGV[6 + i], 't', '1')
    else
      redis.call('XADD', KEYS[1], '0-' .. id, 'f', ARGV[6 + i])
    end
  end
end
local newest = first + count - 1
if newest > last then
  redis.call('HSET', KEYS[2], 'last', newest)
end
if last == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if terminal then
  redis.call('HSET', KEYS[2], 'fin', '1', 'owner', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('ZREM', KEYS[4], ARGV[6])
"""
    + _CLEAR_ACTIVE.format(active="KEYS[5]", sid="ARGV[6]")
    + """
end
return newest
"""
)

# The producer's lease, every few seconds. KEYS: live, slots, active, meta
# ARGV: stream id, owner, lease ms, started_at -> 1, or 0 when the turn is no longer ours.
RENEW = (
    _NOW
    + """
if redis.call('HGET', KEYS[4], 'owner') ~= ARGV[2] then
  return 0
end
local lease_ms = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[1])
redis.call('ZADD', KEYS[2], now + lease_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[2], lease_ms)
local current = redis.call('GET', KEYS[3])
if not current or string.match(current, '^(%S+)') == ARGV[1] then
  redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[4], 'PX', lease_ms)
end
return 1
"""
)

# Stream ids whose lease ran out. KEYS: live. ARGV: how many at most.
EXPIRED = (
    _NOW
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# Declare a turn lost and end its log, once, whoever gets here first.
# KEYS: live, log, meta, slots, active
# ARGV: stream id, terminal frame without its "id: n" line, log ttl ms, the log's last id
#       the caller read, then frames (without their id lines) to append before the terminal
# -> the terminal's id; 0 when the lease is alive again or someone else was first; -1 when
#    the log has grown since the caller read it (it reads again: the frames were made from
#    what it read).
RESCUE = (
    _NOW
    + """
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) > now then
  return 0
end
if #ARGV > 4 and tonumber(redis.call('HGET', KEYS[3], 'last') or '0') ~= tonumber(ARGV[4]) then
  return -1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
"""
    + _CLEAR_ACTIVE.format(active="KEYS[5]", sid="ARGV[1]")
    + """
if redis.call('EXISTS', KEYS[3]) == 0 or redis.call('HGET', KEYS[3], 'fin') == '1' then
  return 0
end
local id = tonumber(redis.call('HGET', KEYS[3], 'last') or '0') + 1
for i = 5, #ARGV do
  redis.call('XADD', KEYS[2], '0-' .. id, 'f', 'id: ' .. id .. '\\n' .. ARGV[i])
  id = id + 1
end
redis.call('XADD', KEYS[2], '0-' .. id, 'f', 'id: ' .. id .. '\\n' .. ARGV[2], 't', '1')
redis.call('HSET', KEYS[3], 'last', id, 'fin', '1', 'owner', '')
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return id
"""
)

# KEYS: live, cancel key. ARGV: stream id, reason, ttl ms, channel
# -> 1 when the turn is running somewhere (the signal is kept and published), else 0.
SIGNAL_CANCEL = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. ARGV[2])
return 1
"""

# A token bucket. KEYS: bucket. ARGV: tokens per ms, burst
# -> ms to wait, as a string (0 when a token was taken).
TAKE_TOKEN = (
    _NOW
    + """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return string.format('%.3f', wait)
"""
)


# KEYS: approval key. ARGV: new state. Sets it only while the call is pending.
# -> {1, new state} set now | {0, state} decided before | {0, ""} no such call
SETTLE_APPROVAL = """
local state = redis.call('GET', KEYS[1])
if not state then return {0, ''} end
if state ~= 'pending' then return {0, state} end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return {1, ARGV[1]}
"""

# A budget's admission. KEYS: spent, holds, held (keys.budget_keys)
# ARGV: stream id, tokens, usd, limit tokens (-1: none), limit usd (-1: none), hold ms
# -> {"unseeded"} | {"ok" | "over", spent tokens, spent usd}
BUDGET_RESERVE = (
    _NOW
    + """
local spent = redis.call('HMGET', KEYS[1], 'tokens', 'usd')
if not spent[1] then
  return {'unseeded'}
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, sid in ipairs(lapsed) do
  redis.call('HDEL', KEYS[3], sid)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local tokens = tonumber(spent[1])
local usd = tonumber(spent[2])
local held_tokens, held_usd = 0, 0
for _, value in ipairs(redis.call('HVALS', KEYS[3])) do
  local t, u = string.match(value, '^(%S+) (%S+)$')
  held_tokens = held_tokens + tonumber(t)
  held_usd = held_usd + tonumber(u)
end
local limit_tokens = tonumber(ARGV[4])
local limit_usd = tonumber(ARGV[5])
if (limit_tokens >= 0 and tokens + held_tokens >= limit_tokens)
    or (limit_usd >= 0 and usd + held_usd >= limit_usd) then
  return {'over', spent[1], spent[2]}
end
local hold_ms = tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], now + hold_ms, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < hold_ms then ttl = hold_ms end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return {'ok', spent[1], spent[2]}
"""
)

# Starts a period's counter from the ledger's sum, unless it exists. KEYS: spent
# ARGV: tokens, usd, expire at (epoch ms)
BUDGET_SEED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'tokens', ARGV[1], 'usd', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
"""

# A turn's spending in place of its hold. KEYS: spent, holds, held
# ARGV: stream id, tokens, usd. A counter that is gone is left to be seeded from the ledger.
BUDGET_SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[2])
  redis.call('HINCRBYFLOAT', KEYS[1], 'usd', ARGV[3])
end
return 1
"""
