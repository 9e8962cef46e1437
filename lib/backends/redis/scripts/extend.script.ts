/**
 * extend: renews a lease when the token holds it.
 *
 * KEYS[1] lease (string `<token><fence>`)
 * ARGV[1] token (32 hex characters)
 * ARGV[2] ttl in ms
 *
 * Returns 1 when the lease was renewed to ttl from now, 0 when the token does not hold the lock.
 */
export const EXTEND_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 32) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;
