/**
 * Lua shared by the acquire and release scripts (each script is sent whole; Redis has no imports).
 * Both scripts use the same KEYS layout:
 *   KEYS[1] lease   string `<token><fence>`, or `<token><fence>q` once a waiter may have queued
 *                   behind it; expiring with the lease (PX)
 *   KEYS[2] queue   list of waiting tokens, oldest first
 *   KEYS[3] waiters hash token → `<queue place expiry, server ms>:<ttl asked for>`
 *   KEYS[4] fence   the last fence, kept only while it is ahead of the server clock
 * The lock's channel is the lease key with its last letter `l` replaced by `c` (same hash tag, and
 * the client's key prefix included, as ioredis put it before KEYS[1]).
 *
 * Fences: a grant's fence is the server time in microseconds, raised above the lock's previous
 * fence (while the lease, or the fence key, still says what it was) and above the client's floor.
 * So no counter has to live forever: once the server clock has passed a fence, the clock alone
 * keeps the next one higher, even after the keys were evicted or lost. Whenever a fence is ahead of
 * the clock, the fence key keeps it until the clock has caught up.
 *
 * The `q` mark: whenever the lease exists and a waiter is queued, the lease value ends in `q` (set
 * when a waiter joins behind a lease, and on every grant made from the queue). A lease without it
 * has nobody queued behind it, so its release needs no look at the queue. A mark can be stale (the
 * waiters left); that only sends the release down the queue path, which finds nobody.
 *
 * The common cases (a free lock with nobody queued; a release of an unmarked lease) are written
 * out in each script before this part, so they run the fewest commands and define no functions.
 */

/** Reads the server clock into `now` (µs) and `nowMs`. */
export const READ_CLOCK = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local nowMs = math.floor(now / 1000)
`;

/**
 * Functions of the queue and hand-off paths; they use `now` and `nowMs` from READ_CLOCK and
 * `publish` ('PUBLISH' or 'SPUBLISH').
 */
export const LOCK_FUNCTIONS = `
local function fmt(n)
  return string.format('%.0f', n)
end

-- The fence in a lease value.
local function fenceOf(value)
  if string.byte(value, -1) == 113 then return tonumber(string.sub(value, 33, -2)) end
  return tonumber(string.sub(value, 33))
end

local channel = string.sub(KEYS[1], 1, -2) .. 'c'

-- Keeps the fence key until the server clock passes fence (only needed while fence >= now).
local function keepFence(fence)
  if fence >= now then
    local kept = tonumber(redis.call('GET', KEYS[4]) or '0')
    if kept < fence then
      redis.call('SET', KEYS[4], fmt(fence), 'PX', math.floor((fence - now) / 1000) + 2)
    end
  end
end

-- Gives the lock to token for ttl ms, marked as having waiters behind it when queued is true;
-- returns its fence.
local function grant(token, ttl, last, floor, queued)
  local fence = now
  if last and last >= fence then fence = last + 1 end
  if floor >= fence then fence = floor + 1 end
  local kept = tonumber(redis.call('GET', KEYS[4]) or '0')
  if kept >= fence then fence = kept + 1 end
  redis.call('SET', KEYS[1], token .. fmt(fence) .. (queued and 'q' or ''), 'PX', ttl)
  if fence > now then keepFence(fence) end
  return fence
end

-- The oldest waiter whose queue place has not lapsed, and the ttl it asked for; lapsed ones are dropped.
local function nextWaiter()
  while true do
    local head = redis.call('LINDEX', KEYS[2], 0)
    if not head then return nil end
    local place = redis.call('HGET', KEYS[3], head)
    if place then
      local sep = string.find(place, ':', 1, true)
      if tonumber(string.sub(place, 1, sep - 1)) > nowMs then
        return head, tonumber(string.sub(place, sep + 1))
      end
      redis.call('HDEL', KEYS[3], head)
    end
    redis.call('LPOP', KEYS[2])
  end
end

-- Removes token from the queue, if it is there.
local function leave(token)
  if redis.call('HDEL', KEYS[3], token) == 1 then
    redis.call('LREM', KEYS[2], 1, token)
  end
end

-- Hands the lock to the waiter that nextWaiter() returned (the head of the queue) and tells it.
local function handTo(waiter, ttl, last, floor)
  redis.call('LPOP', KEYS[2])
  redis.call('HDEL', KEYS[3], waiter)
  local fence = grant(waiter, ttl, last, floor, true)
  redis.call(publish, channel, 'g' .. waiter .. fmt(fence))
  return fence
end
`;
