--[[
  Hands the key to the oldest live waiters of the queue (KEYS[2] list, KEYS[3] hash), in order, as
  many as may hold it together (rule 7 of the SPI): one exclusive waiter; or a run of shared
  waiters; or limited waiters up to the limit. It stops at the first live waiter that may not hold
  the key with the holders it has by then. Lapsed places on the way are dropped. Each grant to
  another token is published on the lock's channel (`g<token><fence>`).

  A place is `<expiry, server ms>:<ttl asked for>` for an exclusive waiter, with `:s` after it for a
  shared one and `:<n>` for one limited to n.

  Needs: token        the calling token; when it is the waiter next in turn it takes the key for
                      callerTtl in callerMode (what it asks for now), unless it already holds a
                      place (held), in which case its place in the queue is dropped
         callerMode   '' exclusive, 's' shared, '<n>' limited to n
         callerTtl    its ttl, in ms
         held         true when the calling token already holds a place
         count, sharing  the live shared/limited holders (includes/prune-holders.lua); 0 and nil
                      when nobody holds the key, which the exclusive lease KEYS[1] must not either
         publish      'PUBLISH' or 'SPUBLISH'
         now, nowMs, floor, kept  (read-clock, includes/fence.lua)
  Sets:  handed       (a table the script declares) waiter, fence, waiter, fence, ... of the grants
                      to other tokens
         exclusiveTo  the token that took the lease KEYS[1] exclusively, if one did
         callerFence  the calling token's fence, when it took the key as the waiter next in turn
         queueEmpty   true when nobody is left in the queue
         fence, count, sharing, holdersChanged  (includes/grant.lua, includes/grant-holder.lua)
  Error NOPERM before the first grant or take from the queue when the Redis user may not publish
  (includes/check-publish-right.lua); only lapsed places can have been dropped by then.

  With nobody holding the key every waiter fits, so the head is taken with LPOP (the exclusive
  path needs no command beyond those it always used); with holders, the head is looked at first
  (LINDEX) and taken only when it fits.
]]
local checked = false
while not exclusiveTo do
  local head
  if count == 0 then
    if not checked then
      --- @include "check-publish-right"
      checked = true
    end
    head = redis.call('LPOP', KEYS[2])
  else
    head = redis.call('LINDEX', KEYS[2], 0)
  end
  if not head then
    queueEmpty = true
    break
  end
  local place = redis.call('HGET', KEYS[3], head)
  local placeUntil, placeTtl, placeMode = 0, 0, ''
  if place then
    local sep = string.find(place, ':', 1, true)
    local sep2 = string.find(place, ':', sep + 1, true)
    placeUntil = tonumber(string.sub(place, 1, sep - 1))
    if sep2 then
      placeTtl = tonumber(string.sub(place, sep + 1, sep2 - 1))
      placeMode = string.sub(place, sep2 + 1)
    else
      placeTtl = tonumber(string.sub(place, sep + 1))
    end
  end
  local isCaller = head == token
  if isCaller then
    placeTtl, placeMode = callerTtl, callerMode
  end
  if placeUntil <= nowMs or (isCaller and held) then
    -- Lapsed (or the caller, which holds a place already): the place goes.
    if count > 0 then redis.call('LPOP', KEYS[2]) end
    if place then redis.call('HDEL', KEYS[3], head) end
  else
    local fits = count == 0
    if not fits and placeMode ~= '' then
      if placeMode == 's' then
        fits = sharing == 'shared'
      else
        fits = sharing == 'limit:' .. placeMode and count < tonumber(placeMode)
      end
    end
    if not fits then break end
    if not checked then
      --- @include "check-publish-right"
      checked = true
    end
    if count > 0 then redis.call('LPOP', KEYS[2]) end
    redis.call('HDEL', KEYS[3], head)
    local holder, grantTtl = head, placeTtl
    if placeMode == '' then
      local mark = 'q'
      --- @include "grant"
      exclusiveTo = head
    else
      if count == 0 then
        sharing = placeMode == 's' and 'shared' or ('limit:' .. placeMode)
      end
      --- @include "grant-holder"
    end
    if isCaller then
      callerFence = fence
    else
      redis.pcall(publish, KEYS[5], 'g' .. head .. string.format('%.0f', fence))
      handed[#handed + 1] = head
      handed[#handed + 1] = fence
    end
  end
end
