--[[
  acquire: one attempt to take a lock for a token, optionally joining the lock's FIFO queue.

  Input:
    KEYS[1] lease    string `<token><fence>`, or `<token><fence>q` once a waiter may have queued
                     behind it; expires with the lease (PX)
    KEYS[2] queue    list of waiting tokens, oldest first
    KEYS[3] waiters  hash token -> `<queue place expiry, server ms>:<ttl asked for>`
    KEYS[4] fence    the last fence, kept only while it is ahead of the server clock
    KEYS[5] channel  the lock's pub/sub channel (a channel, not a key; named by redis-key-layout.ts
                     with the same hash tag, so a Cluster routes the call to the one slot of all five)

    ARGV[1] `<token><mode><floor>`: the token (32 hex characters); "p" when grants are published
            with PUBLISH, "s" with SPUBLISH; the client's fence floor (the highest fence it has
            seen, "0" when none). One argument rather than three: every argument costs the client
            and the server a little on every call.
    ARGV[2] ttl in ms
    ARGV[3] queue place lease in ms (> 0); absent: do not queue

  Output:
    fence (> 0)   granted, or renewed for ttl when the token already held the lock (handed over by
                  the queue)
    -retryIn (<= 0)
                  busy; retryIn = ms left on the current lease. With ARGV[3] the token joined the
                  queue (or refreshed its place).
    {waiter, fence, ttl}
                  busy because the lease had expired with waiters queued: this call handed the lock
                  to the oldest live waiter (for the ttl it asked for) and published the grant
    error NOPERM  the call would have handed the lock over and the Redis user may not publish the
                  grant; nothing was changed (includes/check-publish-right.lua)

  The `q` mark: whenever the lease exists and a waiter is queued, the lease value ends in `q` (set
  when a waiter joins behind a lease, and on every grant made from the queue). A lease without it
  has nobody queued behind it, so its release needs no look at the queue. A mark can be stale (the
  waiters left); that only sends the release down the queue path, which finds nobody.

  The common case (a free lock with nobody queued) comes first and runs the fewest commands.
]]
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
    -- Already ours (handed over by the queue): renew, and report the fence without the mark.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    if string.sub(current, -1) == 'q' then return tonumber(string.sub(current, 33, -2)) end
    return tonumber(string.sub(current, 33))
  end
  if not ARGV[3] then
    return -math.max(redis.call('PTTL', KEYS[1]), 0)
  end
end

--- @include "includes/read-clock"
local ttl = tonumber(ARGV[2])
local floor = tonumber(string.sub(ARGV[1], 34))
local kept = tonumber(state[2] or '0')
local lease = tonumber(ARGV[3] or '0')
local waiter, waiterTtl, fence

if not current then
  -- Free; the fence key may hold a fence ahead of the clock. By default this token takes the lock.
  local holder, grantTtl, mark = token, ARGV[2], ''
  local publish
  if redis.call('EXISTS', KEYS[3]) == 1 then
    -- The lease ended with waiters queued: the oldest live one gets the lock, and the grant is published.
    publish = string.sub(ARGV[1], 33, 33) == 's' and 'SPUBLISH' or 'PUBLISH'
    --- @include "includes/check-publish-right"
    --- @include "includes/take-next-waiter"
    if not waiter then
      -- Nobody live is queued: this token takes the lock (and leaves the queue, should it be there).
      if redis.call('HDEL', KEYS[3], token) == 1 then redis.call('LREM', KEYS[2], 1, token) end
    elseif waiter == token then
      -- This token was the oldest live waiter: it takes the lock; others may still be queued.
      mark = 'q'
    else
      holder, grantTtl, mark = waiter, waiterTtl, 'q'
    end
  end
  --- @include "includes/grant"
  if holder == token then return fence end
  redis.pcall(publish, KEYS[5], 'g' .. waiter .. string.format('%.0f', fence))
end

-- Busy: join the queue (or refresh the place) when asked to, marking the lease as having waiters.
if lease > 0 then
  if redis.call('HSET', KEYS[3], token, string.format('%.0f', nowMs + lease) .. ':' .. ttl) == 1 then
    redis.call('RPUSH', KEYS[2], token)
  end
  if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
  if redis.call('PTTL', KEYS[3]) < lease then redis.call('PEXPIRE', KEYS[3], lease) end
  if current and string.sub(current, -1) ~= 'q' then
    redis.call('SET', KEYS[1], current .. 'q', 'KEEPTTL')
  end
end
if waiter then
  return {waiter, fence, waiterTtl}
end
return -math.max(redis.call('PTTL', KEYS[1]), 0)
