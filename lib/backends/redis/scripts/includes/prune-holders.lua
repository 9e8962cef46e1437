--[[
  Drops the shared or limited holders (KEYS[6], KEYS[7]) whose lease has ended, and reads how the
  key is held by the others.

  Needs: nowMs    server time in ms (read-clock)
  Sets:  count    (a local the script declares) the number of live holders
         sharing  (a local the script declares) 'shared' or 'limit:<n>' while count > 0

  A holder's lease ends at its score, by the server clock; the two keys expire with the last lease
  (includes/holders-expiry.lua), so a crashed holder's place comes back by itself. Should the hash
  have gone without the sorted set (an eviction of one key), the holders are lost as an evicted
  lease is: both keys go.
]]
local ended = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', string.format('%.0f', nowMs))
if #ended > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', string.format('%.0f', nowMs))
  for i = 1, #ended, 1000 do
    redis.call('HDEL', KEYS[7], unpack(ended, i, math.min(i + 999, #ended)))
  end
end
count = redis.call('ZCARD', KEYS[6])
if count == 0 then
  redis.call('DEL', KEYS[7])
else
  sharing = redis.call('HGET', KEYS[7], 'mode')
  if not sharing then
    redis.call('DEL', KEYS[6], KEYS[7])
    count, sharing = 0, nil
  end
end
