/**
 * What a Redis user needs to run the lock backend (README, "ACL rights"), and the advice added to a
 * NOPERM refusal so that the error says what to grant.
 */

/** Commands of a single server or Sentinel-managed master; a Cluster uses the sharded ones and CLUSTER SLOTS. */
const COMMANDS =
  'EVALSHA, EVAL, PING, INFO, SUBSCRIBE, UNSUBSCRIBE and PUBLISH (SSUBSCRIBE, SUNSUBSCRIBE and SPUBLISH on a Cluster)';

/** A command refused by the server's ACL, sent by the client or called inside a script. */
const REFUSAL = /NOPERM|The user executing the script can't/i;
/** A refusal that is about pub/sub channels: SUBSCRIBE's own, and the lock scripts' PUBLISH check. */
const CHANNEL_REFUSAL = /NOPERM.*channel|can't publish to the channel/i;
/** The channel named in the lock scripts' refusal. */
const NAMED_CHANNEL = /to channel (\S+?);/;

/**
 * A channel pattern that covers `channel` and the other lock channels next to it: the client's key
 * prefix and the hash tag up to the first `:` of the lock key (`app:{lock:orders:42}:c` →
 * `app:{lock:*`), or `{#*` for the keys tagged by their SHA-1.
 */
export function lockChannelPattern(channel: string): string {
  const open = channel.indexOf('{');
  if (open < 0) return `${channel}*`;
  if (channel[open + 1] === '#') return `${channel.slice(0, open)}{#*`;
  const colon = channel.indexOf(':', open);
  const close = channel.indexOf('}', open);
  const end = colon >= 0 && (close < 0 || colon < close) ? colon + 1 : open + 1;
  return `${channel.slice(0, end)}*`;
}

/**
 * Advice for a refused command, to follow its message; undefined when the error is no refusal.
 * `channel` is the lock channel involved, when the caller knows it.
 */
export function refusalAdvice(message: string, channel?: string): string | undefined {
  if (!REFUSAL.test(message)) return undefined;
  if (CHANNEL_REFUSAL.test(message)) {
    const named = channel ?? NAMED_CHANNEL.exec(message)?.[1];
    const pattern = named ? `"&${lockChannelPattern(named)}"` : 'a pattern "&<prefix>*" covering the lock channels';
    return (
      `The Redis user has no right to ${named ? `the lock channel "${named}"` : 'the lock channels'}: grant it ${pattern} ` +
      `(the same pattern as its lock keys) or "allchannels", and the commands ${COMMANDS}. ` +
      'Redis 7 gives users no channel rights by default (acl-pubsub-default resetchannels).'
    );
  }
  return (
    'The Redis user lacks a right the lock backend needs: read and write on the lock keys ' +
    '("~{lock:*" for the default keyPrefix, with the client\'s own keyPrefix in front), the same pattern for the channels ' +
    `("&{lock:*"), and the commands ${COMMANDS}, with GET, SET, MGET, EXISTS, DEL, PEXPIRE, PTTL, TIME, LPOP, RPUSH, LREM, ` +
    'HGET, HSET and HDEL, which the lock scripts call (and, for shared and limited locks, ZADD, ZREM, ZSCORE, ZCARD, ' +
    'ZRANGE, ZRANGEBYSCORE, ZREMRANGEBYSCORE, LINDEX and PEXPIREAT).'
  );
}
