--[[
  extend: renews a lease when the token holds it.

  Input:
    KEYS[1] lease  string `<token><fence>`, with a trailing `q` once a waiter queued behind it

    ARGV[1] token (32 hex characters)
    ARGV[2] ttl in ms

  Output:
    1  the lease was renewed to ttl from now
    0  the token does not hold the lock
]]
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 32) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
