import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import Redlock from 'redlock';
import { Mutex } from 'redis-semaphore';
import type { LockUnderTest } from './lock-bench.harness';

const COMPARE_AND_DELETE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * The floor: what a hand-written ioredis lock costs at least, one SET NX PX to take it and one
 * EVALSHA compare-and-delete to give it back. It has no waiting (it retries on the next tick), so
 * it is an anchor for uncontended throughput only.
 */
export function rawIoredisFloor(client: Redis, ttl = 30_000): LockUnderTest {
  client.defineCommand('benchFloorRelease', { numberOfKeys: 1, lua: COMPARE_AND_DELETE });
  const release = (
    client as unknown as { benchFloorRelease(key: string, token: string): Promise<number> }
  ).benchFloorRelease.bind(client);
  return async (key) => {
    const token = randomBytes(16).toString('hex');
    for (let i = 0; ; i++) {
      if ((await client.set(key, token, 'PX', ttl, 'NX')) === 'OK') break;
      if (i > 1_000_000) throw new Error('floor lock never became free');
      await new Promise((resolve) => setImmediate(resolve));
    }
    return async () => {
      await release(key, token);
    };
  };
}

/** redlock 5.0.0-beta.2 on one client, with its default retry delay and jitter, retrying without limit. */
export function redlockAnchor(client: Redis, ttl = 30_000): LockUnderTest {
  const redlock = new Redlock([client], { retryCount: -1 });
  redlock.on('error', () => undefined);
  return async (key) => {
    const lock = await redlock.acquire([key], ttl);
    return async () => {
      await lock.release();
    };
  };
}

/** redis-semaphore 5.8.0 `Mutex` with its default retry interval. */
export function redisSemaphoreAnchor(client: Redis, ttl = 30_000): LockUnderTest {
  return async (key) => {
    const mutex = new Mutex(client, key, { lockTimeout: ttl, acquireTimeout: 60_000 });
    await mutex.acquire();
    return () => mutex.release();
  };
}
