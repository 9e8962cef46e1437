import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { LockBackendError, LockLostError, type LockBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { redisBackend } from '../../../lib/redis';
import { describeLockBackendConformance, type ConformanceTarget, type LockStateView } from '../../../lib/testing';
import { readRedisState } from '../../contract/conformance.targets';
import { jestApi } from '../../support/jest-api';
import { SpawnedRedis, type RedisServerProcess } from '../../support/redis-servers';
import { sleep, whenAborted } from '../../support/time';

const token = (): string => randomBytes(16).toString('hex');

describe('redisBackend({ quorum }) over 5 spawned masters', () => {
  const spawned = new SpawnedRedis();
  let nodes: RedisServerProcess[];
  const backends: LockBackend[] = [];
  const quorum = (): LockBackend => {
    const backend = redisBackend({ quorum: nodes.map((n) => n.url), commandTimeout: 500, recheckInterval: 200 });
    backends.push(backend);
    return backend;
  };
  const service = (backend: LockBackend): DistributedLockService =>
    new DistributedLockService({ backend, keyPrefix: 'q:', ttl: 2_000, wait: 3_000 });

  beforeAll(async () => {
    nodes = await Promise.all(Array.from({ length: 5 }, () => spawned.server()));
  });
  afterEach(async () => {
    await Promise.all(backends.splice(0).map((b) => b.close()));
    await Promise.all(nodes.filter((n) => !n.alive).map((n) => n.restart()));
  });
  afterAll(() => spawned.stopAll());

  // The conformance kit, for what the quorum claims: no FIFO queue, per-node fences.
  const majority = 3;
  let admins: Redis[] | undefined;
  const adminsOfNodes = (): Redis[] => (admins ??= nodes.map((n) => spawned.admin(n)));
  const conformanceTarget: ConformanceTarget = {
    name: 'redis quorum of 5',
    capabilities: { fifo: false, fencing: 'per-node' },
    create: () => redisBackend({ quorum: nodes.map((n) => n.url) }),
    // As a FLUSHALL or an eviction on a majority of the nodes would: the lease is gone there.
    async evict(_backend, backendKey) {
      await Promise.all(
        adminsOfNodes()
          .slice(0, majority)
          .map((admin) => admin.del(redisLockKeys(backendKey).lease)),
      );
    },
    // The token holding the key on a majority; else on any node (a leftover of a grant not given back).
    async inspect(_backend, key): Promise<LockStateView> {
      const views = await Promise.all(adminsOfNodes().map((admin) => readRedisState(admin, key)));
      const holders = views.flatMap((v) => (v.holder ? [v.holder] : []));
      const onMajority = holders.find((h) => holders.filter((other) => other === h).length >= majority);
      return { holder: onMajority ?? holders[0] ?? null, queued: [...new Set(views.flatMap((v) => v.queued))] };
    },
  };
  describeLockBackendConformance(jestApi, conformanceTarget);

  it('grants a lock to one holder at a time, with increasing fences, and wakes a waiter on release', async () => {
    const a = service(quorum());
    const b = service(quorum());
    const first = (await a.tryAcquire('one'))!;
    expect(first).not.toBeNull();
    expect(await b.tryAcquire('one')).toBeNull();
    const waiting = b.acquire('one');
    await sleep(50);
    await a.release(first);
    const second = await waiting;
    expect(second.fence).toBeGreaterThan(first.fence);
    expect(await a.extend(first)).toBe(false);
    expect(await b.extend(second)).toBe(true);
    await b.release(second);
  });

  it('keeps working with 2 of 5 masters killed, and fails with LockBackendError with 3 killed', async () => {
    const locks = service(quorum());
    const before = (await locks.tryAcquire('failures'))!;
    await locks.release(before);

    await Promise.all([nodes[0].kill(), nodes[3].kill()]);
    const held = (await locks.tryAcquire('failures'))!;
    expect(held).not.toBeNull();
    expect(held.fence).toBeGreaterThan(before.fence);
    expect(await locks.tryAcquire('failures')).toBeNull();
    expect(await locks.extend(held)).toBe(true);
    await expect(locks.withLock('failures-2', async (lock) => lock.fence)).resolves.toBeGreaterThan(0n);
    await locks.release(held);

    await nodes[4].kill();
    const error = (await locks.tryAcquire('failures').catch((e: unknown) => e)) as LockBackendError;
    expect(error).toBeInstanceOf(LockBackendError);
    expect(error.message).toMatch(/no majority of the 5 Redis nodes \(3 needed\); 3 failed/);
    expect(error.message).toContain(`127.0.0.1:${nodes[4].port}`);
    await expect(locks.acquire('failures', { wait: 500 })).rejects.toBeInstanceOf(LockBackendError);
  });

  it('aborts a withLock whose majority is lost while it runs', async () => {
    const locks = service(quorum());
    const error = await locks
      .withLock(
        'lost-majority',
        async (held) => {
          await Promise.all([nodes[1].kill(), nodes[2].kill(), nodes[3].kill()]);
          // Killing three servers can take longer than the TTL on a busy machine.
          await whenAborted(held.signal);
          return 'done';
        },
        { ttl: 600 },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockLostError);
  });

  it('gives back a minority grant, so the lock is not left half-taken', async () => {
    const backend = quorum();
    const holder = token();
    // Another client holds the lock on 3 nodes; this one can take only the other 2.
    const partial = [0, 1, 2].map((i) => redisBackend({ client: spawned.admin(nodes[i]) }));
    backends.push(...partial);
    for (const node of partial) expect((await node.tryAcquire('q:split', holder, 10_000)).fence).not.toBeNull();
    const contender = token();
    expect((await backend.tryAcquire('q:split', contender, 10_000)).fence).toBeNull();
    for (const node of partial) await node.release('q:split', holder);
    // Had the contender kept nodes 3 and 4, nobody could reach a majority now.
    expect((await backend.tryAcquire('q:split', token(), 10_000)).fence).not.toBeNull();
  });

  it('reads the replies of nodes whose clients answer numbers as strings (ioredis stringNumbers)', async () => {
    const numbersAsStrings = (): LockBackend => {
      const backend = redisBackend({
        quorum: nodes.map((n) => ({ host: n.host, port: n.port, stringNumbers: true })),
        recheckInterval: 200,
      });
      backends.push(backend);
      return backend;
    };
    const a = service(numbersAsStrings());
    const b = service(numbersAsStrings());
    const first = (await a.tryAcquire('strings'))!;
    expect(first).not.toBeNull();
    expect(await b.tryAcquire('strings')).toBeNull();
    const waiting = b.acquire('strings');
    await sleep(50);
    await a.release(first);
    const second = await waiting;
    expect(second.fence).toBeGreaterThan(first.fence);
    expect(await b.extend(second)).toBe(true);
    expect(await a.extend(first)).toBe(false);
    expect(
      await b.withLock('strings-renewed', async (lock) => (await sleep(2_100), lock.signal.aborted), { ttl: 1_000 }),
    ).toBe(false);
    await b.release(second);
  });

  it('reports a release as false when the lease was gone on a majority of the nodes, and true when a majority still held it', async () => {
    const backend = quorum();
    const admins = nodes.map((n) => spawned.admin(n));
    const flushed = token();
    expect((await backend.tryAcquire('q:flushed', flushed, 10_000)).fence).not.toBeNull();
    await Promise.all([0, 1, 2].map((i) => admins[i].flushall()));
    // Another holder could take the majority now: the lease was lost, whatever the other 2 nodes say.
    expect(await backend.release('q:flushed', flushed)).toBe(false);

    const kept = token();
    expect((await backend.tryAcquire('q:flushed-minority', kept, 10_000)).fence).not.toBeNull();
    await Promise.all([3, 4].map((i) => admins[i].flushall()));
    expect(await backend.release('q:flushed-minority', kept)).toBe(true);
  });
});
