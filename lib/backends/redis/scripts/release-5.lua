--[[
  release: ends a token's lease and hands the lock to the oldest live queued waiter; or, when the
  token holds nothing, drops its place in the queue.

  Input:
    KEYS[1] lease    string `<token><fence>`, or `<token><fence>q` once a waiter may have queued
                     behind it (see acquire-5.lua)
    KEYS[2] queue    list of waiting tokens, oldest first
    KEYS[3] waiters  hash token -> `<queue place expiry, server ms>:<ttl asked for>`
    KEYS[4] fence    the last fence, kept only while it is ahead of the server clock
    KEYS[5] channel  the lock's pub/sub channel (a channel, not a key; same hash tag as the keys)

    ARGV[1] `<token><mode><floor>`: the token (32 hex characters); how to publish: "p" PUBLISH,
            "s" SPUBLISH, only when waiters had queued, "P", "S" the same and announce every
            release; the client's fence floor ("0" when none)

  Output:
    0                the token held nothing (its queue place, if any, is gone)
    1                released; the lock is free
    {waiter, fence}  released and handed to waiter with fence (the grant was published)
    error NOPERM     the release would have published and the Redis user may not; nothing was
                     changed (includes/check-publish-right.lua)

  A lease without the `q` mark is simply deleted: its fence is either ahead of the clock (and then
  the fence key, written at the grant, keeps it) or the clock reading of the granting script, which
  the clock has passed by the time another script reads it. That common case comes first.
]]
local token = string.sub(ARGV[1], 1, 32)
local mode = string.sub(ARGV[1], 33, 33)
local state = redis.call('MGET', KEYS[1], KEYS[4])
local current = state[1]
if not current or string.sub(current, 1, 32) ~= token then
  if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
  return 0
end

local marked = string.sub(current, -1) == 'q'
if not marked and (mode == 'p' or mode == 's') then
  -- Nobody queued, and releases are not announced.
  redis.call('DEL', KEYS[1])
  return 1
end

local publish = (mode == 's' or mode == 'S') and 'SPUBLISH' or 'PUBLISH'
--- @include "includes/check-publish-right"
if not marked then
  -- Nobody queued; the release is announced.
  redis.call('DEL', KEYS[1])
  redis.pcall(publish, KEYS[5], 'r')
  return 1
end

--- @include "includes/read-clock"
local last = tonumber(string.sub(current, 33, -2))
-- The next fence must be above this lease's fence too.
local floor = math.max(tonumber(string.sub(ARGV[1], 34)), last)
local kept = tonumber(state[2] or '0')
local waiter, waiterTtl, fence
--- @include "includes/take-next-waiter"
if waiter then
  local holder, grantTtl, mark = waiter, waiterTtl, 'q'
  --- @include "includes/grant"
  redis.pcall(publish, KEYS[5], 'g' .. waiter .. string.format('%.0f', fence))
  return {waiter, fence}
end
redis.call('DEL', KEYS[1])
if last >= now and kept < last then
  redis.call('SET', KEYS[4], string.format('%.0f', last), 'PX', math.floor((last - now) / 1000) + 2)
end
redis.pcall(publish, KEYS[5], 'r')
return 1
