import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { LockBackendError, LockTimeoutError, type LockBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisBackend } from '../../../lib/redis';
import { RedisLockBackend } from '../../../lib/backends/redis/redis-lock.backend';
import { RedisConnection } from '../../../lib/backends/redis/redis-connection';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { RecordingBackend } from '../../support/recording-backend';
import { SpawnedRedis, type RedisServerProcess } from '../../support/redis-servers';
import { sleep } from '../../support/time';

const token = (): string => randomBytes(16).toString('hex');

/** The rights the README's "ACL rights" documents for the default keyPrefix `lock:`. */
const DOCUMENTED_RIGHTS =
  'resetkeys ~{lock:* ~{#* resetchannels &{lock:* &{#* -@all ' +
  '+evalsha +eval +ping +info +subscribe +unsubscribe +publish ' +
  '+get +set +mget +exists +del +pexpire +pttl +time +lpop +rpush +lrem +hget +hset +hdel';
/** What the README adds for shared and limited locks. */
const DOCUMENTED_MODE_RIGHTS = '+zadd +zrem +zscore +zcard +zrange +zrangebyscore +zremrangebyscore +lindex +pexpireat';

describe('redisBackend and Redis ACL users (a spawned Redis 7 server)', () => {
  const spawned = new SpawnedRedis();
  let server: RedisServerProcess;
  let admin: Redis;
  const opened: LockBackend[] = [];
  const clients: Redis[] = [];

  /** A client of `user`, with the backend on it. */
  const clientOf = (user: string): Redis => {
    const client = new Redis({ host: server.host, port: server.port, username: user, password: 'secret' });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  const backendOf = (user: string): RedisLockBackend => {
    const backend = redisBackend({
      connection: { host: server.host, port: server.port, username: user, password: 'secret' },
    }) as RedisLockBackend;
    opened.push(backend);
    return backend;
  };
  const service = (backend: LockBackend): DistributedLockService =>
    new DistributedLockService({ backend, keyPrefix: 'lock:', ttl: 5_000, wait: 3_000 });

  beforeAll(async () => {
    server = await spawned.server({
      config: [
        // Redis 7 default: a user gets no channel rights unless given some.
        'acl-pubsub-default resetchannels',
        'user nochannels on >secret ~* +@all',
        `user locker on >secret ${DOCUMENTED_RIGHTS}`,
        `user sharer on >secret ${DOCUMENTED_RIGHTS} ${DOCUMENTED_MODE_RIGHTS}`,
      ],
    });
    admin = spawned.admin(server);
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
    for (const client of clients.splice(0)) client.disconnect();
  });
  afterAll(() => spawned.stopAll());

  describe('a user with "~* +@all" and no channel rights', () => {
    it('acquires and releases a free lock, and fails a wait with an error that says which right to grant', async () => {
      const locks = service(backendOf('nochannels'));
      const held = (await locks.tryAcquire('free'))!;
      expect(held).not.toBeNull();
      await locks.release(held);

      const other = service(backendOf('default'));
      const busy = (await other.tryAcquire('busy'))!;
      const error = (await locks.acquire('busy', { wait: 1_000 }).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      expect(error.message).toContain('SUBSCRIBE');
      expect(error.message).toContain('NOPERM');
      expect(error.message).toContain('"&{lock:*"');
      expect(error.message).toContain('"allchannels"');
      // It never joined the queue: the holder's release frees the lock for anyone.
      await other.release(busy);
      expect(await locks.tryAcquire('busy')).not.toBeNull();
    });

    it('refuses a release that would hand the lock over, and changes nothing: never "rejected though handed over"', async () => {
      const holderBackend = backendOf('nochannels');
      const waiterBackend = backendOf('default');
      const keys = redisLockKeys('lock:handoff');
      const holder = token();
      const waiter = token();
      const first = await holderBackend.tryAcquire('lock:handoff', holder, 5_000);
      expect(first.fence).not.toBeNull();
      expect((await waiterBackend.tryAcquire('lock:handoff', waiter, 5_000, { lease: 10_000 })).fence).toBeNull();
      const before = await admin.mget(keys.lease, keys.fence);
      const queueBefore = await admin.lrange(keys.queue, 0, -1);

      const error = (await holderBackend.release('lock:handoff', holder).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      // Refused, so nothing moved: the holder still holds it and the waiter is still queued.
      expect((await admin.get(keys.lease))!.startsWith(holder)).toBe(true);
      expect(await admin.mget(keys.lease, keys.fence)).toEqual(before);
      expect(await admin.lrange(keys.queue, 0, -1)).toEqual(queueBefore);
      expect(error.message).toContain('may not PUBLISH to channel {lock:handoff}:c; nothing was changed');
      expect(error.message).toContain('"&{lock:*"');

      // A user with the channel right releases it: the waiter gets the lock.
      expect(await waiterBackend.release('lock:handoff', holder)).toBe(true);
      expect((await waiterBackend.tryAcquire('lock:handoff', waiter, 5_000)).fence!).toBeGreaterThan(first.fence!);
    });

    it('refuses an attempt that would hand an expired lease to a waiter, and changes nothing', async () => {
      const refused = backendOf('nochannels');
      const other = backendOf('default');
      const keys = redisLockKeys('lock:expired');
      const [holder, waiter] = [token(), token()];
      await other.tryAcquire('lock:expired', holder, 10_000);
      expect((await other.tryAcquire('lock:expired', waiter, 5_000, { lease: 10_000 })).fence).toBeNull();
      // Once the waiter is queued, the lease is cut short and left to expire.
      expect(await other.extend('lock:expired', holder, 100)).toBe(true);
      await sleep(200);
      const error = (await refused.tryAcquire('lock:expired', token(), 5_000).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      expect(await admin.exists(keys.lease)).toBe(0);
      expect(await admin.lrange(keys.queue, 0, -1)).toEqual([waiter]);
      expect(error.message).toContain('nothing was changed');
      // The waiter's own attempt takes it.
      expect((await other.tryAcquire('lock:expired', waiter, 5_000)).fence).not.toBeNull();
    });

    it("refuses a shared holder's release that would hand the key to a queued waiter, and changes nothing", async () => {
      const holderBackend = backendOf('nochannels');
      const waiterBackend = backendOf('default');
      const keys = redisLockKeys('lock:shared-handoff');
      const [reader, writer] = [token(), token()];
      const first = await holderBackend.tryAcquire('lock:shared-handoff', reader, 5_000, undefined, { kind: 'shared' });
      expect(first.fence).not.toBeNull();
      expect(
        (await waiterBackend.tryAcquire('lock:shared-handoff', writer, 5_000, { lease: 10_000 })).fence,
      ).toBeNull();
      const before = await admin.zrange(keys.holders, 0, -1);
      const error = (await holderBackend.release('lock:shared-handoff', reader).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      expect(error.message).toContain('nothing was changed');
      expect(await admin.zrange(keys.holders, 0, -1)).toEqual(before);
      expect(await admin.hget(keys.holding, reader)).toBe(String(first.fence));
      expect(await admin.lrange(keys.queue, 0, -1)).toEqual([writer]);
      // A user with the channel right releases it: the writer gets the key, above the reader's fence.
      expect(await waiterBackend.release('lock:shared-handoff', reader)).toBe(true);
      expect((await waiterBackend.tryAcquire('lock:shared-handoff', writer, 5_000)).fence!).toBeGreaterThan(
        first.fence!,
      );
      expect(await waiterBackend.release('lock:shared-handoff', writer)).toBe(true);
    });

    it('refuses a release it has to announce (quorum nodes announce every release), and changes nothing', async () => {
      const announcing = new RedisLockBackend(new RedisConnection(clientOf('nochannels'), false, 2_000), {
        commandTimeout: 2_000,
        recheckInterval: 1_000,
        shardedPubSub: false,
        announceReleases: true,
      });
      opened.push(announcing);
      const holder = token();
      expect((await announcing.tryAcquire('lock:announced', holder, 5_000)).fence).not.toBeNull();
      const error = (await announcing.release('lock:announced', holder).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(LockBackendError);
      expect(await admin.get(redisLockKeys('lock:announced').lease)).toMatch(new RegExp(`^${holder}`));
      expect(error.message).toMatch(/may not PUBLISH .*nothing was changed/);
    });
  });

  describe('a user with exactly the documented rights', () => {
    it('tries, waits (woken by a release of another process), extends, renews under withLock and releases', async () => {
      const a = service(backendOf('locker'));
      const b = service(backendOf('locker'));
      const first = (await a.tryAcquire('orders:1'))!;
      expect(first).not.toBeNull();
      expect(await b.tryAcquire('orders:1')).toBeNull();
      const waiting = b.acquire('orders:1');
      await sleep(50);
      await a.release(first);
      const second = await waiting;
      expect(second.fence).toBeGreaterThan(first.fence);
      expect(await b.extend(second)).toBe(true);
      await b.release(second);

      // A key with "}" is tagged by its SHA-1: "~{#*" and "&{#*" cover it.
      const odd = (await a.tryAcquire('odd}key'))!;
      expect(odd).not.toBeNull();
      const waitingOdd = b.acquire('odd}key');
      await sleep(50);
      await a.release(odd);
      await b.release(await waitingOdd);

      // Work for two TTLs: only extensions (every ttl/3) keep it held.
      const renewed = await a.withLock('renewed', async (lock) => (await sleep(2_100), lock.signal.aborted), {
        ttl: 1_000,
      });
      expect(renewed).toBe(false);

      // Waiters that give up (a deadline, then an abort) leave the queue through a release of a
      // token that holds nothing: with these rights too, and the key goes to nobody who left.
      const held = (await a.tryAcquire('given-up'))!;
      await expect(b.acquire('given-up', { wait: 300 })).rejects.toBeInstanceOf(LockTimeoutError);
      const controller = new AbortController();
      const aborted = b
        .acquire('given-up', { wait: 10_000, signal: controller.signal })
        .catch((error: unknown) => error);
      await sleep(100);
      controller.abort(new Error('gave up'));
      expect(await aborted).toMatchObject({ message: 'gave up' });
      await sleep(50);
      await a.release(held);
      const next = (await b.tryAcquire('given-up'))!;
      expect(next).not.toBeNull();
      await b.release(next);
      await a.shutdown();
      await b.shutdown();
    });
  });

  describe('a user with the documented rights for shared and limited locks', () => {
    it('takes, extends, waits for and hands on shared and limited locks', async () => {
      const a = service(backendOf('sharer'));
      const recorded = new RecordingBackend(backendOf('sharer'));
      const b = service(recorded);
      const readers = [
        (await a.tryAcquire('report', { mode: 'shared' }))!,
        (await b.tryAcquire('report', { mode: 'shared' }))!,
      ];
      expect(readers.every((r) => r !== null)).toBe(true);
      const writer = b.acquire('report');
      await recorded.whenQueued('lock:report');
      // Queued behind the readers: a later reader waits for the writer.
      const lateReader = a.acquire('report', { mode: 'shared' });
      expect(await a.extend(readers[0])).toBe(true);
      await a.release(readers[0]);
      await b.release(readers[1]);
      const written = await writer;
      expect(written.fence).toBeGreaterThan(readers[1].fence);
      await b.release(written);
      const read = await lateReader;
      expect(read.fence).toBeGreaterThan(written.fence);
      await a.release(read);

      const places = [(await a.tryAcquire('pool', { limit: 2 }))!, (await b.tryAcquire('pool', { limit: 2 }))!];
      expect(places.every((p) => p !== null)).toBe(true);
      const third = b.acquire('pool', { limit: 2 });
      await sleep(50);
      await a.release(places[0]);
      const taken = await third;
      expect(taken.fence).toBeGreaterThan(places[1].fence);
      await b.release(places[1]);
      await b.release(taken);
      await a.shutdown();
      await b.shutdown();
    });
  });
});
