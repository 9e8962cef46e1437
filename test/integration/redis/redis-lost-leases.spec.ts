import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { LockBackend } from '../../../lib';
import { redisBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { SpawnedRedis, type RedisServerProcess } from '../../support/redis-servers';
import { eventually } from '../../support/time';

const token = (): string => randomBytes(16).toString('hex');

describe('redisBackend when leases vanish: FLUSHALL, deleted keys, eviction policies (a spawned server)', () => {
  const spawned = new SpawnedRedis();
  let server: RedisServerProcess;
  let admin: Redis;
  const opened: LockBackend[] = [];
  let warn: jest.SpyInstance;
  const backend = (options: Record<string, unknown> = {}): LockBackend => {
    const created = redisBackend({ connection: { host: server.host, port: server.port, ...options } });
    opened.push(created);
    return created;
  };
  const warnings = (): string[] =>
    warn.mock.calls.map((call: unknown[]) => String(call[0])).filter((m) => m.includes('maxmemory-policy'));

  beforeAll(async () => {
    server = await spawned.server({
      args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'],
      config: ['user noinfo on >secret ~* &* +@all -info -config', 'user configonly on >secret ~* &* +@all -info'],
    });
    admin = spawned.admin(server);
  });
  beforeEach(async () => {
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
    warn.mockRestore();
  });
  afterAll(() => spawned.stopAll());

  describe('release', () => {
    it('returns false when FLUSHALL took the lease, and leaves the next holder alone', async () => {
      const b = backend();
      const holder = token();
      expect((await b.tryAcquire('lock:flushed', holder, 10_000)).fence).not.toBeNull();
      await admin.flushall();
      const next = token();
      expect((await b.tryAcquire('lock:flushed', next, 10_000)).fence).not.toBeNull();
      expect(await b.release('lock:flushed', holder)).toBe(false);
      expect((await admin.get(redisLockKeys('lock:flushed').lease))!.startsWith(next)).toBe(true);
      expect(await b.release('lock:flushed', next)).toBe(true);
    });

    it('returns false when the lease key was deleted, with and without waiters queued behind it', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:deleted');
      const holder = token();
      expect((await b.tryAcquire('lock:deleted', holder, 10_000)).fence).not.toBeNull();
      await admin.del(keys.lease);
      expect(await b.release('lock:deleted', holder)).toBe(false);

      const queued = token();
      expect((await b.tryAcquire('lock:deleted', holder, 10_000)).fence).not.toBeNull();
      expect((await b.tryAcquire('lock:deleted', queued, 10_000, { lease: 10_000 })).fence).toBeNull();
      await admin.del(keys.lease);
      expect(await b.release('lock:deleted', holder)).toBe(false);
      // The waiter is still first in line for the free lock.
      expect((await b.tryAcquire('lock:deleted', queued, 10_000)).fence).not.toBeNull();
    });
  });

  describe('eviction policy', () => {
    it('warns once, at the first ping, that allkeys-lru can evict leases and that only fences then protect the resource', async () => {
      const b = backend();
      await b.ping();
      expect(warnings()).toHaveLength(1);
      const [message] = warnings();
      expect(message).toContain(`Redis at 127.0.0.1:${server.port} runs with maxmemory-policy allkeys-lru`);
      expect(message).toContain('An evicted lease is a lost lock');
      expect(message).toContain('fences');
      expect(message).toContain('Set maxmemory-policy noeviction');
      const t = token();
      await b.tryAcquire('lock:warned', t, 5_000);
      await b.release('lock:warned', t);
      await b.ping();
      expect(warnings()).toHaveLength(1);
    });

    it('warns once when the first call is an acquisition', async () => {
      const b = backend();
      const tokens = Array.from({ length: 5 }, () => token());
      await Promise.all(tokens.map(async (t, i) => b.tryAcquire(`lock:first-${i}`, t, 5_000)));
      await eventually(() => warnings().length > 0, { within: 5_000, what: 'the eviction warning' });
      await Promise.all(tokens.map((t, i) => b.release(`lock:first-${i}`, t)));
      await b.ping();
      expect(warnings()).toHaveLength(1);
    });

    it('warns for volatile-* too (every lease has a TTL), and not for noeviction', async () => {
      await admin.config('SET', 'maxmemory-policy', 'volatile-ttl');
      await backend().ping();
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toContain('maxmemory-policy volatile-ttl');

      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await backend().ping();
      expect(warnings()).toHaveLength(1);
    });

    it('reads the policy with CONFIG GET when INFO is refused', async () => {
      await backend({ username: 'configonly', password: 'secret', enableReadyCheck: false }).ping();
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toContain('maxmemory-policy allkeys-lru');
    });

    it('stays silent, and works, for a user that may read neither INFO nor CONFIG', async () => {
      const b = backend({ username: 'noinfo', password: 'secret', enableReadyCheck: false });
      await b.ping();
      const t = token();
      expect((await b.tryAcquire('lock:noinfo', t, 5_000)).fence).not.toBeNull();
      expect(await b.release('lock:noinfo', t)).toBe(true);
      expect(warnings()).toHaveLength(0);
      expect(warn).not.toHaveBeenCalled();
    });
  });
});
