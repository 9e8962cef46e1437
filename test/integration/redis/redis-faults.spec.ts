import { randomBytes } from 'node:crypto';
import { LockBackendError, LockLostError, type LockBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisBackend, type RedisLockBackend } from '../../../lib/redis';
import { monotonicNow } from '../../../lib/lock-clock';
import { SpawnedRedis, type RedisServerProcess } from '../../support/redis-servers';
import { eventually, sleep, whenAborted as aborted } from '../../support/time';

const token = (): string => randomBytes(16).toString('hex');

describe('redisBackend under faults of a spawned server', () => {
  const spawned = new SpawnedRedis();
  let server: RedisServerProcess;
  const backends: LockBackend[] = [];
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };

  const backend = (extra: Record<string, unknown> = {}): RedisLockBackend => {
    const created = redisBackend({
      url: server.url,
      commandTimeout: 500,
      recheckInterval: 200,
      ...extra,
    }) as RedisLockBackend;
    backends.push(created);
    return created;
  };
  const service = (b: LockBackend = backend(), ttl = 1_500): DistributedLockService =>
    new DistributedLockService({ backend: b, keyPrefix: 'f:', ttl, wait: 5_000 });

  beforeAll(async () => {
    process.on('unhandledRejection', onRejection);
    server = await spawned.server();
  });
  afterEach(async () => {
    await Promise.all(backends.splice(0).map((b) => b.close()));
    if (!server.alive) await server.restart();
  });
  afterAll(async () => {
    await spawned.stopAll();
    // Let late socket events of killed connections surface before counting.
    await sleep(100);
    process.off('unhandledRejection', onRejection);
    expect(rejections).toEqual([]);
  });

  it('kill -9 while withLock holds: the signal fires before the lease ends, and the lock works again once the server is back', async () => {
    const ttl = 5_000;
    const locks = service(backend(), ttl);
    let firstFence = 0n;
    let abortedPastDeadline: boolean | undefined;
    const error = await locks
      .withLock(
        'kill',
        async (held) => {
          firstFence = held.fence;
          await server.kill();
          // The server's lease ran from no earlier than the last confirmed send time, for the full
          // TTL: it ends no sooner than driftMargin after the local deadline. Whoever reads the signal
          // once that deadline passed is told it is aborted, however late the watchdog's timer runs
          // on a loaded machine (its abort event comes when the timer does).
          const started = Date.now();
          while (Date.now() <= held.expiresAt && Date.now() - started < 2 * ttl) await sleep(10);
          abortedPastDeadline = held.signal.aborted;
          await aborted(held.signal);
          expect(held.signal.reason).toBeInstanceOf(LockLostError);
        },
        { ttl },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockLostError);
    expect((error as LockLostError).detail).toMatch(/local deadline/);
    expect(abortedPastDeadline).toBe(true);

    // Commands fail fast and clearly while it is down.
    const down = (await locks.tryAcquire('kill').catch((e: unknown) => e)) as Error;
    expect(down).toBeInstanceOf(LockBackendError);
    expect(down.message).toContain(`127.0.0.1:${server.port}`);

    // Back, empty (no persistence): the same service works again, and fences still increase.
    await server.restart();
    const fence = await eventually(() => locks.withLock('kill', (held) => held.fence).catch(() => null), {
      within: 10_000,
      every: 100,
      what: 'the lock to work again',
    });
    expect(fence).toBeGreaterThan(firstFence);
  });

  it('CLIENT PAUSE longer than the TTL: the holder learns it lost the lease while the server is still paused; commands time out', async () => {
    const admin = spawned.admin(server);
    const locks = service(backend(), 600);
    let pausedAt = 0;
    let abortedAfter = Infinity;
    const error = await locks
      .withLock(
        'pause',
        async (held) => {
          pausedAt = monotonicNow();
          await admin.client('PAUSE', 3_000, 'ALL');
          await aborted(held.signal);
          abortedAfter = monotonicNow() - pausedAt;
          const timedOut = (await backend()
            .tryAcquire('f:pause', token(), 1_000)
            .catch((e: unknown) => e)) as Error;
          expect(timedOut).toBeInstanceOf(LockBackendError);
          expect(timedOut.message).toMatch(/no answer from Redis at 127\.0\.0\.1:\d+ within 500 ms/);
        },
        { ttl: 600 },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockLostError);
    expect(abortedAfter).toBeLessThan(3_000);
    await admin.client('UNPAUSE');
    await expect(locks.withLock('pause', () => 'again')).resolves.toBe('again');
  });

  it('CLIENT KILL of the lock connection: the lease is kept through the reconnect', async () => {
    const admin = spawned.admin(server);
    const locks = service(backend(), 1_500);
    const other = service();
    const result = await locks.withLock(
      'client-kill',
      async (held) => {
        await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
        // Past two TTLs of extensions on the new connection.
        for (let i = 0; i < 6; i++) {
          await sleep(500);
          expect(await other.tryAcquire('client-kill').catch(() => null)).toBeNull();
        }
        expect(held.signal.aborted).toBe(false);
        return held.fence;
      },
      { ttl: 1_500 },
    );
    expect(typeof result).toBe('bigint');
    expect(await other.tryAcquire('client-kill')).not.toBeNull();
  });

  it('CLIENT KILL of the subscriber connection: a waiter whose wake-up is lost still gets the lock', async () => {
    const admin = spawned.admin(server);
    const holder = service();
    const waiter = service();
    const held = (await holder.tryAcquire('lost-wakeup'))!;
    const waiting = waiter.acquire('lost-wakeup', { wait: 10_000 });
    await eventually(async () => ((await admin.pubsub('NUMSUB', '{f:lost-wakeup}:c')) as [string, number])[1] > 0);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await holder.release(held);
    const guard = await waiting;
    expect(guard.fence).toBeGreaterThan(held.fence);
  });

  it('SCRIPT FLUSH: every script is sent again and keeps working, pipelined extensions included', async () => {
    const admin = spawned.admin(server);
    const b = backend();
    const locks = service(b);
    const guard = (await locks.tryAcquire('flush'))!;
    await admin.script('FLUSH');
    expect(await locks.extend(guard)).toBe(true);
    await admin.script('FLUSH');
    expect(
      await b.extendMany([
        { key: 'f:flush', token: guard.token, ttl: 2_000 },
        { key: 'f:none', token: token(), ttl: 2_000 },
      ]),
    ).toEqual([true, false]);
    await admin.script('FLUSH');
    const waiting = locks.acquire('flush');
    await sleep(50);
    await admin.script('FLUSH');
    await locks.release(guard);
    expect((await waiting).fence).toBeGreaterThan(guard.fence);
  });

  it('restart without persistence: fences keep increasing', async () => {
    const locks = service();
    const fences: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const guard = await eventually(() => locks.tryAcquire('restart').catch(() => null), {
        within: 10_000,
        every: 50,
      });
      fences.push(guard.fence);
      await server.restart();
    }
    const last = await eventually(() => locks.tryAcquire('restart').catch(() => null), { within: 10_000, every: 50 });
    fences.push(last.fence);
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
  });
});
