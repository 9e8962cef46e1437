import type { HeldLocks, MultiLockGuard } from '../distributed-lock';
import { InvalidLockOptionsError, LockBackendError, LockTimeoutError } from '../lock.errors';
import { currentLock } from '../lock-context';
import type { ContractContext } from './contract-context';
import { seededRandom } from './seeded-random';
import { eventually, sleep } from './time';

/** Concurrent callers of the crowd case, and the keys their sets are drawn from. */
const CROWD = 50;
const CROWD_KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
/** The crowd's wait: a deadlock would end every caller stuck in it with a LockTimeoutError. */
const CROWD_WAIT = 20_000;
/**
 * The TTL of the callers that give up in the middle of a set: a key left to one of them (held, or
 * handed to its queue place) would stay taken this long, far longer than `expectFree` looks.
 */
const GAVE_UP_TTL = 30_000;

/**
 * Multi-key locks (a list of keys given to tryAcquire, acquire or withLock), through the service on
 * this backend: all keys or none, no deadlock whatever order callers list them in, nothing left
 * held or queued after a busy key, a deadline, an abort or a failure, a fence per key, one signal
 * for the set.
 */
export function multiKeyCases(ctx: ContractContext): void {
  const { describe, expect } = ctx.api;
  const it = ctx.it;

  const expectFree = (keys: readonly string[]): Promise<void> => expectKeysFree(ctx, keys);

  /** The keys of `keys` this backend was asked for, in the order it was asked. */
  const attemptedKeys = (): string[] =>
    ctx.backend.calls.filter((call) => call.method === 'tryAcquire').map((call) => call.key.slice(ctx.prefix.length));

  describe('multi-key locks', () => {
    it('takes every key of a list in sorted order, one guard and fence per key, and releases them all', async () => {
      const locks = ctx.service();
      const other = ctx.service();
      const guard = (await locks.tryAcquire(['m:b', 'm:c', 'm:a']))!;
      expect(guard).not.toBeNull();
      expect(guard.keys).toEqual(['m:a', 'm:b', 'm:c']);
      expect(attemptedKeys()).toEqual(['m:a', 'm:b', 'm:c']);
      expect(guard.locks.map((lock) => lock.key)).toEqual(['m:a', 'm:b', 'm:c']);
      guard.keys.forEach((key, i) => expect(guard.fence(key)).toBe(guard.locks[i].fence));
      let unknownKey: unknown;
      try {
        guard.fence('m:z');
      } catch (error) {
        unknownKey = error;
      }
      expect(unknownKey).toBeInstanceOf(InvalidLockOptionsError);
      for (const key of guard.keys) expect(await other.tryAcquire(key)).toBeNull();
      expect(locks.heldCount).toBe(3);
      expect(await locks.extend(guard)).toBe(true);
      await locks.release(guard);
      expect(locks.heldCount).toBe(0);
      await expectFree(guard.keys);

      let seen: HeldLocks | undefined;
      const result = await locks.withLock(['w:b', 'w:a'], async (held) => {
        seen = held;
        expect(held.keys).toEqual(['w:a', 'w:b']);
        expect(held.signal.aborted).toBe(false);
        // The innermost hold is the last key's.
        expect(currentLock()).toBe(held.locks[1]);
        for (const key of held.keys) expect(await other.tryAcquire(key)).toBeNull();
        return 'done';
      });
      expect(result).toBe('done');
      // The hold is over: the set's signal says so, as a single lock's does.
      expect(seen!.signal.aborted).toBe(true);
      expect((seen!.signal.reason as Error).name).toBe('AbortError');
      await expectFree(['w:a', 'w:b']);
    });

    it(`${CROWD} concurrent callers on overlapping key sets listed in random orders: no two holders of a key overlap, and all complete (no deadlock)`, async () => {
      const seed = 0x5eed;
      const random = seededRandom(seed);
      const services = [ctx.service(), ctx.service(), ctx.service()];
      const holders = new Map<string, number>();
      const fences = new Map<string, bigint[]>(CROWD_KEYS.map((key) => [key, []]));
      const overlaps: string[] = [];

      /** 2 or 3 distinct keys of CROWD_KEYS, in a random order. */
      const drawSet = (): string[] => {
        const pool = [...CROWD_KEYS];
        const size = 2 + Math.floor(random() * 2);
        return Array.from({ length: size }, () => pool.splice(Math.floor(random() * pool.length), 1)[0]);
      };
      const work = async (set: MultiLockGuard, pause: number): Promise<void> => {
        for (const key of set.keys) {
          if (holders.get(key)) overlaps.push(key);
          holders.set(key, (holders.get(key) ?? 0) + 1);
          fences.get(key)!.push(set.fence(key));
        }
        await sleep(pause);
        for (const key of set.keys) holders.set(key, holders.get(key)! - 1);
      };
      const callers = Array.from({ length: CROWD }, async (_, i) => {
        const keys = drawSet();
        const pause = Math.floor(random() * 5);
        const locks = services[i % services.length];
        // Half through withLock, half through acquire and release.
        if (i % 2 === 0) return locks.withLock(keys, (held) => work(held, pause), { wait: CROWD_WAIT });
        const guard = await locks.acquire(keys, { wait: CROWD_WAIT });
        try {
          await work(guard, pause);
        } finally {
          await locks.release(guard);
        }
      });
      const outcomes = await Promise.allSettled(callers);
      const failures = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [String(outcome.reason)] : []));
      expect({ seed, failures }).toEqual({ seed, failures: [] });
      expect(overlaps).toEqual([]);
      // Holds of a key never overlapped, so the order they were seen in is the order they were granted in.
      for (const [key, seen] of fences) {
        for (let i = 1; i < seen.length; i++) {
          expect({ key, fence: seen[i] > seen[i - 1] }).toEqual({ key, fence: true });
        }
      }
      for (const locks of services) expect(locks.heldCount).toBe(0);
      await expectFree(CROWD_KEYS);
    });

    it('a set with one busy key takes nothing with wait 0, and names the busy key', async () => {
      const holder = ctx.service();
      const locks = ctx.service();
      const busy = (await holder.tryAcquire('n:b'))!;
      expect(await locks.tryAcquire(['n:c', 'n:b', 'n:a'])).toBeNull();
      expect(locks.heldCount).toBe(0);

      const error = await locks.acquire(['n:a', 'n:b', 'n:c'], { wait: 0 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect(error).toMatchObject({ key: 'n:b', wait: 0 });
      let ran = false;
      const viaWithLock = await locks
        .withLock(['n:a', 'n:b', 'n:c'], () => (ran = true), { wait: 0 })
        .catch((e: unknown) => e);
      expect(viaWithLock).toBeInstanceOf(LockTimeoutError);
      expect(viaWithLock).toMatchObject({ key: 'n:b' });
      expect(ran).toBe(false);
      // Taken in sorted order, the set stopped at its busy key: the key after it was never asked for.
      expect(attemptedKeys()).not.toContain('n:c');
      expect(locks.heldCount).toBe(0);
      await expectFree(['n:a', 'n:c']);
      await holder.release(busy);
      await expectFree(['n:b']);
    });

    it('a set whose busy key stays busy until the deadline rejects at the one deadline and leaves nothing held or queued', async () => {
      const holder = ctx.service();
      const locks = ctx.service();
      const busy = (await holder.tryAcquire('d:b'))!;
      const error = await locks
        .acquire(['d:c', 'd:b', 'd:a'], { wait: 400, ttl: GAVE_UP_TTL })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect(error).toMatchObject({ key: 'd:b', wait: 400 });
      expect((error as LockTimeoutError).waited).toBeGreaterThanOrEqual(400);
      expect((error as LockTimeoutError).message).toContain('"d:b"');

      let ran = false;
      const viaWithLock = await locks
        .withLock(['d:a', 'd:b'], () => (ran = true), { wait: 300, ttl: GAVE_UP_TTL })
        .catch((e: unknown) => e);
      expect(viaWithLock).toBeInstanceOf(LockTimeoutError);
      expect(viaWithLock).toMatchObject({ key: 'd:b', wait: 300 });
      expect(ran).toBe(false);
      expect(locks.heldCount).toBe(0);
      await expectFree(['d:a', 'd:c']);
      // Had a waiter that gave up stayed queued, the release would hand it the key for its long TTL.
      await holder.release(busy);
      await expectFree(['d:b']);
    });

    it('an abort while a set waits for its last key gives back the keys it took and leaves nothing queued', async () => {
      const holder = ctx.service();
      const locks = ctx.service();
      const busy = (await holder.tryAcquire('a:c'))!;
      const controller = new AbortController();
      const pending = locks.acquire(['a:c', 'a:a', 'a:b'], {
        wait: 30_000,
        ttl: GAVE_UP_TTL,
        signal: controller.signal,
      });
      await ctx.backend.whenQueued(ctx.prefix + 'a:c');
      // In the middle of the set: the first two keys are the waiter's.
      expect(await holder.tryAcquire('a:a')).toBeNull();
      expect(await holder.tryAcquire('a:b')).toBeNull();
      const reason = new Error('caller gave up');
      controller.abort(reason);
      await expect(pending).rejects.toBe(reason);
      expect(locks.heldCount).toBe(0);
      await expectFree(['a:a', 'a:b']);

      // The same through withLock: the work never runs.
      const again = new AbortController();
      let ran = false;
      const viaWithLock = locks.withLock(['a:a', 'a:c'], () => (ran = true), {
        wait: 30_000,
        ttl: GAVE_UP_TTL,
        signal: again.signal,
      });
      await ctx.backend.whenQueued(ctx.prefix + 'a:c', 2);
      again.abort(reason);
      await expect(viaWithLock).rejects.toBe(reason);
      expect(ran).toBe(false);
      expect(locks.heldCount).toBe(0);
      await expectFree(['a:a', 'a:b']);
      await holder.release(busy);
      await expectFree(['a:c']);
    });

    it('a backend failure in the middle of a set gives back the keys it took', async () => {
      const locks = ctx.service();
      ctx.backend.gate = (call) =>
        call.method === 'tryAcquire' && call.key === ctx.prefix + 'x:b'
          ? Promise.reject(new Error('injected failure: tryAcquire'))
          : undefined;
      await expect(locks.tryAcquire(['x:b', 'x:a'])).rejects.toBeInstanceOf(LockBackendError);
      await expect(locks.acquire(['x:b', 'x:a'], { wait: 1_000 })).rejects.toBeInstanceOf(LockBackendError);
      let ran = false;
      await expect(locks.withLock(['x:a', 'x:b'], () => (ran = true))).rejects.toBeInstanceOf(LockBackendError);
      ctx.backend.gate = undefined;
      expect(ran).toBe(false);
      expect(locks.heldCount).toBe(0);
      await expectFree(['x:a', 'x:b']);
    });
  });
}

/**
 * Nothing of `keys` is left held or queued: the backend's own state says so (where the target
 * can read it), and a fresh caller takes each key. Both within a bounded time, since give-backs
 * of attempts that were in flight when a wait ended are sent once those come back.
 */
export async function expectKeysFree(ctx: ContractContext, keys: readonly string[]): Promise<void> {
  const fresh = ctx.service();
  for (const key of keys) {
    if (ctx.target.inspect) {
      await eventually(
        async () => {
          const state = await ctx.target.inspect!(ctx.backend.inner, ctx.prefix + key);
          return state.holder === null && state.queued.length === 0;
        },
        { within: 5_000, what: `"${key}" to be neither held nor queued in the backend` },
      );
    }
    const guard = await eventually(() => fresh.tryAcquire(key, { ttl: 5_000 }), {
      within: 5_000,
      what: `"${key}" to be free`,
    });
    await fresh.release(guard);
  }
}
