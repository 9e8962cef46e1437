--[[
  extend: renews a lease when the token holds it, exclusively or as a shared or limited holder.

  Input:
    KEYS[1] lease    string `<token><fence>`, with a trailing `q` once a waiter queued behind it
    KEYS[2] holders  sorted set token -> lease end (server ms) of the shared or limited holders
    KEYS[3] holding  hash token -> fence of those holders (and `mode`); expires with KEYS[2]

    ARGV[1] token (32 hex characters)
    ARGV[2] ttl in ms

  Output:
    1  the lease was renewed to ttl from now
    0  the token does not hold the lock (a shared or limited place whose lease ended is not held)

  An exclusive lease, and a token that holds nothing while nobody holds a shared or limited place,
  need no command beyond GET, PEXPIRE and EXISTS.
]]
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 32) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local place = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not place then return 0 end
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if tonumber(place) <= nowMs then return 0 end
redis.call('ZADD', KEYS[2], string.format('%.0f', nowMs + tonumber(ARGV[2])), ARGV[1])
-- The keys expire with the last lease among the holders.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
redis.call('PEXPIREAT', KEYS[2], last)
redis.call('PEXPIREAT', KEYS[3], last)
return 1
