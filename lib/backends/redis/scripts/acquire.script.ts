import { LOCK_FUNCTIONS, READ_CLOCK } from './lock-script.parts';

/**
 * acquire: one attempt to take a lock for a token, optionally joining the lock's FIFO queue.
 *
 * KEYS[1] lease, KEYS[2] queue, KEYS[3] waiters, KEYS[4] fence (see lock-script.parts.ts)
 * ARGV[1] token (32 hex characters)
 * ARGV[2] ttl in ms
 * ARGV[3] queue place lease in ms; 0 = do not queue
 * ARGV[4] the client's fence floor (the highest fence it has seen; "0" when none)
 * ARGV[5] the lock's channel
 * ARGV[6] PUBLISH or SPUBLISH
 *
 * Returns {1, fence}: granted, or renewed for ttl when the token already held the lock (handed over
 *                     by the queue).
 *         {0, retryIn}: busy; retryIn = ms left on the current lease. With ARGV[3] > 0 the token
 *                     joined the queue (or refreshed its place).
 *         {0, retryIn, waiter, fence}: busy because the lease had expired with waiters queued: this
 *                     call handed the lock to the oldest live waiter and published the grant.
 */
export const ACQUIRE_SCRIPT = `
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])
local state = redis.call('MGET', KEYS[1], KEYS[4])
local current = state[1]

if not current and redis.call('EXISTS', KEYS[3]) == 0 then
  -- Free, nobody queued.
  ${READ_CLOCK}
  local fence = now
  if floor >= fence then fence = floor + 1 end
  if state[2] then
    local kept = tonumber(state[2])
    if kept >= fence then fence = kept + 1 end
  end
  redis.call('SET', KEYS[1], token .. string.format('%.0f', fence), 'PX', ttl)
  if fence > now then
    redis.call('SET', KEYS[4], string.format('%.0f', fence), 'PX', math.floor((fence - now) / 1000) + 2)
  end
  return {1, fence}
end

if current then
  if string.sub(current, 1, 32) == token then
    -- Already ours (handed over by the queue): renew.
    redis.call('PEXPIRE', KEYS[1], ttl)
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    return {1, tonumber(string.sub(current, 33))}
  end
  if lease <= 0 then
    return {0, math.max(redis.call('PTTL', KEYS[1]), 0)}
  end
end

${READ_CLOCK}
${LOCK_FUNCTIONS}

local function join()
  if lease <= 0 then return end
  if redis.call('HSET', KEYS[3], token, fmt(nowMs + lease) .. ':' .. ttl) == 1 then
    redis.call('RPUSH', KEYS[2], token)
  end
  if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
  if redis.call('PTTL', KEYS[3]) < lease then redis.call('PEXPIRE', KEYS[3], lease) end
end

if current then
  join()
  return {0, math.max(redis.call('PTTL', KEYS[1]), 0)}
end

local waiter, waiterTtl = nextWaiter()
if waiter and waiter ~= token then
  local fence = handTo(waiter, waiterTtl, nil, floor, ARGV[5], ARGV[6])
  join()
  return {0, waiterTtl, waiter, fence}
end
leave(token)
return {1, grant(token, ttl, nil, floor)}
`;
