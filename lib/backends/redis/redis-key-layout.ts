import { createHash } from 'node:crypto';

/** The Redis names one lock uses. They all carry the same hash tag, so they live in one Cluster slot. */
export interface RedisLockKeys {
  /** String: `<token><fence>` (with a trailing `q` once a waiter queued behind it) while held, expiring with the lease (PX). */
  readonly lease: string;
  /** List: tokens of the queued waiters, oldest first. */
  readonly queue: string;
  /** Hash: token → `<queue place expiry, server ms>:<ttl asked for>`. */
  readonly waiters: string;
  /** String: the last fence, kept only while it is ahead of the server clock (expires when the clock passes it). */
  readonly fence: string;
  /**
   * Sorted set: token → lease end (server ms) of each shared or limited holder (rule 7 of the SPI);
   * expires with the last of those leases.
   */
  readonly holders: string;
  /**
   * Hash: token → fence of each shared or limited holder, and `mode` → how they hold the key
   * (`shared` or `limit:<n>`); exists exactly while `holders` does, and expires with it.
   */
  readonly holding: string;
  /** Pub/sub channel (classic or sharded) of the lock's releases and hand-offs. */
  readonly channel: string;
}

/**
 * Maps a lock key to its Redis names: `{<key>}:l`, `{<key>}:q`, `{<key>}:w`, `{<key>}:f`,
 * `{<key>}:h`, `{<key>}:s` and channel `{<key>}:c`. The whole key is the hash tag, so every name of one lock hashes to the same
 * Cluster slot (no CROSSSLOT) and different locks spread over the slots.
 *
 * A key containing `}` cannot be a hash tag as it is, so it is tagged by its SHA-1 instead:
 * `{#<sha1>}:<key>:l`. The two forms never collide: the first has exactly one `}` up to its suffix,
 * the second at least two.
 */
export function redisLockKeys(key: string): RedisLockKeys {
  const base = key.includes('}') ? `{#${createHash('sha1').update(key).digest('hex')}}:${key}` : `{${key}}`;
  return {
    lease: `${base}:l`,
    queue: `${base}:q`,
    waiters: `${base}:w`,
    fence: `${base}:f`,
    holders: `${base}:h`,
    holding: `${base}:s`,
    channel: `${base}:c`,
  };
}

/** The seven names of a lock in the order the acquire and release scripts take them as KEYS[1..7]. */
export function lockScriptKeys(keys: RedisLockKeys): string[] {
  return [keys.lease, keys.queue, keys.waiters, keys.fence, keys.channel, keys.holders, keys.holding];
}
