import { checkPublishRight, grantTo, READ_CLOCK, TAKE_NEXT_WAITER } from './lock-script.parts';

/**
 * release: ends a token's lease and hands the lock to the oldest live queued waiter; or, when the
 * token holds nothing, drops its place in the queue.
 *
 * KEYS[1] lease, KEYS[2] queue, KEYS[3] waiters, KEYS[4] fence (see lock-script.parts.ts)
 * ARGV[1] `<token><mode><floor>`: the token (32 hex characters); how to publish: "p" PUBLISH,
 *         "s" SPUBLISH, only when waiters had queued, "P", "S" the same and announce every
 *         release; the client's fence floor ("0" when none)
 *
 * Returns 0: the token held nothing (its queue place, if any, is gone).
 *         1: released; the lock is free.
 *         {waiter, fence}: released and handed to waiter with fence (the grant was published).
 *         error NOPERM: the release would have published and the Redis user may not; nothing
 *                     was changed (see checkPublishRight).
 *
 * A lease without the `q` mark is simply deleted: its fence is either ahead of the clock (and then
 * the fence key, written at the grant, keeps it) or the clock reading of the granting script, which
 * the clock has passed by the time another script reads it.
 */
export const RELEASE_SCRIPT = `
local token = string.sub(ARGV[1], 1, 32)
local mode = string.sub(ARGV[1], 33, 33)
local state = redis.call('MGET', KEYS[1], KEYS[4])
local current = state[1]
if not current or string.sub(current, 1, 32) ~= token then
  if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
  return 0
end

if string.byte(current, -1) ~= 113 then
  -- Nobody queued.
  if mode == 'p' or mode == 's' then
    redis.call('DEL', KEYS[1])
    return 1
  end
  local publish = mode == 'S' and 'SPUBLISH' or 'PUBLISH'
  local channel = string.sub(KEYS[1], 1, -2) .. 'c'
  ${checkPublishRight('publish', 'channel')}
  redis.call('DEL', KEYS[1])
  redis.pcall(publish, channel, 'r')
  return 1
end

local publish = (mode == 's' or mode == 'S') and 'SPUBLISH' or 'PUBLISH'
local channel = string.sub(KEYS[1], 1, -2) .. 'c'
${checkPublishRight('publish', 'channel')}
${READ_CLOCK}
local floor = tonumber(string.sub(ARGV[1], 34))
local kept = tonumber(state[2] or '0')
local last = tonumber(string.sub(current, 33, -2))
local waiter, waiterTtl, fence
${TAKE_NEXT_WAITER}
if waiter then
  ${grantTo('waiter', 'waiterTtl', { last: 'last', marked: true })}
  redis.pcall(publish, channel, 'g' .. waiter .. string.format('%.0f', fence))
  return {waiter, fence}
end
redis.call('DEL', KEYS[1])
if last >= now and kept < last then
  redis.call('SET', KEYS[4], string.format('%.0f', last), 'PX', math.floor((last - now) / 1000) + 2)
end
redis.pcall(publish, channel, 'r')
return 1
`;
