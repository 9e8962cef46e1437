--[[
  Grants a shared or limited place (rule 7 of the SPI): `holder` joins the holders KEYS[6] (sorted
  set token -> lease end, server ms) with its fence in KEYS[7] (hash token -> fence, and `mode`).

  Needs: holder    the token that gets the place
         grantTtl  its lease, in ms
         sharing   how the key is held: 'shared' or 'limit:<n>' (written to KEYS[7] with the first holder)
         count     the number of live holders before this one
         nowMs     server time in ms (read-clock)
         now, floor, kept  as includes/fence.lua needs them
  Sets:  fence     (a local the script declares) the grant's fence (includes/fence.lua)
         count     one more
         holdersChanged  true: the script ends with includes/holders-expiry.lua
]]
--- @include "fence"
redis.call('ZADD', KEYS[6], string.format('%.0f', nowMs + grantTtl), holder)
if count == 0 then
  redis.call('HSET', KEYS[7], holder, string.format('%.0f', fence), 'mode', sharing)
else
  redis.call('HSET', KEYS[7], holder, string.format('%.0f', fence))
end
count = count + 1
holdersChanged = true
