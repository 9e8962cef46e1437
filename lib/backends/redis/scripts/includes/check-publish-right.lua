--[[
  Refuses the call, before it changes anything, when the caller's Redis user may not publish on
  the lock's channel.

  Needs: publish   'PUBLISH' or 'SPUBLISH'
         KEYS[5]   the lock's channel

  A script stops at the first command Redis refuses but keeps what it wrote before, so without
  this check a refused PUBLISH would fail a release that had already handed the lock over.
  `redis.acl_check_cmd` exists from Redis 7.0 (whose users get no channel rights by default); on
  older servers the scripts publish with `redis.pcall`, so a refused message cannot fail a call
  whose writes are done (the waiter then finds its grant at its next re-check).
]]
if redis.acl_check_cmd and not redis.acl_check_cmd(publish, KEYS[5], 'r') then
  return redis.error_reply('NOPERM this user may not ' .. publish .. ' to channel ' .. KEYS[5] .. '; nothing was changed')
end
