import { checkPublishRight, grantTo, READ_CLOCK, TAKE_NEXT_WAITER } from './lock-script.parts';

/**
 * acquire: one attempt to take a lock for a token, optionally joining the lock's FIFO queue.
 *
 * KEYS[1] lease, KEYS[2] queue, KEYS[3] waiters, KEYS[4] fence (see lock-script.parts.ts)
 * ARGV[1] `<token><mode><floor>`: the token (32 hex characters); "p" when grants are published
 *         with PUBLISH, "s" with SPUBLISH; the client's fence floor (the highest fence it has
 *         seen, "0" when none). One argument rather than three: every argument costs the client
 *         and the server a little on every call.
 * ARGV[2] ttl in ms
 * ARGV[3] queue place lease in ms (> 0); absent: do not queue
 *
 * Returns fence (> 0): granted, or renewed for ttl when the token already held the lock (handed over
 *                     by the queue).
 *         -retryIn (<= 0): busy; retryIn = ms left on the current lease. With ARGV[3] the token
 *                     joined the queue (or refreshed its place).
 *         {waiter, fence, retryIn}: busy because the lease had expired with waiters queued: this
 *                     call handed the lock to the oldest live waiter and published the grant.
 *         error NOPERM: the call would have handed the lock over and the Redis user may not
 *                     publish the grant; nothing was changed (see checkPublishRight).
 */
export const ACQUIRE_SCRIPT = `
local token = string.sub(ARGV[1], 1, 32)
if redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[4]) == 0 then
  -- Free, nobody queued, no fence ahead of the clock: the fence is the clock (or the floor above it).
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local fence = now
  local floor = tonumber(string.sub(ARGV[1], 34))
  if floor >= now then
    fence = floor + 1
    redis.call('SET', KEYS[4], string.format('%.0f', fence), 'PX', math.floor((fence - now) / 1000) + 2)
  end
  redis.call('SET', KEYS[1], token .. string.format('%.0f', fence), 'PX', ARGV[2])
  return fence
end

local state = redis.call('MGET', KEYS[1], KEYS[4])
local current = state[1]
if current then
  if string.sub(current, 1, 32) == token then
    -- Already ours (handed over by the queue): renew.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    if string.byte(current, -1) == 113 then return tonumber(string.sub(current, 33, -2)) end
    return tonumber(string.sub(current, 33))
  end
  if not ARGV[3] then
    return -math.max(redis.call('PTTL', KEYS[1]), 0)
  end
end

${READ_CLOCK}
local ttl = tonumber(ARGV[2])
local floor = tonumber(string.sub(ARGV[1], 34))
local kept = tonumber(state[2] or '0')
local lease = tonumber(ARGV[3] or '0')
local waiter, waiterTtl, fence

if not current then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    -- Free, nobody queued; the fence key holds a fence that may be ahead of the clock.
    ${grantTo('token', 'ARGV[2]', { marked: false })}
    return fence
  end
  -- The lease ended with waiters queued: the oldest live one gets the lock, and the grant is published.
  local publish = string.byte(ARGV[1], 33) == 115 and 'SPUBLISH' or 'PUBLISH'
  local channel = string.sub(KEYS[1], 1, -2) .. 'c'
  ${checkPublishRight('publish', 'channel')}
  ${TAKE_NEXT_WAITER}
  if not waiter or waiter == token then
    -- Nobody else is waiting ahead of this token: it takes the lock (and leaves the queue).
    if not waiter and redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    ${grantTo('token', 'ARGV[2]', { marked: 'waiter' })}
    return fence
  end
  ${grantTo('waiter', 'waiterTtl', { marked: true })}
  redis.pcall(publish, channel, 'g' .. waiter .. string.format('%.0f', fence))
end

-- Busy: join the queue (or refresh the place) when asked to, marking the lease as having waiters.
if lease > 0 then
  if redis.call('HSET', KEYS[3], token, string.format('%.0f', nowMs + lease) .. ':' .. ttl) == 1 then
    redis.call('RPUSH', KEYS[2], token)
  end
  if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
  if redis.call('PTTL', KEYS[3]) < lease then redis.call('PEXPIRE', KEYS[3], lease) end
  if current and string.byte(current, -1) ~= 113 then
    redis.call('SET', KEYS[1], current .. 'q', 'KEEPTTL')
  end
end
if waiter then
  return {waiter, fence, waiterTtl}
end
return -math.max(redis.call('PTTL', KEYS[1]), 0)
`;
