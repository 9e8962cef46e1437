--[[
  Grants the lock exclusively: the lease KEYS[1] becomes `<holder><fence><mark>`, expiring in
  grantTtl ms.

  Needs: holder    the token that gets the lock
         grantTtl  its lease, in ms
         mark      'q' when waiters may be queued behind the lease, '' when nobody is
         now, floor, kept  as includes/fence.lua needs them
  Sets:  fence     (a local the script declares) the grant's fence (includes/fence.lua)
]]
--- @include "fence"
redis.call('SET', KEYS[1], holder .. string.format('%.0f', fence) .. mark, 'PX', grantTtl)
