--[[
  acquire: one attempt to take a lock for a token, exclusively or in a shared or limited mode
  (rule 7 of the SPI), optionally joining the lock's FIFO queue.

  Input:
    KEYS[1] lease    string `<token><fence>`, or `<token><fence>q` once a waiter may have queued
                     behind it; expires with the lease (PX). The exclusive holder.
    KEYS[2] queue    list of waiting tokens, oldest first
    KEYS[3] waiters  hash token -> `<queue place expiry, server ms>:<ttl asked for>`, followed by
                     `:s` for a shared waiter, `:<n>` for one limited to n
    KEYS[4] fence    the last fence, kept only while it is ahead of the server clock
    KEYS[5] channel  the lock's pub/sub channel (a channel, not a key; named by redis-key-layout.ts
                     with the same hash tag, so a Cluster routes the call to the one slot of all)
    KEYS[6] holders  sorted set token -> lease end (server ms) of the shared or limited holders;
                     expires with the last of those leases
    KEYS[7] holding  hash token -> fence of those holders, and `mode` -> `shared` or `limit:<n>`;
                     exists exactly while KEYS[6] does

    ARGV[1] `<token><mode><floor>`: the token (32 hex characters); "p" when grants are published
            with PUBLISH, "s" with SPUBLISH; the client's fence floor (the highest fence it has
            seen, "0" when none). One argument rather than three: every argument costs the client
            and the server a little on every call.
    ARGV[2] ttl in ms
    ARGV[3] queue place lease in ms; absent or 0: do not queue
    ARGV[4] the mode: absent, exclusive; "s" shared; "<n>" limited to n holders (1 <= n)

  Output:
    fence (> 0)   granted, or renewed for ttl when the token already held the lock or a place
                  (handed over by the queue)
    -retryIn (<= 0)
                  busy; retryIn = ms left on the current lease (the first of the holders' leases
                  to end, when several hold). With ARGV[3] the token joined the queue (or
                  refreshed its place).
    {heldWith, result, waiter, fence, waiter, fence, ...}
                  result as above (fence or -retryIn), when the call also handed the lock to
                  waiters of the queue (the lease or places had ended; each grant was published),
                  or when the key is held in a mode this attempt cannot share it with whatever the
                  holders do: heldWith is then `exclusive`, `shared` or `limit:<n>` ('' otherwise),
                  result is -retryIn, and the token did not queue (it left the queue, should it
                  have been there)
    error NOPERM  the call would have handed the lock over and the Redis user may not publish the
                  grant; nothing was changed but lapsed places and ended holders dropped
                  (includes/check-publish-right.lua)

  Modes (rule 7): shared holders hold together, never with an exclusive holder; a shared attempt is
  busy while a live waiter is queued, so a queued writer is never overtaken; a limited key has at
  most n holders. A limited attempt on a key held exclusively or shared, and an attempt with
  another limit, shared or exclusive on a key held with a limit, is refused (heldWith). Every grant
  of every mode draws its fence the same way (includes/fence.lua).

  The `q` mark: whenever the lease exists and a waiter is queued, the lease value ends in `q` (set
  when a waiter joins behind a lease, and on every grant made from the queue). A lease without it
  has nobody queued behind it, so its release needs no look at the queue. A mark can be stale (the
  waiters left); that only sends the release down the queue path, which finds nobody.

  The common case (a free lock with nobody queued) comes first and runs the fewest commands; an
  exclusive attempt never calls a command beyond those it always did unless the key has shared or
  limited holders or waiters.
]]
local token = string.sub(ARGV[1], 1, 32)
local callerMode = ARGV[4] or ''
if redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[4], KEYS[6]) == 0 then
  -- Free, nobody queued, no fence ahead of the clock: the fence is the clock (or the floor above it).
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local fence = now
  local floor = tonumber(string.sub(ARGV[1], 34))
  if floor >= now then
    fence = floor + 1
    redis.call('SET', KEYS[4], string.format('%.0f', fence), 'PX', math.floor((fence - now) / 1000) + 2)
  end
  if callerMode == '' then
    redis.call('SET', KEYS[1], token .. string.format('%.0f', fence), 'PX', ARGV[2])
  else
    local ends = string.format('%.0f', math.floor(now / 1000) + tonumber(ARGV[2]))
    local sharing = callerMode == 's' and 'shared' or ('limit:' .. callerMode)
    redis.call('ZADD', KEYS[6], ends, token)
    redis.call('HSET', KEYS[7], token, string.format('%.0f', fence), 'mode', sharing)
    redis.call('PEXPIREAT', KEYS[6], ends)
    redis.call('PEXPIREAT', KEYS[7], ends)
  end
  return fence
end

local state = redis.call('MGET', KEYS[1], KEYS[4])
local current = state[1]
local lease = tonumber(ARGV[3] or '0')
local limited = callerMode ~= '' and callerMode ~= 's'
if current then
  if string.sub(current, 1, 32) == token then
    if callerMode ~= '' then
      return redis.error_reply('ERR the token holds this lock exclusively; it cannot take a shared or limited place')
    end
    -- Already ours (handed over by the queue): renew, and report the fence without the mark.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    if string.sub(current, -1) == 'q' then return tonumber(string.sub(current, 33, -2)) end
    return tonumber(string.sub(current, 33))
  end
  if limited then
    -- A limited attempt on a key held exclusively: refused, and not queued.
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    return {'exclusive', -math.max(redis.call('PTTL', KEYS[1]), 0)}
  end
  if lease == 0 then
    return -math.max(redis.call('PTTL', KEYS[1]), 0)
  end
end

--- @include "includes/read-clock"
local ttl = tonumber(ARGV[2])
local floor = tonumber(string.sub(ARGV[1], 34))
local kept = tonumber(state[2] or '0')
local callerTtl = ttl
local fence, count, sharing, held = nil, 0, nil, false
local handed = {}
local exclusiveTo, callerFence, queueEmpty, heldWith
local holdersChanged = false
local publish = string.sub(ARGV[1], 33, 33) == 's' and 'SPUBLISH' or 'PUBLISH'

if not current then
  if redis.call('EXISTS', KEYS[6]) == 1 then
    --- @include "includes/prune-holders"
    if count > 0 then held = redis.call('ZSCORE', KEYS[6], token) ~= false end
  end
  -- The lease or places may have ended with waiters queued: the oldest live ones get the key, and
  -- each grant is published.
  local queued = redis.call('EXISTS', KEYS[3]) == 1
  if queued then
    --- @include "includes/hand-off"
  end
  if callerFence then
    -- This token was the waiter next in turn: it took the key; others may still be queued.
  elseif held then
    -- Already holds a place (handed over by the queue): renew it.
    redis.call('ZADD', KEYS[6], string.format('%.0f', nowMs + ttl), token)
    holdersChanged = true
    if queued and redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    callerFence = tonumber(redis.call('HGET', KEYS[7], token))
  elseif exclusiveTo then
    if limited then heldWith = 'exclusive' end
  else
    local wanted = limited and ('limit:' .. callerMode) or nil
    if count > 0 and sharing ~= wanted and (wanted or sharing ~= 'shared') then
      heldWith = sharing
    elseif not queued or queueEmpty then
      -- Free enough for this mode, and nobody live queued ahead: this token takes the key (and
      -- leaves the queue, should it be there).
      local fits = count == 0 or (callerMode == 's' and sharing == 'shared') or (limited and count < tonumber(callerMode))
      if fits then
        if queued and redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
        local holder, grantTtl = token, ARGV[2]
        if callerMode == '' then
          local mark = ''
          --- @include "includes/grant"
        else
          grantTtl = ttl
          if count == 0 then sharing = callerMode == 's' and 'shared' or wanted end
          --- @include "includes/grant-holder"
        end
        callerFence = fence
      end
    end
  end
end
if holdersChanged and count > 0 then
  --- @include "includes/holders-expiry"
end

local result
if callerFence then
  result = callerFence
else
  if heldWith then
    -- Refused: the token leaves the queue, should it be there.
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
  elseif lease > 0 then
    -- Busy: join the queue (or refresh the place), marking an exclusive lease as having waiters.
    local place = string.format('%.0f', nowMs + lease) .. ':' .. ttl
    if callerMode ~= '' then place = place .. ':' .. callerMode end
    if redis.call('HSET', KEYS[3], token, place) == 1 then
      redis.call('RPUSH', KEYS[2], token)
    end
    if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
    if redis.call('PTTL', KEYS[3]) < lease then redis.call('PEXPIRE', KEYS[3], lease) end
    if current and string.sub(current, -1) ~= 'q' then
      redis.call('SET', KEYS[1], current .. 'q', 'KEEPTTL')
    end
  end
  if current or exclusiveTo then
    result = -math.max(redis.call('PTTL', KEYS[1]), 0)
  elseif count > 0 then
    result = -math.max(tonumber(redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')[2]) - nowMs, 0)
  else
    result = 0
  end
end
if #handed == 0 and not heldWith then return result end
local reply = {heldWith or '', result}
for i = 1, #handed do reply[#reply + 1] = handed[i] end
return reply
