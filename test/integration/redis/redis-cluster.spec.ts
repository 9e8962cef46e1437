import { Logger } from '@nestjs/common';
import { Cluster, type Redis } from 'ioredis';
import { type HeldLock, type LockBackend, type LockGuard } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { describeLockBackendContract } from '../../../lib/testing';
import { jestApi } from '../../support/jest-api';
import { SpawnedRedis, type RedisServerProcess } from '../../support/redis-servers';
import { eventually, sleep } from '../../support/time';

describe('redisBackend on a spawned Cluster of 3 masters + 3 replicas', () => {
  const spawned = new SpawnedRedis();
  let nodes: RedisServerProcess[];
  const startupNodes = (): Array<{ host: string; port: number }> =>
    nodes.slice(0, 3).map((n) => ({ host: '127.0.0.1', port: n.port }));

  beforeAll(async () => {
    nodes = await spawned.cluster(3);
  }, 60_000);
  afterAll(() => spawned.stopAll());

  describeLockBackendContract(jestApi, {
    name: 'redis cluster',
    capabilities: { modes: ['shared', 'limit'] },
    create: () => redisBackend({ cluster: { nodes: startupNodes() } }),
  });

  describe('cluster behaviour', () => {
    const backends: LockBackend[] = [];
    const service = (): DistributedLockService => {
      const backend = redisBackend({ cluster: { nodes: startupNodes() }, recheckInterval: 300 });
      backends.push(backend);
      return new DistributedLockService({ backend, keyPrefix: 'c:', ttl: 5_000, wait: 10_000 });
    };
    afterEach(async () => {
      await Promise.all(backends.splice(0).map((b) => b.close()));
    });

    it('keeps every key of a lock in one slot, even for keys full of braces (no CROSSSLOT)', async () => {
      const admin = spawned.admin(nodes[0]);
      const awkward = ['}', '{}', '{', 'a}b', '{a}}', '{{}}', '}{', 'x{y}z', '{}{x}'];
      for (const key of awkward) {
        const names = redisLockKeys(`c:${key}`);
        const slots = await Promise.all(
          [names.lease, names.queue, names.waiters, names.fence, names.holders, names.holding, names.channel].map(
            (name) => admin.cluster('KEYSLOT', name),
          ),
        );
        expect(new Set(slots).size).toBe(1);
      }
      // And the whole path (grant, queue, hand-off, release) runs on them.
      const a = service();
      const b = service();
      for (const key of awkward) {
        const first = (await a.tryAcquire(key))!;
        const waiting = b.acquire(key);
        await sleep(20);
        await a.release(first);
        const next = await waiting;
        expect(next.fence).toBeGreaterThan(first.fence);
        await b.release(next);
      }
    });

    it('takes a multi-key lock whose keys live in slots of every master, all or none', async () => {
      const admin = spawned.admin(nodes[0]);
      // Keys until the set covers slots owned by three different masters.
      const slots = await admin.cluster('SLOTS');
      const masterOf = (slot: number): number => slots.find(([from, to]) => slot >= from && slot <= to)![2]![1];
      const byMaster = new Map<number, string>();
      for (let i = 0; i < 200 && byMaster.size < 3; i++) {
        const key = `multi-${i}`;
        const slot = Number(await admin.cluster('KEYSLOT', redisLockKeys(`c:${key}`).lease));
        if (!byMaster.has(masterOf(slot))) byMaster.set(masterOf(slot), key);
      }
      expect(byMaster.size).toBe(3);
      const keys = [...byMaster.values()];
      const a = service();
      const b = service();
      const set = await a.acquire(keys.toReversed());
      expect(set.keys).toEqual([...keys].sort());
      for (const key of keys) expect(await b.tryAcquire(key)).toBeNull();
      // One of them busy: the other two are given back.
      await a.release(set);
      const busy = (await b.tryAcquire(keys[1]))!;
      expect(await a.tryAcquire(keys)).toBeNull();
      for (const key of [keys[0], keys[2]]) {
        const free = (await b.tryAcquire(key))!;
        expect(free).not.toBeNull();
        await b.release(free);
      }
      await b.release(busy);
      await a.withLock(keys, (held) => expect(held.locks).toHaveLength(3));
    });

    it('uses a Cluster the user passed in and leaves it open', async () => {
      const cluster = new Cluster(startupNodes());
      try {
        const backend = redisBackend({ client: cluster });
        const locks = new DistributedLockService({ backend, keyPrefix: 'c:', ttl: 5_000, wait: 5_000 });
        const held = (await locks.tryAcquire('users-cluster'))!;
        const waiting = locks.acquire('users-cluster');
        await sleep(20);
        await locks.release(held);
        await locks.release(await waiting);
        await locks.shutdown();
        expect(cluster.status).toBe('ready');
        expect(await cluster.set('c:still-open', '1')).toBe('OK');
      } finally {
        cluster.disconnect();
      }
    });

    it('reports a release as false when the lease was gone (deleted, as FLUSHALL or an eviction would)', async () => {
      const backend = redisBackend({ cluster: { nodes: startupNodes() } });
      backends.push(backend);
      const admin = new Cluster(startupNodes());
      try {
        const token = 'f'.repeat(32);
        expect((await backend.tryAcquire('c:vanished', token, 10_000)).fence).not.toBeNull();
        expect(await admin.del(redisLockKeys('c:vanished').lease)).toBe(1);
        expect(await backend.release('c:vanished', token)).toBe(false);
      } finally {
        admin.disconnect();
      }
    });

    it('warns once about a master whose maxmemory-policy can evict lock keys, naming it', async () => {
      const admins = nodes.map((n) => spawned.admin(n));
      const masters: Redis[] = [];
      for (const admin of admins) if ((await admin.info('replication')).includes('role:master')) masters.push(admin);
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      try {
        await masters[1].config('SET', 'maxmemory-policy', 'allkeys-lfu');
        const backend = redisBackend({ cluster: { nodes: startupNodes() } });
        backends.push(backend);
        await backend.ping();
        await backend.ping();
        const warnings = warn.mock.calls
          .map((call: unknown[]) => String(call[0]))
          .filter((m) => m.includes('maxmemory-policy'));
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain(`127.0.0.1:${masters[1].options.port}: allkeys-lfu`);
      } finally {
        warn.mockRestore();
        await masters[1].config('SET', 'maxmemory-policy', 'noeviction');
      }
    });

    it('wakes waiters through sharded pub/sub on the shard that owns the lock', async () => {
      const a = service();
      const b = service();
      const held = (await a.tryAcquire('sharded'))!;
      const waiting = b.acquire('sharded');
      const channel = redisLockKeys('c:sharded').channel;
      const admins = nodes.map((n) => spawned.admin(n));
      const subscribedOn = await eventually(async () => {
        for (const [i, admin] of admins.entries()) {
          const channels = (await admin.call('PUBSUB', 'SHARDCHANNELS')) as string[];
          if (channels.includes(channel)) return i + 1;
        }
        return false;
      });
      const slot = (await admins[0].cluster('KEYSLOT', channel)) as number;
      const owner = await ownerOf(admins[0], slot);
      expect(nodes[subscribedOn - 1].port).toBe(owner);
      await a.release(held);
      expect((await waiting).fence).toBeGreaterThan(held.fence);
    });

    it('keeps locks held through a CLUSTER FAILOVER of every master', async () => {
      const locks = service();
      const other = service();
      const keys = Array.from({ length: 6 }, (_, i) => `failover-${i}`);
      const seen: HeldLock[] = [];
      const admins = nodes.map((n) => spawned.admin(n));
      const replicas = await replicaAdmins(admins);
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const works = keys.map((key) =>
        locks.withLock(
          key,
          async (held) => {
            seen.push(held);
            await finished;
            return held;
          },
          { ttl: 3_000 },
        ),
      );
      await eventually(() => seen.length === keys.length, { within: 5_000 });
      // Every replica takes over from its master while the locks are held.
      for (const replica of replicas) {
        await replica.cluster('FAILOVER');
        await eventually(async () => (await replica.info('replication')).includes('role:master'), {
          within: 15_000,
          every: 100,
          what: `the replica on port ${replica.options.port} to become master`,
        });
      }
      // Past a TTL of extensions on the new masters, nobody else got in and no holder lost its lease.
      for (let i = 0; i < 4; i++) {
        await sleep(1_000);
        for (const key of keys) expect(await other.tryAcquire(key).catch(() => null)).toBeNull();
      }
      for (const held of seen) expect(held.signal.aborted).toBe(false);
      // Release the work and check the locks come back with higher fences.
      finish();
      const results = await Promise.allSettled(works);
      expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
      for (const held of seen) {
        const next: LockGuard = await eventually(() => other.tryAcquire(held.key), { within: 5_000 });
        expect(next.fence).toBeGreaterThan(held.fence);
      }
    }, 60_000);
  });
});

async function ownerOf(admin: Redis, slot: number): Promise<number> {
  const ranges = (await admin.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
  const range = ranges.find(([from, to]) => slot >= from && slot <= to)!;
  return range[2][1];
}

/** Admin clients on the current replicas. */
async function replicaAdmins(admins: Redis[]): Promise<Redis[]> {
  const replicas: Redis[] = [];
  for (const admin of admins) if ((await admin.info('replication')).includes('role:slave')) replicas.push(admin);
  return replicas;
}
