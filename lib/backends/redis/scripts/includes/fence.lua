--[[
  Draws the fence of a grant, and keeps it in the fence key KEYS[4] while it is ahead of the clock.

  Needs: now    server time in µs (read-clock)
         floor  the fence must be above it: the client's floor (and the previous lease's fence,
                when the script knows it)
         kept   the value of the fence key KEYS[4], or 0
  Sets:  fence  (a local the script declares) the grant's fence
         kept   the fence, so that a further grant of the same script (several waiters taking the
                key together) draws a higher one

  Fences: a grant's fence is the server time in microseconds, raised above floor and kept. So no
  counter has to live forever: once the server clock has passed a fence, the clock alone keeps the
  next one higher, even after the keys were evicted or lost. Whenever a fence is ahead of the
  clock, the fence key keeps it until the clock has caught up.
]]
fence = now
if floor >= fence then fence = floor + 1 end
if kept >= fence then fence = kept + 1 end
if fence > now and kept < fence then
  redis.call('SET', KEYS[4], string.format('%.0f', fence), 'PX', math.floor((fence - now) / 1000) + 2)
end
kept = fence
