/**
 * Lua shared by the acquire and release scripts (each script is sent whole; Redis has no imports).
 * Both scripts use the same KEYS layout:
 *   KEYS[1] lease   string `<token><fence>`, or `<token><fence>q` once a waiter may have queued
 *                   behind it; expiring with the lease (PX)
 *   KEYS[2] queue   list of waiting tokens, oldest first
 *   KEYS[3] waiters hash token → `<queue place expiry, server ms>:<ttl asked for>`
 *   KEYS[4] fence   the last fence, kept only while it is ahead of the server clock
 * The lock's channel is the lease key with its last letter `l` replaced by `c` (same hash tag, and
 * the client's key prefix included, as ioredis put it before KEYS[1]).
 *
 * Fences: a grant's fence is the server time in microseconds, raised above the lock's previous
 * fence (while the lease, or the fence key, still says what it was) and above the client's floor.
 * So no counter has to live forever: once the server clock has passed a fence, the clock alone
 * keeps the next one higher, even after the keys were evicted or lost. Whenever a fence is ahead of
 * the clock, the fence key keeps it until the clock has caught up.
 *
 * The `q` mark: whenever the lease exists and a waiter is queued, the lease value ends in `q` (set
 * when a waiter joins behind a lease, and on every grant made from the queue). A lease without it
 * has nobody queued behind it, so its release needs no look at the queue. A mark can be stale (the
 * waiters left); that only sends the release down the queue path, which finds nobody.
 *
 * The parts below are pasted into the scripts where they are used rather than defined as Lua
 * functions: a local function is a new closure on every call of a script, which costs Redis more
 * than the code it saves. The common cases (a free lock with nobody queued; a release of an
 * unmarked lease) come first in each script and run the fewest commands.
 */

/**
 * Refuses the call, before it changes anything, when the caller's Redis user may not publish on
 * the lock's channel: `publish` and `channel` are Lua expressions (the command name and the
 * channel). A script stops at the first command Redis refuses but keeps what it wrote before, so
 * without this check a refused PUBLISH would fail a release that had already handed the lock over.
 * `redis.acl_check_cmd` exists from Redis 7.0 (whose users get no channel rights by default); on
 * older servers the scripts publish with `redis.pcall`, so a refused message cannot fail a call
 * whose writes are done (the waiter then finds its grant at its next re-check).
 */
export function checkPublishRight(publish: string, channel: string): string {
  return `
if redis.acl_check_cmd and not redis.acl_check_cmd(${publish}, ${channel}, 'r') then
  return redis.error_reply('NOPERM this user may not ' .. ${publish} .. ' to channel ' .. ${channel} .. '; nothing was changed')
end
`;
}

/** Reads the server clock into `now` (µs) and `nowMs`. */
export const READ_CLOCK = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local nowMs = math.floor(now / 1000)
`;

/**
 * Takes the oldest waiter whose queue place has not lapsed off the queue (list and hash), into
 * `waiter` and the ttl it asked for into `waiterTtl` (locals the script declares); both stay nil
 * when there is none. Lapsed places on the way are dropped. Needs `nowMs`.
 */
export const TAKE_NEXT_WAITER = `
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
`;

/**
 * Grants the lock to `holder` for `grantTtl` ms and sets `fence` (a local the script declares) to its
 * fence: the clock, raised above `last` (the previous lease's fence, when the script knows it),
 * `floor` and `kept` (the fence key's value, or 0). `marked` says whether the lease carries the `q`
 * mark: always, never, or when the given Lua expression is true. Keeps the fence key while the
 * fence is ahead of the clock.
 */
export function grantTo(holder: string, grantTtl: string, options: { last?: string; marked: boolean | string }): string {
  const { last, marked } = options;
  const mark = marked === true ? ` .. 'q'` : marked === false ? '' : ` .. (${marked} and 'q' or '')`;
  return `
fence = now
${last ? `if ${last} >= fence then fence = ${last} + 1 end` : ''}
if floor >= fence then fence = floor + 1 end
if kept >= fence then fence = kept + 1 end
redis.call('SET', KEYS[1], ${holder} .. string.format('%.0f', fence)${mark}, 'PX', ${grantTtl})
if fence > now and kept < fence then
  redis.call('SET', KEYS[4], string.format('%.0f', fence), 'PX', math.floor((fence - now) / 1000) + 2)
end
`;
}
