import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { LockGuard } from '../distributed-lock';
import { DistributedLockService } from '../distributed-lock.service';
import { LockTimeoutError } from '../lock.errors';
import { CASE_TIMEOUT, type ConformanceTarget, type ConformanceTestApi } from './conformance-target';
import { RecordingBackend } from './recording-backend';
import { eventually } from './time';

/** Waiters in the crowd, all with the same deadline. */
const CROWD = 500;
/**
 * The TTL the waiters ask for. A key handed to a waiter that gave up would stay taken that long,
 * far longer than "promptly" below, so a stuck key cannot pass for a slow one.
 */
const WAITER_TTL = 60_000;
/** How long after everything settled the key may take to become free (the give-backs still running). */
const PROMPTLY = 10_000;
/** Each case's timeout, at least: a crowd, its give-backs, then a free key within PROMPTLY. */
const CROWD_TIMEOUT = 60_000;

/**
 * Many waiters giving up at the same moment, written once for every backend: whatever the
 * interleaving of their give-backs with each other and with the holder's release, no waiter that
 * gave up ends up with the key, nothing stays queued, and the key is free again at once.
 */
export function describeGiveUpContract(api: ConformanceTestApi, target: ConformanceTarget): void {
  const { describe, expect } = api;
  const timeout = Math.max(target.timeout ?? CASE_TIMEOUT, CROWD_TIMEOUT);
  const it = (name: string, body: () => Promise<unknown>): void => api.it(name, body, timeout);

  describe(`give-up contract: ${target.name}`, () => {
    let backend: RecordingBackend;
    let prefix: string;

    api.beforeEach(async () => {
      backend = new RecordingBackend(await target.create());
      prefix = `giveup:${randomBytes(6).toString('hex')}:`;
    }, timeout);

    api.afterEach(() => backend.close(), timeout);

    if (target.teardown) api.afterAll(() => target.teardown!(), timeout);

    function service(): DistributedLockService {
      return new DistributedLockService({ backend, keyPrefix: prefix, ttl: WAITER_TTL, wait: 5_000 });
    }

    /** The key is free: a fresh caller takes it (and, queued behind it, the next one gets it on release). */
    async function expectFreeSoon(locks: DistributedLockService, key: string): Promise<void> {
      const first = await eventually(() => locks.tryAcquire(key, { ttl: 5_000 }), {
        within: PROMPTLY,
        what: `"${key}" to be free`,
      });
      const next = locks.acquire(key, { wait: PROMPTLY });
      await backend.whenQueued(prefix + key, 1);
      await locks.release(first);
      await locks.release(await next);
      expect(locks.heldCount).toBe(0);
    }

    it(`${CROWD} waiters whose deadlines pass together leave nothing held or queued`, async () => {
      const locks = service();
      const holder = (await locks.tryAcquire('crowd'))!;
      const outcomes = await Promise.allSettled(
        Array.from({ length: CROWD }, () => locks.acquire('crowd', { wait: 300 })),
      );
      const timedOut = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof LockTimeoutError).length;
      expect(timedOut).toBe(CROWD);
      await locks.release(holder);
      await expectFreeSoon(locks, 'crowd');
    });

    it(`${CROWD} queued waiters aborted by one signal leave nothing held or queued`, async () => {
      const locks = service();
      const holder = (await locks.tryAcquire('aborted'))!;
      const controller = new AbortController();
      setMaxListeners(CROWD + 10, controller.signal);
      // Their places in the queue would outlast the test: only their give-backs can remove them.
      const waiters = Array.from({ length: CROWD }, () =>
        locks.acquire('aborted', { wait: 30_000, signal: controller.signal }),
      );
      await backend.whenQueued(prefix + 'aborted', CROWD);
      controller.abort(new Error('the caller gave up'));
      const outcomes = await Promise.allSettled(waiters);
      expect(
        outcomes.filter((o) => o.status === 'rejected' && String(o.reason).includes('the caller gave up')).length,
      ).toBe(CROWD);
      await locks.release(holder);
      await expectFreeSoon(locks, 'aborted');
    });

    it(`when the holder releases while ${CROWD} waiters wait, some are served in turn and the rest give up cleanly`, async () => {
      const locks = service();
      const holder = (await locks.tryAcquire('midway'))!;
      const served: bigint[] = [];
      const waiters = Array.from({ length: CROWD }, () =>
        locks.acquire('midway', { wait: 3_000 }).then(async (guard: LockGuard) => {
          served.push(guard.fence);
          await locks.release(guard);
        }),
      );
      // Midway: once some of the crowd has joined the queue, long before their deadlines.
      await backend.whenQueued(prefix + 'midway', 50);
      await locks.release(holder);
      const outcomes = await Promise.allSettled(waiters);
      const failures = outcomes.filter(
        (o): o is PromiseRejectedResult => o.status === 'rejected' && !(o.reason instanceof LockTimeoutError),
      );
      expect(failures.map((f) => String(f.reason))).toEqual([]);
      expect(served.length).toBeGreaterThan(0);
      // One holder after another: fences in the order the waiters were served.
      expect(served).toEqual([...served].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      await expectFreeSoon(locks, 'midway');
    });
  });
}
