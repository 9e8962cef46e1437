--[[
  Makes the holders' keys (KEYS[6], KEYS[7]) expire with the last lease among them (PEXPIREAT, the
  server clock), so that nothing of them outlives its leases.

  Needs: nothing beyond the keys; call it after a change of the holders while some remain.
]]
do
  local last = redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')[2]
  if last then
    redis.call('PEXPIREAT', KEYS[6], last)
    redis.call('PEXPIREAT', KEYS[7], last)
  end
end
