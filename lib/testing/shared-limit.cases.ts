import type { LockGuard } from '../distributed-lock';
import { InvalidLockOptionsError, LockTimeoutError } from '../lock.errors';
import type { ContractContext } from './contract-context';
import { expectKeysFree } from './multi-key.cases';
import { seededRandom } from './seeded-random';
import { eventually, sleep } from './time';

/** Concurrent callers of the crowd cases. */
const CROWD = 50;
/** The crowds' wait: long enough for every caller to get its turn behind the others. */
const CROWD_WAIT = 25_000;
/** How long a case looks for something that must not happen (a grant out of turn). */
const QUIET = 300;

/**
 * Shared (read-write) and limited locks (rule 7 of the SPI), through the service on this backend,
 * for the modes the target claims; a mode it does not claim is refused before any call reaches it.
 */
export function sharedLimitCases(ctx: ContractContext): void {
  const { describe, expect } = ctx.api;
  const it = ctx.it;
  /** The call rejects with InvalidLockOptionsError, its message matching `pattern`. */
  const refused = async (call: Promise<unknown>, pattern: RegExp): Promise<void> => {
    const error = await call.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(InvalidLockOptionsError);
    expect(error).toMatchObject({ message: ctx.api.expect.stringMatching(pattern) });
  };
  const limitClaimed = ctx.capabilities.modes.includes('limit');
  const sharedClaimed = ctx.capabilities.modes.includes('shared');

  /** Records every hold's start and end in `log`, holding for `ms`. */
  const holdFor = (log: Interval[], mode: Interval['mode'], ms: number) => async (lock: LockGuard) => {
    const interval: Interval = { mode, start: performance.now(), end: Infinity, token: lock.token, fence: lock.fence };
    log.push(interval);
    await sleep(ms);
    interval.end = performance.now();
  };

  describe('limited locks', () => {
    if (!limitClaimed) {
      it('refuses limit with InvalidLockOptionsError before any call to the backend (limit not claimed)', async () => {
        const locks = ctx.service();
        await expect(locks.tryAcquire('l', { limit: 2 })).rejects.toBeInstanceOf(InvalidLockOptionsError);
        await refused(
          locks.withLock('l', () => 1, { limit: 2 }),
          /does not support limit/,
        );
        expect(ctx.backend.calls).toEqual([]);
        expect(locks.heldCount).toBe(0);
      });
      return;
    }

    it(`never lets more than the limit hold at once: ${CROWD} callers on three services, limit 4`, async () => {
      const services = [ctx.service(), ctx.service(), ctx.service()];
      const log: Interval[] = [];
      const random = seededRandom(7);
      await Promise.all(
        Array.from({ length: CROWD }, (_, i) =>
          services[i % 3].withLock('crowd', holdFor(log, 'limit', 5 + Math.floor(random() * 15)), {
            limit: 4,
            wait: CROWD_WAIT,
          }),
        ),
      );
      expect(log).toHaveLength(CROWD);
      expect(maxOverlap(log)).toBeLessThanOrEqual(4);
      expect(maxOverlap(log)).toBeGreaterThan(1);
      expect(new Set(log.map((hold) => hold.token)).size).toBe(CROWD);
      expect(new Set(log.map((hold) => hold.fence)).size).toBe(CROWD);
      for (const locks of services) expect(locks.heldCount).toBe(0);
      await expectKeysFree(ctx, ['crowd']);
    });

    it('gives each holder its own lease: extended and released alone, the others kept', async () => {
      const locks = ctx.service();
      const a = (await locks.tryAcquire('own', { limit: 2 }))!;
      const b = (await locks.tryAcquire('own', { limit: 2 }))!;
      expect(a).not.toBeNull();
      expect(b).not.toBeNull();
      expect(a.token).not.toBe(b.token);
      expect(b.fence).toBeGreaterThan(a.fence);
      expect(await locks.tryAcquire('own', { limit: 2 })).toBeNull();
      expect(await locks.extend(a)).toBe(true);
      await locks.release(a);
      expect(await locks.extend(a)).toBe(false);
      expect(await locks.extend(b)).toBe(true);
      const c = (await locks.tryAcquire('own', { limit: 2 }))!;
      expect(c).not.toBeNull();
      expect(c.fence).toBeGreaterThan(b.fence);
      expect(await locks.tryAcquire('own', { limit: 2 })).toBeNull();
      await locks.release(b);
      await locks.release(c);
      await expectKeysFree(ctx, ['own']);
    });

    it("gives a crashed holder's place back when its lease ends", async () => {
      const crashed = ctx.service();
      const other = ctx.service();
      expect(await crashed.tryAcquire('crash', { limit: 2, ttl: 600 })).not.toBeNull();
      const kept = (await other.tryAcquire('crash', { limit: 2, ttl: 10_000 }))!;
      // The first holder never extends or releases (a crashed process): its place comes back by itself.
      expect(await other.tryAcquire('crash', { limit: 2 })).toBeNull();
      const next = await eventually(() => other.tryAcquire('crash', { limit: 2 }), {
        within: 5_000,
        what: "the crashed holder's place to come back",
      });
      expect(next.fence).toBeGreaterThan(kept.fence);
      await other.release(kept);
      await other.release(next);
      await expectKeysFree(ctx, ['crash']);
    });

    it('refuses another limit, exclusive or shared on a key held with a limit, and the other way round; nothing stays held or queued', async () => {
      const locks = ctx.service();
      const other = ctx.service();
      const held = (await locks.tryAcquire('conflict', { limit: 3 }))!;
      await refused(other.tryAcquire('conflict', { limit: 2 }), /held with limit 3.*asked for limit 2/);
      await expect(other.acquire('conflict', { wait: 2_000 })).rejects.toBeInstanceOf(InvalidLockOptionsError);
      if (sharedClaimed) {
        await refused(
          other.withLock('conflict', () => 1, { mode: 'shared', wait: 2_000 }),
          /held with limit 3.*asked for shared/,
        );
      }
      expect(other.heldCount).toBe(0);
      await locks.release(held);
      const exclusive = (await locks.tryAcquire('conflict'))!;
      await refused(other.acquire('conflict', { limit: 3, wait: 2_000 }), /held with exclusive/);
      await locks.release(exclusive);
      await expectKeysFree(ctx, ['conflict']);
    });

    it('hands a freed place to the oldest waiter by the release itself, with no calls while it waits', async () => {
      const locks = ctx.service();
      const waiterService = ctx.service();
      const first = (await locks.tryAcquire('handoff', { limit: 2 }))!;
      const second = (await locks.tryAcquire('handoff', { limit: 2 }))!;
      const waiting = waiterService.acquire('handoff', { limit: 2, wait: 20_000 });
      const queued = await ctx.backend.whenQueued(ctx.prefix + 'handoff');
      await sleep(QUIET);
      const attempts = ctx.backend.count('tryAcquire', queued.token);
      await locks.release(first);
      const granted = await waiting;
      expect(granted.token).toBe(queued.token);
      expect(granted.fence).toBeGreaterThan(second.fence);
      // Woken by the hand-off: no attempt between joining the queue and the release.
      expect(ctx.backend.count('tryAcquire', queued.token)).toBeLessThanOrEqual(attempts + 1);
      expect(attempts).toBeLessThanOrEqual(2);
      await locks.release(second);
      await waiterService.release(granted);
      await expectKeysFree(ctx, ['handoff']);
    });

    it('leaves nothing held or queued when a waiter aborts or its deadline passes', async () => {
      const locks = ctx.service();
      const holders = [(await locks.tryAcquire('give-up', { limit: 1 }))!];
      const controller = new AbortController();
      const failure = (call: Promise<unknown>): Promise<unknown> =>
        call.then(
          () => undefined,
          (error: unknown) => error,
        );
      const aborted = failure(locks.acquire('give-up', { limit: 1, wait: 20_000, signal: controller.signal }));
      const timedOut = failure(locks.acquire('give-up', { limit: 1, wait: 400 }));
      await ctx.backend.whenQueued(ctx.prefix + 'give-up', 1);
      controller.abort(new Error('caller gave up'));
      expect(await aborted).toMatchObject({ message: 'caller gave up' });
      expect(await timedOut).toBeInstanceOf(LockTimeoutError);
      await locks.release(holders[0]);
      await expectKeysFree(ctx, ['give-up']);
      expect(locks.heldCount).toBe(0);
    });

    it('runs a withLock of the same limit inside a limited hold in that hold, and refuses any other mode there', async () => {
      const locks = ctx.service();
      await locks.withLock(
        'nested',
        async (outer) => {
          await locks.withLock('nested', (inner) => expect(inner.token).toBe(outer.token), { limit: 2 });
          await refused(
            locks.withLock('nested', () => 1, { limit: 3 }),
            /inside a hold of the same key/,
          );
          await expect(locks.withLock('nested', () => 1)).rejects.toBeInstanceOf(InvalidLockOptionsError);
        },
        { limit: 2 },
      );
      await expectKeysFree(ctx, ['nested']);
    });
  });

  describe('shared locks', () => {
    if (!sharedClaimed) {
      it("refuses mode 'shared' with InvalidLockOptionsError before any call to the backend (shared not claimed)", async () => {
        const locks = ctx.service();
        await refused(locks.acquire('s', { mode: 'shared' }), /does not support mode 'shared'/);
        expect(ctx.backend.calls).toEqual([]);
        expect(locks.heldCount).toBe(0);
      });
      return;
    }

    it('lets shared holders hold together and keeps an exclusive holder apart from them', async () => {
      const locks = ctx.service();
      const other = ctx.service();
      const r1 = (await locks.tryAcquire('rw', { mode: 'shared' }))!;
      const r2 = (await other.tryAcquire('rw', { mode: 'shared' }))!;
      expect(r1).not.toBeNull();
      expect(r2).not.toBeNull();
      expect(r2.fence).toBeGreaterThan(r1.fence);
      expect(await other.tryAcquire('rw')).toBeNull();
      expect(await other.tryAcquire('rw', { mode: 'exclusive' })).toBeNull();
      await locks.release(r1);
      expect(await other.tryAcquire('rw')).toBeNull();
      await other.release(r2);
      const writer = (await other.tryAcquire('rw'))!;
      expect(writer).not.toBeNull();
      // Every exclusive grant is above every earlier grant, shared ones too.
      expect(writer.fence).toBeGreaterThan(r2.fence);
      expect(await locks.tryAcquire('rw', { mode: 'shared' })).toBeNull();
      await other.release(writer);
      await expectKeysFree(ctx, ['rw']);
    });

    it('does not let shared callers that came after a queued exclusive one overtake it', async () => {
      const locks = ctx.service();
      const reader = (await locks.tryAcquire('pref', { mode: 'shared' }))!;
      const order: string[] = [];
      const writer = locks.withLock('pref', () => void order.push('writer'), { wait: 20_000 });
      await ctx.backend.whenQueued(ctx.prefix + 'pref');
      const lateReader = locks.withLock('pref', () => void order.push('late reader'), {
        mode: 'shared',
        wait: 20_000,
      });
      await sleep(QUIET);
      expect(order).toEqual([]);
      await locks.release(reader);
      await Promise.all([writer, lateReader]);
      expect(order).toEqual(['writer', 'late reader']);
      await expectKeysFree(ctx, ['pref']);
    });

    it('gives the key to the shared waiters queued behind an exclusive waiter that gives up, beside the holders', async () => {
      const locks = ctx.service();
      const reader = (await locks.tryAcquire('gave-up-writer', { mode: 'shared', ttl: 30_000 }))!;
      const controller = new AbortController();
      const writer = locks.acquire('gave-up-writer', { wait: 20_000, signal: controller.signal }).then(
        () => 'granted',
        (error: unknown) => error,
      );
      await ctx.backend.whenQueued(ctx.prefix + 'gave-up-writer');
      // Queued behind the writer: it waits for the writer, not for the reader that holds.
      const late = locks.acquire('gave-up-writer', { mode: 'shared', wait: 5_000 });
      await ctx.backend.whenQueued(ctx.prefix + 'gave-up-writer', 2);
      controller.abort(new Error('the writer gave up'));
      expect(await writer).toMatchObject({ message: 'the writer gave up' });
      // The first reader's lease runs 30 s: the late one got the key beside it, not after it.
      const lateReader = await late;
      expect(await locks.extend(reader)).toBe(true);
      expect(lateReader.fence).toBeGreaterThan(reader.fence);
      await locks.release(lateReader);
      await locks.release(reader);
      await expectKeysFree(ctx, ['gave-up-writer']);
    });

    it('hands the key to every shared waiter queued behind a released exclusive holder at once', async () => {
      const locks = ctx.service();
      const writer = (await locks.tryAcquire('batch'))!;
      const log: Interval[] = [];
      const readers = [0, 1, 2].map(() =>
        locks.withLock('batch', holdFor(log, 'shared', 400), { mode: 'shared', wait: 20_000 }),
      );
      await ctx.backend.whenQueued(ctx.prefix + 'batch', 3);
      await sleep(QUIET);
      const queuedTokens = [...new Set(ctx.backend.calls.filter((c) => c.queued).map((c) => c.token!))];
      const attemptsBefore = queuedTokens.map((token) => ctx.backend.count('tryAcquire', token));
      await locks.release(writer);
      await Promise.all(readers);
      expect(maxOverlap(log)).toBe(3);
      // Woken by the release itself: each reader made its first and its queued attempt, and at most
      // one more (a grant older than a third of its ttl is confirmed by one attempt), nothing while it waited.
      for (const attempts of attemptsBefore) expect(attempts).toBeLessThanOrEqual(2);
      queuedTokens.forEach((token, i) =>
        expect(ctx.backend.count('tryAcquire', token)).toBeLessThanOrEqual(attemptsBefore[i] + 1),
      );
      for (const hold of log) expect(hold.fence).toBeGreaterThan(writer.fence);
      await expectKeysFree(ctx, ['batch']);
    });

    it('leaves nothing held or queued when a shared waiter aborts or its deadline passes', async () => {
      const locks = ctx.service();
      const writer = (await locks.tryAcquire('reader-gives-up'))!;
      const controller = new AbortController();
      const failure = (call: Promise<unknown>): Promise<unknown> =>
        call.then(
          () => undefined,
          (error: unknown) => error,
        );
      const aborted = failure(
        locks.acquire('reader-gives-up', { mode: 'shared', wait: 20_000, signal: controller.signal }),
      );
      const timedOut = failure(locks.acquire('reader-gives-up', { mode: 'shared', wait: 400 }));
      await ctx.backend.whenQueued(ctx.prefix + 'reader-gives-up', 1);
      controller.abort(new Error('the reader gave up'));
      expect(await aborted).toMatchObject({ message: 'the reader gave up' });
      expect(await timedOut).toBeInstanceOf(LockTimeoutError);
      await locks.release(writer);
      await expectKeysFree(ctx, ['reader-gives-up']);
      expect(locks.heldCount).toBe(0);
    });

    it(`keeps writers apart from readers and from each other: ${CROWD} callers, 9 in 10 readers`, async () => {
      const services = [ctx.service(), ctx.service(), ctx.service()];
      const log: Interval[] = [];
      const random = seededRandom(11);
      await Promise.all(
        Array.from({ length: CROWD }, (_, i) => {
          const writer = random() < 0.1 || i === 0;
          return services[i % 3].withLock(
            'crowd-rw',
            holdFor(log, writer ? 'exclusive' : 'shared', 5 + Math.floor(random() * 15)),
            { mode: writer ? 'exclusive' : 'shared', wait: CROWD_WAIT },
          );
        }),
      );
      expect(log).toHaveLength(CROWD);
      const writers = log.filter((hold) => hold.mode === 'exclusive');
      for (const w of writers) {
        const overlapping = log.filter((other) => other !== w && other.start < w.end && w.start < other.end);
        expect(overlapping).toEqual([]);
      }
      expect(maxOverlap(log.filter((hold) => hold.mode === 'shared'))).toBeGreaterThan(1);
      await expectKeysFree(ctx, ['crowd-rw']);
    });

    it('runs shared work inside an exclusive hold, and refuses exclusive work inside a shared hold instead of waiting for itself', async () => {
      const locks = ctx.service();
      await locks.withLock('up', async (outer) => {
        await locks.withLock('up', (inner) => expect(inner.token).toBe(outer.token), { mode: 'shared' });
      });
      await locks.withLock(
        'up',
        async () => {
          await refused(
            locks.withLock('up', () => 1, { wait: 60_000 }),
            /asked for exclusive inside a hold of the same key with shared/,
          );
          await locks.withLock('up', () => 1, { mode: 'shared' });
        },
        { mode: 'shared' },
      );
      await expectKeysFree(ctx, ['up']);
    });
  });
}

interface Interval {
  mode: 'exclusive' | 'shared' | 'limit';
  start: number;
  end: number;
  token: string;
  fence: bigint;
}

/** The most intervals of `log` that overlap at one moment. */
function maxOverlap(log: readonly Interval[]): number {
  const points = log.flatMap((hold) => [
    { at: hold.start, delta: 1 },
    { at: hold.end, delta: -1 },
  ]);
  // At equal times an end comes before a start: a hold handed on at once does not overlap its successor.
  points.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let most = 0;
  for (const point of points) {
    now += point.delta;
    most = Math.max(most, now);
  }
  return most;
}
