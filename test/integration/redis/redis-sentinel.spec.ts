import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type LockBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { SpawnedRedis, type RedisServerProcess } from '../../support/redis-servers';
import { eventually } from '../../support/time';

const token = (): string => randomBytes(16).toString('hex');

describe('redisBackend through Sentinel (spawned master, replica and sentinel)', () => {
  const spawned = new SpawnedRedis();
  let master: RedisServerProcess;
  let replica: RedisServerProcess;
  let sentinel: Redis;
  const backends: LockBackend[] = [];
  let sentinelPort: number;

  const viaSentinel = (extra: Record<string, unknown> = {}): LockBackend => {
    const backend = redisBackend({
      connection: { sentinels: [{ host: '127.0.0.1', port: sentinelPort }], name: 'locks' },
      commandTimeout: 1_000,
      ...extra,
    });
    backends.push(backend);
    return backend;
  };

  beforeAll(async () => {
    master = await spawned.server();
    replica = await spawned.server({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
    const server = await spawned.server({
      sentinel: true,
      config: [
        `sentinel monitor locks 127.0.0.1 ${master.port} 1`,
        'sentinel down-after-milliseconds locks 1000',
        'sentinel failover-timeout locks 5000',
      ],
    });
    sentinelPort = server.port;
    sentinel = spawned.admin(server);
    const replicaAdmin = spawned.admin(replica);
    await eventually(async () => (await replicaAdmin.info('replication')).includes('master_link_status:up'), {
      within: 10_000,
      what: 'the replica to sync',
    });
    await eventually(async () => ((await sentinel.call('SENTINEL', 'REPLICAS', 'locks')) as unknown[]).length === 1, {
      within: 10_000,
      what: 'the sentinel to discover the replica',
    });
  }, 30_000);
  afterEach(async () => {
    await Promise.all(backends.splice(0).map((b) => b.close()));
  });
  afterAll(() => spawned.stopAll());

  it('confirms acquisitions on the replica with WAIT', async () => {
    const backend = viaSentinel({ waitForReplicas: { replicas: 1, timeout: 2_000 } });
    const t = token();
    expect((await backend.tryAcquire('s:ack', t, 10_000)).fence).not.toBeNull();
    await backend.release('s:ack', t);
  });

  it('confirms shared and limited places on the replica with WAIT, a handed-over place too', async () => {
    const backend = viaSentinel({ waitForReplicas: { replicas: 1, timeout: 2_000 } });
    const replicaAdmin = spawned.admin(replica);
    const t = token();
    expect((await backend.tryAcquire('s:ack-shared', t, 10_000, undefined, { kind: 'shared' })).fence).not.toBeNull();
    // WAIT came back: the replica has the place.
    expect(await replicaAdmin.zscore(redisLockKeys('s:ack-shared').holders, t)).not.toBeNull();
    expect(await backend.release('s:ack-shared', t)).toBe(true);

    const locks = new DistributedLockService({ backend, keyPrefix: 's:', ttl: 5_000, wait: 5_000 });
    const first = (await locks.tryAcquire('ack-limit', { limit: 1 }))!;
    expect(first).not.toBeNull();
    const waiting = locks.acquire('ack-limit', { limit: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await locks.release(first);
    // Told as a release (the hand-off is not confirmed yet); its re-attempt renews and waits for the replica.
    const next = await waiting;
    expect(next.fence).toBeGreaterThan(first.fence);
    expect(await replicaAdmin.zscore(redisLockKeys('s:ack-limit').holders, next.token)).not.toBeNull();
    await locks.release(next);
    await locks.shutdown();
  });

  it('takes multi-key locks through Sentinel, all or none', async () => {
    const keyPrefix = `sentinel-multi-${randomBytes(3).toString('hex')}:`;
    const a = new DistributedLockService({ backend: viaSentinel(), keyPrefix, ttl: 5_000, wait: 1_000 });
    const b = new DistributedLockService({ backend: viaSentinel(), keyPrefix, ttl: 5_000, wait: 1_000 });
    const busy = (await b.tryAcquire('acct:2'))!;
    await expect(a.acquire(['acct:3', 'acct:2', 'acct:1'], { wait: 200 })).rejects.toMatchObject({ key: 'acct:2' });
    for (const key of ['acct:1', 'acct:3']) await b.release((await b.tryAcquire(key))!);
    await b.release(busy);
    const fences = await a.withLock(['acct:2', 'acct:1'], (held) => held.keys.map((key) => held.fence(key)));
    expect(fences[1]).toBeGreaterThan(busy.fence);
    expect(a.heldCount + b.heldCount).toBe(0);
  });

  it('keeps a held lock and its fences across a Sentinel failover', async () => {
    const backend = viaSentinel();
    const locks = new DistributedLockService({ backend, keyPrefix: 's:', ttl: 30_000, wait: 0 });
    const held = (await locks.tryAcquire('failover'))!;
    expect(held).not.toBeNull();
    await spawned.admin(master).call('WAIT', 1, 2_000);

    await sentinel.call('SENTINEL', 'FAILOVER', 'locks');
    await eventually(
      async () =>
        ((await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'locks')) as string[])[1] === String(replica.port),
      { within: 15_000, every: 100, what: 'the sentinel to promote the replica' },
    );

    const oldMaster = spawned.admin(master);
    await eventually(async () => (await oldMaster.info('replication').catch(() => '')).includes('role:slave'), {
      within: 15_000,
      every: 100,
      what: 'the old master to be demoted',
    });

    // The same backend follows the new master; the lock taken before the failover is still held.
    await eventually(() => locks.tryAcquire('after-failover').catch(() => null), { within: 15_000, every: 100 });
    expect(await locks.tryAcquire('failover')).toBeNull();
    expect(await locks.extend(held)).toBe(true);
    await locks.release(held);
    const next = (await locks.tryAcquire('failover'))!;
    expect(next.fence).toBeGreaterThan(held.fence);
    // It did so on the promoted replica.
    expect(await spawned.admin(replica).get(redisLockKeys('s:failover').lease)).toBe(
      next.token + next.fence.toString(),
    );
  }, 40_000);
});
