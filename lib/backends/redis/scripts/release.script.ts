import { LOCK_SCRIPT_PRELUDE } from './lock-script.parts';

/**
 * release: ends a token's lease and hands the lock to the oldest live queued waiter; or, when the
 * token holds nothing, drops its place in the queue.
 *
 * KEYS[1] lease, KEYS[2] queue, KEYS[3] waiters, KEYS[4] fence (see lock-script.parts.ts)
 * ARGV[1] token (32 hex characters)
 * ARGV[2] the client's fence floor ("0" when none)
 * ARGV[3] the lock's channel
 * ARGV[4] PUBLISH or SPUBLISH
 * ARGV[5] "1": announce every release on the channel; "0": only when waiters had queued
 *
 * Returns {0}: the token held nothing (its queue place, if any, is gone).
 *         {1}: released; the lock is free.
 *         {1, waiter, fence}: released and handed to waiter with fence (the grant was published).
 */
export const RELEASE_SCRIPT = `${LOCK_SCRIPT_PRELUDE}
local token = ARGV[1]
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, 32) ~= token then
  leave(token)
  return {0}
end

local last = tonumber(string.sub(current, 33))
local queued = redis.call('EXISTS', KEYS[3]) == 1
local waiter, ttl = nextWaiter()
if waiter then
  return {1, waiter, handTo(waiter, ttl, last, tonumber(ARGV[2]), ARGV[3], ARGV[4])}
end
redis.call('DEL', KEYS[1])
keepFence(last)
if queued or ARGV[5] == '1' then
  redis.call(ARGV[4], ARGV[3], 'r')
end
return {1}
`;
