import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';

/** The machine's shared Redis (REDIS_URL, default redis://127.0.0.1:6379): used, never flushed or reconfigured. */
export const SHARED_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** ioredis options for the shared Redis, with every key under `keyPrefix`. */
export function sharedRedisOptions(keyPrefix: string): RedisOptions {
  const url = new URL(SHARED_REDIS_URL);
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    keyPrefix,
  };
}

/** A key prefix of its own for one test run on the shared Redis. */
export function testRunPrefix(what: string): string {
  return `ndl-test:${what}:${randomBytes(6).toString('hex')}:`;
}

/** Deletes every key under `prefix` on the shared Redis (bounded SCAN). Returns how many it deleted. */
export async function deleteSharedKeys(prefix: string): Promise<number> {
  const redis = new Redis({ ...sharedRedisOptions(''), lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    let deleted = 0;
    for (let i = 0; i < 10_000; i++) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) deleted += await redis.unlink(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
    return deleted;
  } finally {
    redis.disconnect();
  }
}
