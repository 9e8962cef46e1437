import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { type AcquireResult, type LockBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { redisBackend, type RedisLockBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { RecordingBackend } from '../../support/recording-backend';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';
import { eventually, sleep } from '../../support/time';

const prefix = testRunPrefix('string-numbers');
const token = (): string => randomBytes(16).toString('hex');
const retryIn = (result: AcquireResult): unknown => (result.fence === null ? result.retryIn : undefined);

/**
 * ioredis `stringNumbers: true` answers every integer as a string ('1', '-250', '1735…'), also
 * inside arrays and pipelines, and its `duplicate()` (the subscriber) inherits the option.
 */
describe.each([
  [
    'a client the user passed in',
    (): { backend: LockBackend; close: () => void } => {
      const client = new Redis({ ...sharedRedisOptions(prefix), stringNumbers: true });
      return { backend: redisBackend({ client }), close: () => client.disconnect() };
    },
  ],
  [
    'a connection the backend opened',
    (): { backend: LockBackend; close: () => void } => ({
      backend: redisBackend({ connection: { ...sharedRedisOptions(prefix), stringNumbers: true } }),
      close: () => undefined,
    }),
  ],
])('redisBackend with ioredis stringNumbers: true, through %s', (_, open) => {
  const opened: Array<{ backend: LockBackend; close: () => void }> = [];
  const backend = (): RedisLockBackend => {
    const created = open();
    opened.push(created);
    return created.backend as RedisLockBackend;
  };
  const service = (b: LockBackend): DistributedLockService =>
    new DistributedLockService({ backend: b, keyPrefix: 'lock:', ttl: 5_000, wait: 5_000 });

  afterEach(async () => {
    for (const { backend: b, close } of opened.splice(0)) {
      await b.close();
      close();
    }
  });
  afterAll(async () => {
    await deleteSharedKeys(prefix);
  });

  it('acquires, extends and releases with bigint fences, and reports busy with a numeric retryIn', async () => {
    const b = backend();
    const t = token();
    const granted = await b.tryAcquire('lock:plain', t, 5_000);
    expect(typeof granted.fence).toBe('bigint');
    expect(granted.fence! > 0n).toBe(true);
    const busy = await b.tryAcquire('lock:plain', token(), 5_000);
    expect(busy.fence).toBeNull();
    expect(typeof retryIn(busy)).toBe('number');
    expect(retryIn(busy)).toBeGreaterThan(0);
    expect(await b.extend('lock:plain', t, 5_000)).toBe(true);
    expect(await b.extend('lock:plain', token(), 5_000)).toBe(false);
    expect(
      await b.extendMany([
        { key: 'lock:plain', token: t, ttl: 5_000 },
        { key: 'lock:plain', token: token(), ttl: 5_000 },
      ]),
    ).toEqual([true, false]);
    expect(await b.release('lock:plain', t)).toBe(true);
    expect(await b.release('lock:plain', t)).toBe(false);
    const next = await b.tryAcquire('lock:plain', token(), 5_000);
    expect(next.fence! > granted.fence!).toBe(true);
  });

  it('hands an expired lease to the oldest waiter, the array reply read as numbers', async () => {
    const b = backend();
    const waiter = token();
    const events: string[] = [];
    await b.subscribe('lock:expired', (e) =>
      events.push(e.type === 'granted' ? `granted ${e.token} ${typeof e.fence}` : e.type),
    );
    const holder = token();
    await b.tryAcquire('lock:expired', holder, 10_000);
    expect((await b.tryAcquire('lock:expired', waiter, 10_000, { lease: 10_000 })).fence).toBeNull();
    // Once the waiter is queued, the lease is cut short and left to expire.
    expect(await b.extend('lock:expired', holder, 100)).toBe(true);
    await sleep(200);
    const late = await b.tryAcquire('lock:expired', token(), 10_000);
    expect(late.fence).toBeNull();
    expect(typeof retryIn(late)).toBe('number');
    // The grant is published by the call that found the lease expired; it comes on the subscriber's own connection.
    await eventually(() => events.length > 0, { what: 'the grant to be published' });
    expect(events).toEqual([`granted ${waiter} bigint`]);
    expect((await b.tryAcquire('lock:expired', waiter, 10_000)).fence).not.toBeNull();
  });

  it('runs the service: tryAcquire, a waiter woken by the release in this process and in another, extend, withLock with renewals', async () => {
    const b = new RecordingBackend(backend());
    const o = new RecordingBackend(backend());
    const locks = service(b);
    const other = service(o);

    const first = (await locks.tryAcquire('handoff'))!;
    expect(first).not.toBeNull();
    expect(await other.tryAcquire('handoff')).toBeNull();
    // A waiter of the same backend, first in the queue: woken by the release reply.
    const local = locks.acquire('handoff');
    await b.whenQueued('lock:handoff');
    // A waiter of another backend, queued behind it: woken by the published grant, through its subscriber.
    const remote = other.acquire('handoff');
    await o.whenQueued('lock:handoff');
    await locks.release(first);
    const second = await local;
    expect(second.fence).toBeGreaterThan(first.fence);
    expect(await locks.extend(second)).toBe(true);
    await locks.release(second);
    const third = await remote;
    expect(third.fence).toBeGreaterThan(second.fence);
    await other.release(third);

    // ttl 1 s, work 2.1 s: the watchdog's batched extensions have to be read as renewed.
    const result = await locks.withLock(
      'renewed',
      async (lock) => {
        await sleep(2_100);
        return lock.signal.aborted;
      },
      { ttl: 1_000 },
    );
    expect(result).toBe(false);
    await locks.shutdown();
    await other.shutdown();
  });

  it('reads shared and limited replies as numbers: several hand-offs, heldWith, extend and release of a place', async () => {
    const b = backend();
    const shared = { kind: 'shared' } as const;
    const writer = token();
    const readers = [token(), token(), token()];
    await b.tryAcquire('lock:modes', writer, 10_000);
    for (const reader of readers)
      expect((await b.tryAcquire('lock:modes', reader, 10_000, { lease: 10_000 }, shared)).fence).toBeNull();
    const released = await b.releaseWithHandOff!('lock:modes', writer);
    expect(released.released).toBe(true);
    const handOffs = [released.handedTo!, ...(released.alsoHandedTo ?? [])];
    expect(handOffs.map((h) => h.token)).toEqual(readers);
    for (const handOff of handOffs) expect(typeof handOff.fence).toBe('bigint');
    expect(await b.extend('lock:modes', readers[1], 10_000)).toBe(true);
    expect(await b.extendMany([{ key: 'lock:modes', token: readers[2], ttl: 10_000 }])).toEqual([true]);
    const refused = await b.tryAcquire('lock:modes', token(), 10_000, undefined, { kind: 'limit', limit: 2 });
    expect(refused).toMatchObject({ fence: null, heldWith: 'shared' });
    expect(typeof retryIn(refused)).toBe('number');
    for (const reader of readers) expect(await b.release('lock:modes', reader)).toBe(true);
    expect(await b.release('lock:modes', readers[0])).toBe(false);
  });

  it('leaves no key behind once the locks are released', async () => {
    const b = backend();
    const locks = service(b);
    const held = await locks.acquire('clean');
    const waiting = locks.acquire('clean');
    await sleep(50);
    await locks.release(held);
    await locks.release(await waiting);
    const raw = new Redis(sharedRedisOptions(prefix));
    try {
      const keys = redisLockKeys('lock:clean');
      expect(await raw.exists(keys.lease, keys.queue, keys.waiters)).toBe(0);
    } finally {
      raw.disconnect();
    }
    await locks.shutdown();
  });
});
