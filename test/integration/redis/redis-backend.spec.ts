import { randomBytes } from 'node:crypto';
import { createServer, Socket } from 'node:net';
import { Redis } from 'ioredis';
import { InvalidLockOptionsError, LockBackendError, type LockBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisBackend, RedisLockBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { lockScripts } from '../../../lib/backends/redis/redis-lock.scripts';
import { textDigest } from '../../../lib/backends/script-text';
import { deleteSharedKeys, SHARED_REDIS_URL, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';
import { eventually, sleep } from '../../support/time';

const prefix = testRunPrefix('backend');
const token = (): string => randomBytes(16).toString('hex');

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function serverMicros(redis: Redis): Promise<bigint> {
  const [seconds, micros] = await redis.time();
  return BigInt(seconds) * 1_000_000n + BigInt(micros);
}

describe('redisBackend on the shared Redis', () => {
  let raw: Redis;
  const opened: LockBackend[] = [];
  const backend = (extra: Record<string, unknown> = {}): RedisLockBackend => {
    const created = redisBackend({ connection: sharedRedisOptions(prefix), ...extra }) as RedisLockBackend;
    opened.push(created);
    return created;
  };

  beforeAll(() => {
    raw = new Redis(sharedRedisOptions(prefix));
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });
  afterAll(async () => {
    raw.disconnect();
    await deleteSharedKeys(prefix);
  });

  describe('options', () => {
    it.each([
      [{ url: SHARED_REDIS_URL, connection: {} }, /give only one of .*url and connection/],
      [{ url: 'http://127.0.0.1:6379' }, /url must be a string starting with redis:\/\//],
      [{ quorum: ['redis://127.0.0.1:1', 'redis://127.0.0.1:2'] }, /odd number \(at least 3\).*got 2 nodes/],
      [{ quorum: ['redis://a:1', 'redis://a:2', 'redis://a:3', 'redis://a:4'] }, /got 4 nodes/],
      [{ commandTimeout: 0 }, /commandTimeout must be an integer number of milliseconds from 1/],
      [{ recheckInterval: 1.5 }, /recheckInterval must be an integer/],
      [{ waitForReplicas: { replicas: 1 } }, /waitForReplicas.timeout is required/],
      [{ waitForReplicas: { replicas: 0, timeout: 10 } }, /waitForReplicas.replicas must be an integer from 1/],
      [{ client: {} }, /client must be an ioredis Redis or Cluster instance/],
      [{ ttl: 5 }, /unknown option "ttl"/],
      [{ cluster: { nodes: [] } }, /cluster.nodes must be a non-empty array/],
    ])('rejects %j with a message that says what is allowed', (options, message) => {
      expect(() => redisBackend(options as never)).toThrow(InvalidLockOptionsError);
      expect(() => redisBackend(options as never)).toThrow(message);
    });

    it('opens no connection when the options are bad', async () => {
      const name = `ndl-invalid-${randomBytes(4).toString('hex')}`;
      expect(() =>
        redisBackend({ connection: { ...sharedRedisOptions(prefix), connectionName: name }, recheckInterval: -1 }),
      ).toThrow(InvalidLockOptionsError);
      await sleep(100);
      expect((await raw.client('LIST')) as string).not.toContain(name);
    });

    it('never echoes a password from a bad URL', () => {
      for (const url of ['redis://user:hunter2@127.0.0.1:port', 'http://user:hunter2@127.0.0.1:6379']) {
        let thrown: unknown;
        try {
          opened.push(redisBackend({ url }));
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(InvalidLockOptionsError);
        expect((thrown as Error).message).not.toContain('hunter2');
      }
    });
  });

  describe('connections', () => {
    it('fails fast with host and port, without credentials, when the server is down', async () => {
      const port = await closedPort();
      const down = redisBackend({ url: `redis://locker:hunter2@127.0.0.1:${port}`, commandTimeout: 25_000 });
      opened.push(down);
      const error = (await Promise.resolve(down.tryAcquire('lock:x', token(), 1_000)).catch(
        (e: unknown) => e,
      )) as LockBackendError;
      expect(error).toBeInstanceOf(LockBackendError);
      // Refused at once: the message is the connection error, not the 25 s timeout.
      expect(error.message).toContain(`cannot reach Redis at 127.0.0.1:${port}`);
      expect(error.message).toContain('ECONNREFUSED');
      expect(error.message).not.toContain('hunter2');
      expect(error.message).not.toContain('locker');
      // Later calls fail the same way while the server stays down; none reports "busy" or "not held".
      await expect(down.extend('lock:x', token(), 1_000)).rejects.toThrow(`127.0.0.1:${port}`);
      await expect(down.release('lock:x', token())).rejects.toBeInstanceOf(LockBackendError);
      await expect(down.ping()).rejects.toBeInstanceOf(LockBackendError);
      await expect(down.subscribe('lock:x', () => undefined)).rejects.toBeInstanceOf(LockBackendError);

      const locks = new DistributedLockService({ backend: down, keyPrefix: 'lock:', ttl: 1_000, wait: 1_000 });
      await expect(locks.acquire('x')).rejects.toThrow(`127.0.0.1:${port}`);
    });

    it('fails fast with the addresses it tried when a Cluster or the sentinels are down', async () => {
      const [a, b] = [await closedPort(), await closedPort()];
      const cluster = redisBackend({
        cluster: {
          nodes: [
            { host: '127.0.0.1', port: a },
            { host: '127.0.0.1', port: b },
          ],
        },
        commandTimeout: 25_000,
      });
      const sentinel = redisBackend({
        connection: { sentinels: [{ host: '127.0.0.1', port: a }], name: 'locks', password: 'hunter2' },
        commandTimeout: 25_000,
      });
      opened.push(cluster, sentinel);
      const clusterError = (await Promise.resolve(cluster.tryAcquire('lock:x', token(), 1_000)).catch(
        (e: unknown) => e,
      )) as Error;
      expect(clusterError).toBeInstanceOf(LockBackendError);
      expect(clusterError.message).toContain(
        `cannot reach Redis Cluster (startup nodes 127.0.0.1:${a}, 127.0.0.1:${b})`,
      );
      const sentinelError = (await Promise.resolve(sentinel.tryAcquire('lock:x', token(), 1_000)).catch(
        (e: unknown) => e,
      )) as Error;
      expect(sentinelError).toBeInstanceOf(LockBackendError);
      expect(sentinelError.message).toContain(`cannot reach Redis master "locks" via Sentinel 127.0.0.1:${a}`);
      expect(sentinelError.message).not.toContain('hunter2');
    });

    it('leaves a client the user passed in open, and closes the connections it opened', async () => {
      const client = new Redis(sharedRedisOptions(prefix));
      try {
        const users = redisBackend({ client }) as RedisLockBackend;
        const t = token();
        expect((await users.tryAcquire('lock:own', t, 5_000)).fence).not.toBeNull();
        await users.subscribe('lock:own', () => undefined);
        await users.release('lock:own', t);
        await users.close();
        expect(await client.ping()).toBe('PONG');
        await expect(users.ping()).rejects.toThrow('closed');

        const name = `ndl-owned-${randomBytes(4).toString('hex')}`;
        const owned = redisBackend({ connection: { ...sharedRedisOptions(prefix), connectionName: name } });
        await owned.subscribe('lock:own', () => undefined);
        // The command connection and the subscriber connection.
        expect(((await raw.client('LIST')) as string).split(`name=${name} `)).toHaveLength(3);
        await owned.close();
        // The server drops a closed connection from its list once it has read the close.
        await eventually(async () => !((await raw.client('LIST')) as string).includes(`name=${name} `), {
          what: 'both connections to be gone from CLIENT LIST',
        });
      } finally {
        client.disconnect();
      }
    });

    it('has closed the sockets it opened once close() resolves', async () => {
      // The sockets themselves, not their number: sockets of earlier tests may still be closing.
      const openSockets = (): Set<unknown> =>
        new Set(
          (process as unknown as { _getActiveHandles(): unknown[] })
            ._getActiveHandles()
            .filter((h) => h instanceof Socket),
        );
      // The file's own client connected first: it is no socket of the backend's.
      await raw.ping();
      const before = openSockets();
      const owned = redisBackend({ connection: sharedRedisOptions(prefix) });
      opened.push(owned);
      const t = token();
      expect((await owned.tryAcquire('lock:sockets', t, 5_000)).fence).not.toBeNull();
      await owned.subscribe('lock:sockets', () => undefined);
      await owned.release('lock:sockets', t);
      // The command connection and the subscriber connection.
      const its = [...openSockets()].filter((socket) => !before.has(socket));
      expect(its.length).toBeGreaterThanOrEqual(2);
      // ioredis's disconnect() only asks its socket to close; close() waits until it has.
      await owned.close();
      const after = openSockets();
      expect(its.filter((socket) => after.has(socket)).length).toBe(0);
    });

    it('works through a user client with its own key prefix, hand-offs between processes included', async () => {
      const first = new Redis(sharedRedisOptions(`${prefix}{app}:`));
      const second = new Redis(sharedRedisOptions(`${prefix}{app}:`));
      try {
        const a = new DistributedLockService({
          backend: redisBackend({ client: first }),
          keyPrefix: 'lock:',
          ttl: 5_000,
          wait: 5_000,
        });
        const b = new DistributedLockService({
          backend: redisBackend({ client: second }),
          keyPrefix: 'lock:',
          ttl: 5_000,
          wait: 5_000,
        });
        const held = (await a.tryAcquire('prefixed'))!;
        expect(await raw.exists(`{app}:${redisLockKeys('lock:prefixed').lease}`)).toBe(1);
        const waiting = b.acquire('prefixed');
        await sleep(50);
        await a.release(held);
        expect((await waiting).fence).toBeGreaterThan(held.fence);
        await a.shutdown();
        await b.shutdown();
        expect(await first.ping()).toBe('PONG');
      } finally {
        first.disconnect();
        second.disconnect();
      }
    });

    it('answers every command of a burst sent in one tick, the user’s own commands on the same client among them', async () => {
      const client = new Redis(sharedRedisOptions(prefix));
      try {
        const b = redisBackend({ client });
        await b.ping();
        const tokens = Array.from({ length: 200 }, () => token());
        // All in one tick: the backend's commands and the user's interleaved on one socket.
        const grants = tokens.map((t, i) => Promise.resolve(b.tryAcquire(`lock:burst-${i % 50}`, t, 10_000)));
        const own = tokens.map((t, i) => client.set(`burst-own-${i}`, t));
        const fences = (await Promise.all(grants)).map((r) => r.fence);
        expect(await Promise.all(own)).toEqual(tokens.map(() => 'OK'));
        expect(fences.filter((f) => f !== null)).toHaveLength(50);
        expect(await client.get('burst-own-199')).toBe(tokens[199]);
        // A lone command after the burst goes out too.
        expect(await b.release('lock:burst-0', tokens[0])).toBe(true);
        await b.close();
      } finally {
        client.disconnect();
      }
    });

    it('waits in close() for the release it sends in the background after a failed attempt', async () => {
      const b = backend();
      // A key of the lock holds another type: the attempt fails on the server, so the backend gives
      // back in the background whatever the attempt may have taken.
      await raw.set(redisLockKeys('lock:failed-attempt').waiters, 'not a hash');
      let letGo!: () => void;
      const gate = new Promise<void>((resolve) => (letGo = resolve));
      let backgroundRelease: Promise<unknown> | undefined;
      let releaseSettled = false;
      const release = b.release.bind(b);
      // The background release is held at a gate before it reaches the real release.
      b.release = (key: string, t: string): Promise<boolean> => {
        const sent = gate.then(() => release(key, t)).finally(() => (releaseSettled = true));
        backgroundRelease = sent;
        return sent;
      };
      const failure = (await b.tryAcquire('lock:failed-attempt', token(), 5_000).catch((e: unknown) => e)) as Error;
      expect(failure).toBeInstanceOf(LockBackendError);
      expect(backgroundRelease).toBeDefined();

      let closed = false;
      const closing = b.close().then(() => (closed = true));
      await Promise.race([closing, sleep(300)]);
      expect(closed).toBe(false);
      letGo();
      await closing;
      expect(releaseSettled).toBe(true);
      // It ran on the connection before it closed: the server answered it (WRONGTYPE), not a closed client.
      const answer = (await backgroundRelease!.catch((e: unknown) => e)) as Error;
      expect(answer.message).toMatch(/WRONGTYPE/);
    });

    it('reports a script the server refused as LockBackendError naming the endpoint, never as busy or not held', async () => {
      const b = backend();
      // Keys of the locks hold other types, so a command of each script fails on the server.
      await raw.set(redisLockKeys('lock:wrongtype').waiters, 'not a hash');
      await raw.hset(redisLockKeys('lock:wrongtype-lease').lease, 'x', '1');
      for (const call of [
        () => b.tryAcquire('lock:wrongtype', token(), 5_000),
        () => b.release('lock:wrongtype', token()),
        () => b.extend('lock:wrongtype-lease', token(), 5_000),
      ]) {
        const error = (await call().catch((e: unknown) => e)) as Error;
        expect(error).toBeInstanceOf(LockBackendError);
        expect(error.message).toMatch(/127\.0\.0\.1:6379 failed: .*WRONGTYPE/);
      }
    });

    it('registers its scripts under names that carry a digest of their text', async () => {
      const client = new Redis(sharedRedisOptions(prefix));
      try {
        redisBackend({ client });
        const scripts = lockScripts();
        for (const [command, script] of Object.entries(scripts)) {
          expect(script.name).toBe(`distributedLock_${command}_${textDigest(String(script.numberOfKeys), script.lua)}`);
          expect(typeof (client as unknown as Record<string, unknown>)[script.name]).toBe('function');
        }
      } finally {
        client.disconnect();
      }
    });
  });

  describe('fences', () => {
    it('carry the server clock: a fence is at least the server time in microseconds when it was granted', async () => {
      const b = backend();
      const before = await serverMicros(raw);
      const { fence } = await b.tryAcquire('lock:clock', token(), 5_000);
      const after = await serverMicros(raw);
      expect(fence).not.toBeNull();
      expect(fence!).toBeGreaterThanOrEqual(before);
      expect(fence!).toBeLessThanOrEqual(after + 1_000n);
    });

    it('keep increasing when every key of the lock was deleted, as an eviction or a restart would', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:evicted');
      let last = 0n;
      for (let i = 0; i < 50; i++) {
        const t = token();
        const { fence } = await b.tryAcquire('lock:evicted', t, 5_000);
        expect(fence!).toBeGreaterThan(last);
        last = fence!;
        if (i % 2) await raw.unlink(keys.lease, keys.queue, keys.waiters, keys.fence);
        else await b.release('lock:evicted', t);
      }
    });

    it('stay above a fence that ran ahead of the server clock, for every client, until the clock catches up', async () => {
      const a = backend();
      const fresh = backend();
      const keys = redisLockKeys('lock:ahead');
      // As after a failover to a server whose clock is behind: the last fence is a minute ahead.
      const ahead = (await serverMicros(raw)) + 60_000_000n;
      await raw.set(keys.fence, ahead.toString(), 'PX', 60_000);
      const t1 = token();
      const first = await a.tryAcquire('lock:ahead', t1, 100);
      expect(first.fence).toBe(ahead + 1n);
      // The lease expires while its fence is still ahead of the clock.
      await sleep(200);
      const t2 = token();
      const second = await fresh.tryAcquire('lock:ahead', t2, 5_000);
      expect(second.fence!).toBeGreaterThan(first.fence!);
      await fresh.release('lock:ahead', t2);
      expect(BigInt((await raw.get(keys.fence))!)).toBe(second.fence);
      // This process has seen that fence: its other locks are fenced above it too.
      const t3 = token();
      const other = await a.tryAcquire('lock:ahead-other', t3, 5_000);
      expect(other.fence!).toBeGreaterThan(first.fence!);
      // And a client that never saw it still gets a higher one there: the fence key keeps it.
      await a.release('lock:ahead-other', t3);
      const unaware = backend();
      expect((await unaware.tryAcquire('lock:ahead-other', token(), 5_000)).fence!).toBeGreaterThan(other.fence!);
    });

    it('stay above a fence ahead of the server clock through queue hand-offs too', async () => {
      const a = backend();
      const keys = redisLockKeys('lock:ahead-queue');
      const ahead = (await serverMicros(raw)) + 60_000_000n;
      await raw.set(keys.fence, ahead.toString(), 'PX', 60_000);
      const holder = token();
      const waiter = token();
      const first = await a.tryAcquire('lock:ahead-queue', holder, 5_000);
      expect(first.fence).toBe(ahead + 1n);
      expect((await a.tryAcquire('lock:ahead-queue', waiter, 5_000, { lease: 5_000 })).fence).toBeNull();
      // Handed over by the release, from a client that never saw the fence.
      const unaware = backend();
      expect(await unaware.release('lock:ahead-queue', holder)).toBe(true);
      const handed = await a.tryAcquire('lock:ahead-queue', waiter, 5_000);
      expect(handed.fence!).toBeGreaterThan(first.fence!);
      // The last holder leaves with nobody queued: its fence stays the floor of the next grant.
      expect(await unaware.release('lock:ahead-queue', waiter)).toBe(true);
      const later = await backend().tryAcquire('lock:ahead-queue', token(), 5_000);
      expect(later.fence!).toBeGreaterThan(handed.fence!);
    });

    it('cost no memory once a lock is released: no key of it stays behind', async () => {
      const b = backend();
      const locks = new DistributedLockService({ backend: b, keyPrefix: 'lock:', ttl: 5_000, wait: 5_000 });
      const guards = await Promise.all(Array.from({ length: 20 }, (_, i) => locks.acquire(`idle-${i}`)));
      await Promise.all(guards.map((g) => locks.release(g)));
      const held = await locks.acquire('idle-queued');
      const waiting = locks.acquire('idle-queued');
      await sleep(50);
      await locks.release(held);
      await locks.release(await waiting);
      const left = await raw.keys(`${prefix}{lock:idle-*`);
      expect(left).toEqual([]);
    });
  });

  describe('shared and limited places', () => {
    const shared = { kind: 'shared' } as const;
    const limit = (n: number) => ({ kind: 'limit', limit: n }) as const;

    it('leave no key behind: after their releases, after their leases end, and after a hand-off chain', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:places');
      const everyKey = [keys.lease, keys.queue, keys.waiters, keys.holders, keys.holding];
      const [r1, r2] = [token(), token()];
      expect((await b.tryAcquire('lock:places', r1, 5_000, undefined, shared)).fence).not.toBeNull();
      expect((await b.tryAcquire('lock:places', r2, 5_000, undefined, shared)).fence).not.toBeNull();
      expect(await raw.zcard(keys.holders)).toBe(2);
      expect(await raw.hget(keys.holding, 'mode')).toBe('shared');
      expect(await b.release('lock:places', r1)).toBe(true);
      expect(await b.release('lock:places', r2)).toBe(true);
      expect(await raw.exists(...everyKey)).toBe(0);

      // Crashed holders: nobody releases; the keys expire with the last lease (PEXPIREAT). The
      // places that must outlive the checks have leases far longer than the checks can take.
      const crashed = [token(), token(), token()];
      expect((await b.tryAcquire('lock:places', token(), 100, undefined, limit(3))).fence).not.toBeNull();
      expect((await b.tryAcquire('lock:places', crashed[0], 5_000, undefined, limit(3))).fence).not.toBeNull();
      expect(await raw.pttl(keys.holders)).toBeGreaterThan(1_000);
      expect(await raw.pttl(keys.holding)).toBeGreaterThan(1_000);
      await sleep(150);
      // One place came back: a third and a fourth holder fit, a fifth does not.
      expect((await b.tryAcquire('lock:places', crashed[1], 5_000, undefined, limit(3))).fence).not.toBeNull();
      expect((await b.tryAcquire('lock:places', crashed[2], 5_000, undefined, limit(3))).fence).not.toBeNull();
      expect((await b.tryAcquire('lock:places', token(), 5_000, undefined, limit(3))).fence).toBeNull();
      // The last leases shortened, then left to end: every key goes with them.
      for (const holder of crashed) expect(await b.extend('lock:places', holder, 100)).toBe(true);
      await eventually(async () => (await raw.exists(...everyKey)) === 0, {
        within: 3_000,
        what: 'the keys to expire',
      });

      // Writer -> three queued readers -> a queued writer: every key goes with the last release.
      const writer = token();
      const readers = [token(), token(), token()];
      const next = token();
      await b.tryAcquire('lock:places', writer, 5_000);
      for (const reader of readers) await b.tryAcquire('lock:places', reader, 5_000, { lease: 5_000 }, shared);
      await b.tryAcquire('lock:places', next, 5_000, { lease: 5_000 });
      const handed = await b.releaseWithHandOff!('lock:places', writer);
      expect([handed.handedTo!.token, ...handed.alsoHandedTo!.map((h) => h.token)]).toEqual(readers);
      expect(await raw.lrange(keys.queue, 0, -1)).toEqual([next]);
      for (const reader of readers.slice(0, 2))
        expect((await b.releaseWithHandOff!('lock:places', reader)).handedTo).toBeUndefined();
      expect((await b.releaseWithHandOff!('lock:places', readers[2])).handedTo?.token).toBe(next);
      expect(await b.release('lock:places', next)).toBe(true);
      expect(await raw.exists(...everyKey)).toBe(0);
    });

    it('answer a conflict of modes with heldWith, without queueing, whatever the queue lease', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:conflicts');
      const holder = token();
      await b.tryAcquire('lock:conflicts', holder, 5_000, undefined, limit(2));
      for (const [mode, heldWith] of [
        [undefined, 'limit:2'],
        [shared, 'limit:2'],
        [limit(3), 'limit:2'],
      ] as const) {
        const answer = await b.tryAcquire('lock:conflicts', token(), 5_000, { lease: 5_000 }, mode);
        expect(answer).toMatchObject({ fence: null, heldWith });
      }
      expect(await raw.exists(keys.queue, keys.waiters)).toBe(0);
      await b.release('lock:conflicts', holder);
      const writer = token();
      await b.tryAcquire('lock:conflicts', writer, 5_000);
      expect(await b.tryAcquire('lock:conflicts', token(), 5_000, { lease: 5_000 }, limit(2))).toMatchObject({
        fence: null,
        heldWith: 'exclusive',
      });
      expect(await raw.exists(keys.queue, keys.waiters)).toBe(0);
      await b.release('lock:conflicts', writer);
    });

    it('carry fences above a fence ahead of the server clock, each of a batch hand-off higher than the one before', async () => {
      const a = backend();
      const keys = redisLockKeys('lock:ahead-shared');
      const ahead = (await serverMicros(raw)) + 60_000_000n;
      await raw.set(keys.fence, ahead.toString(), 'PX', 60_000);
      const first = await a.tryAcquire('lock:ahead-shared', token(), 5_000, undefined, shared);
      expect(first.fence).toBe(ahead + 1n);
      const writer = token();
      const readers = [token(), token(), token()];
      // Not overtaking the writer queued behind the reader.
      expect((await a.tryAcquire('lock:ahead-shared', writer, 5_000, { lease: 5_000 })).fence).toBeNull();
      for (const reader of readers)
        expect((await a.tryAcquire('lock:ahead-shared', reader, 5_000, { lease: 5_000 }, shared)).fence).toBeNull();
      // Released by a client that never saw the fence: the writer gets the key, then the readers together.
      const unaware = backend();
      const toWriter = await unaware.releaseWithHandOff!(
        'lock:ahead-shared',
        (await raw.zrange(keys.holders, 0, 0))[0],
      );
      expect(toWriter.handedTo!.token).toBe(writer);
      expect(toWriter.handedTo!.fence).toBeGreaterThan(first.fence!);
      const toReaders = await backend().releaseWithHandOff!('lock:ahead-shared', writer);
      const fences = [toReaders.handedTo!, ...toReaders.alsoHandedTo!].map((h) => h.fence);
      expect(fences[0]).toBeGreaterThan(toWriter.handedTo!.fence);
      expect(fences[1]).toBeGreaterThan(fences[0]);
      expect(fences[2]).toBeGreaterThan(fences[1]);
      expect(BigInt((await raw.get(keys.fence))!)).toBe(fences[2]);
      // The readers' next attempts only renew, with the fences they were handed.
      for (const [i, reader] of readers.entries())
        expect((await a.tryAcquire('lock:ahead-shared', reader, 5_000, undefined, shared)).fence).toBe(fences[i]);
      for (const reader of readers) await a.release('lock:ahead-shared', reader);
      expect((await backend().tryAcquire('lock:ahead-shared', token(), 5_000)).fence!).toBeGreaterThan(fences[2]);
    });
  });

  describe('queue', () => {
    it('skips a waiter whose place lapsed (it crashed) and hands the lock to the next one', async () => {
      const b = backend();
      const holder = token();
      const crashed = token();
      const alive = token();
      await b.tryAcquire('lock:crash', holder, 10_000);
      expect((await b.tryAcquire('lock:crash', crashed, 10_000, { lease: 100 })).fence).toBeNull();
      expect((await b.tryAcquire('lock:crash', alive, 10_000, { lease: 10_000 })).fence).toBeNull();
      await sleep(200);
      expect(await b.release('lock:crash', holder)).toBe(true);
      expect((await b.tryAcquire('lock:crash', crashed, 10_000)).fence).toBeNull();
      expect((await b.tryAcquire('lock:crash', alive, 10_000)).fence).not.toBeNull();
    });

    it('hands an expired lease to the oldest waiter, not to a caller that did not queue', async () => {
      const b = backend();
      const events: string[] = [];
      await b.subscribe('lock:expired', (e) => events.push(e.type === 'granted' ? `granted ${e.token}` : e.type));
      const [holder, waiter] = [token(), token()];
      await b.tryAcquire('lock:expired', holder, 10_000);
      expect((await b.tryAcquire('lock:expired', waiter, 10_000, { lease: 10_000 })).fence).toBeNull();
      // Once the waiter is queued, the lease is cut short and left to expire.
      expect(await b.extend('lock:expired', holder, 100)).toBe(true);
      await sleep(200);
      const late = await b.tryAcquire('lock:expired', token(), 10_000);
      expect(late.fence).toBeNull();
      // The grant is published by the call that found the lease expired; it comes on the subscriber's own connection.
      await eventually(() => events.length > 0, { what: 'the grant to be published' });
      expect(events).toEqual([`granted ${waiter}`]);
      expect((await b.tryAcquire('lock:expired', waiter, 10_000)).fence).not.toBeNull();
    });

    it('frees the lock at release when every waiter that had queued behind it left', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:left');
      const holder = token();
      const gone = token();
      const first = await b.tryAcquire('lock:left', holder, 10_000);
      expect((await b.tryAcquire('lock:left', gone, 10_000, { lease: 10_000 })).fence).toBeNull();
      // The waiter gives up: its place goes, and the release finds nobody to hand the lock to.
      expect(await b.release('lock:left', gone)).toBe(false);
      expect(await b.release('lock:left', holder)).toBe(true);
      expect(await raw.exists(keys.lease, keys.queue, keys.waiters)).toBe(0);
      const next = await b.tryAcquire('lock:left', token(), 10_000);
      expect(next.fence!).toBeGreaterThan(first.fence!);
    });

    it('hands the lock down a queue of three, each hand-off inside the release', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:chain');
      const holder = token();
      const waiters = [token(), token(), token()];
      let fence = (await b.tryAcquire('lock:chain', holder, 10_000)).fence!;
      for (const waiter of waiters)
        expect((await b.tryAcquire('lock:chain', waiter, 10_000, { lease: 10_000 })).fence).toBeNull();
      let current = holder;
      for (const waiter of waiters) {
        expect(await b.release('lock:chain', current)).toBe(true);
        // The release itself made the waiter the holder: its next attempt only renews.
        expect((await raw.get(keys.lease))!.startsWith(waiter)).toBe(true);
        const renewed = await b.tryAcquire('lock:chain', waiter, 10_000);
        expect(renewed.fence!).toBeGreaterThan(fence);
        fence = renewed.fence!;
        current = waiter;
      }
      expect(await b.release('lock:chain', current)).toBe(true);
      expect(await raw.exists(keys.lease, keys.queue, keys.waiters)).toBe(0);
    });

    it('lets the oldest waiter take an expired lease itself, and its release hands on to the next', async () => {
      const b = backend();
      const keys = redisLockKeys('lock:expired-head');
      const [holder, oldest, next] = [token(), token(), token()];
      await b.tryAcquire('lock:expired-head', holder, 10_000);
      expect((await b.tryAcquire('lock:expired-head', oldest, 10_000, { lease: 10_000 })).fence).toBeNull();
      expect((await b.tryAcquire('lock:expired-head', next, 10_000, { lease: 10_000 })).fence).toBeNull();
      // Once both are queued, the lease is cut short and left to expire.
      expect(await b.extend('lock:expired-head', holder, 100)).toBe(true);
      await sleep(200);
      // The oldest gets the lock on its own attempt; the next one stays queued behind it.
      const head = await b.tryAcquire('lock:expired-head', oldest, 10_000, { lease: 10_000 });
      expect(head.fence).not.toBeNull();
      expect(await raw.lrange(keys.queue, 0, -1)).toEqual([next]);
      expect(await b.release('lock:expired-head', oldest)).toBe(true);
      expect((await raw.get(keys.lease))!.startsWith(next)).toBe(true);
      expect((await b.tryAcquire('lock:expired-head', next, 10_000)).fence!).toBeGreaterThan(head.fence!);
    });

    it('delivers each hand-off once to a waiter in the releasing process', async () => {
      const b = backend();
      const holder = token();
      const waiter = token();
      const events: string[] = [];
      await b.subscribe('lock:once', (e) => events.push(e.type));
      await b.tryAcquire('lock:once', holder, 10_000);
      await b.tryAcquire('lock:once', waiter, 10_000, { lease: 10_000 });
      await b.release('lock:once', holder);
      await eventually(() => events.length > 0, { what: 'the grant to be published' });
      // A second delivery would come right behind the first.
      await sleep(200);
      expect(events).toEqual(['granted']);
    });
  });

  describe('replica acknowledgement', () => {
    it('fails with LockBackendError and keeps nothing when the replicas do not confirm', async () => {
      const b = backend({ waitForReplicas: { replicas: 1, timeout: 50 } });
      const error = (await b.tryAcquire('lock:ack', token(), 10_000).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      expect(error.message).toMatch(
        /only 0 of 1 replicas .* confirmed the lock within 50 ms \(WAIT\); the lock was given back/,
      );
      expect((await backend().tryAcquire('lock:ack', token(), 10_000)).fence).not.toBeNull();
    });

    it('fails with LockBackendError and keeps nothing when WAITAOF is refused', async () => {
      const b = backend({ waitForReplicas: { replicas: 1, timeout: 50, aof: true } });
      const error = (await b.tryAcquire('lock:aof', token(), 10_000).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      // Redis 7.2+ answers 0 replicas here; older servers do not know the command.
      expect(error.message).toMatch(/WAITAOF.*the lock was given back/);
      expect((await backend().tryAcquire('lock:aof', token(), 10_000)).fence).not.toBeNull();
    });
  });
});
