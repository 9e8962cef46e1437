--[[
  release: ends a token's lease, exclusive or a shared or limited place (rule 7 of the SPI), and
  hands the lock to the oldest live queued waiters, as many as may hold it together; or, when the
  token holds nothing, drops its place in the queue.

  Input:
    KEYS[1] lease    string `<token><fence>`, or `<token><fence>q` once a waiter may have queued
                     behind it (see acquire-7.lua)
    KEYS[2] queue    list of waiting tokens, oldest first
    KEYS[3] waiters  hash token -> `<queue place expiry, server ms>:<ttl asked for>[:s|:<n>]`
    KEYS[4] fence    the last fence, kept only while it is ahead of the server clock
    KEYS[5] channel  the lock's pub/sub channel (a channel, not a key; same hash tag as the keys)
    KEYS[6] holders  sorted set token -> lease end (server ms) of the shared or limited holders
    KEYS[7] holding  hash token -> fence of those holders, and `mode` -> `shared` or `limit:<n>`

    ARGV[1] `<token><mode><floor>`: the token (32 hex characters); how to publish: "p" PUBLISH,
            "s" SPUBLISH, only when waiters had queued, "P", "S" the same and announce every
            release; the client's fence floor ("0" when none)

  Output:
    0                the token held nothing (its queue place, if any, is gone; when shared or
                     limited holders hold the key, the waiters its place held back may have been
                     handed the key, and the grants published); also when its shared or limited
                     place had ended already (other holders' places that had ended may have been
                     handed on, and published)
    1                released; nobody was handed the lock
    {waiter, fence, waiter, fence, ...}
                     released and handed to these waiters with these fences (each grant was
                     published): one exclusive waiter, or several shared or limited ones
    error NOPERM     the release would have published and the Redis user may not; nothing was
                     changed (includes/check-publish-right.lua)

  A lease without the `q` mark is simply deleted: its fence is either ahead of the clock (and then
  the fence key, written at the grant, keeps it) or the clock reading of the granting script, which
  the clock has passed by the time another script reads it. That common case comes first. The same
  holds for the fences of shared and limited places.
]]
local token = string.sub(ARGV[1], 1, 32)
local mode = string.sub(ARGV[1], 33, 33)
local state = redis.call('MGET', KEYS[1], KEYS[4])
local current = state[1]
local publish = (mode == 's' or mode == 'S') and 'SPUBLISH' or 'PUBLISH'
local callerMode, callerTtl, held = '', 0, true
local fence, count, sharing = nil, 0, nil
local handed = {}
local exclusiveTo, callerFence, queueEmpty
local holdersChanged = false

if not current or string.sub(current, 1, 32) ~= token then
  local shared = redis.call('EXISTS', KEYS[6]) == 1
  local place = shared and redis.call('ZSCORE', KEYS[6], token)
  if not place then
    -- A waiter leaving a key that shared or limited holders hold may have held back the waiters
    -- behind it (readers behind a writer), who may hold the key beside the holders now: they are
    -- handed it, and the grants published, when the Redis user may publish (else they find it at
    -- their next re-check). The answer stays 0, since this token held nothing. Only commands of
    -- the documented rights: HDEL tells whether the token was queued.
    local handOn = not current and shared
      and (not redis.acl_check_cmd or redis.acl_check_cmd(publish, KEYS[5], 'r'))
    if redis.call('HDEL', KEYS[3], token) == 0 then return 0 end
    redis.call('LREM', KEYS[2], 1, token)
    if not handOn then return 0 end
    --- @include "includes/read-clock"
    --- @include "includes/prune-holders"
    local floor = tonumber(string.sub(ARGV[1], 34))
    local kept = tonumber(state[2] or '0')
    --- @include "includes/hand-off"
    if count > 0 then
      --- @include "includes/holders-expiry"
    end
    return 0
  end
  -- A shared or limited holder leaves; the places that frees go to the queue's oldest waiters.
  local announce = mode == 'P' or mode == 'S'
  local queued = redis.call('EXISTS', KEYS[3]) == 1
  if queued or announce then
    --- @include "includes/check-publish-right"
  end
  --- @include "includes/read-clock"
  local released = tonumber(place) > nowMs
  redis.call('ZREM', KEYS[6], token)
  redis.call('HDEL', KEYS[7], token)
  --- @include "includes/prune-holders"
  local floor = tonumber(string.sub(ARGV[1], 34))
  local kept = tonumber(state[2] or '0')
  if queued then
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    --- @include "includes/hand-off"
  end
  if count > 0 then
    --- @include "includes/holders-expiry"
  end
  if #handed == 0 then
    if announce or (queued and queueEmpty) then redis.pcall(publish, KEYS[5], 'r') end
    return released and 1 or 0
  end
  if not released then return 0 end
  return handed
end

local marked = string.sub(current, -1) == 'q'
if not marked and (mode == 'p' or mode == 's') then
  -- Nobody queued, and releases are not announced.
  redis.call('DEL', KEYS[1])
  return 1
end

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
redis.call('DEL', KEYS[1])
--- @include "includes/hand-off"
if #handed > 0 then
  if count > 0 then
    --- @include "includes/holders-expiry"
  end
  return handed
end
if last >= now and kept < last then
  redis.call('SET', KEYS[4], string.format('%.0f', last), 'PX', math.floor((last - now) / 1000) + 2)
end
redis.pcall(publish, KEYS[5], 'r')
return 1
