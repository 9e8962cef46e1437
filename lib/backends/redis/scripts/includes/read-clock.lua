--[[
  Reads the server clock.

  Declares: now    server time in µs
            nowMs  server time in ms
]]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local nowMs = math.floor(now / 1000)
