--[[
  Takes the oldest waiter whose queue place has not lapsed off the queue (KEYS[2] list and KEYS[3]
  hash). Lapsed places on the way are dropped.

  Needs: nowMs              server time in ms (read-clock)
  Sets:  waiter, waiterTtl  (locals the script declares) the waiter's token and the ttl it asked
                            for; both stay nil when nobody live is queued
]]
while true do
  local head = redis.call('LPOP', KEYS[2])
  if not head then break end
  local place = redis.call('HGET', KEYS[3], head)
  if place then
    redis.call('HDEL', KEYS[3], head)
    local sep = string.find(place, ':', 1, true)
    if tonumber(string.sub(place, 1, sep - 1)) > nowMs then
      waiter = head
      waiterTtl = tonumber(string.sub(place, sep + 1))
      break
    end
  end
end
