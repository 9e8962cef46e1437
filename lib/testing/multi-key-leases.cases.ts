import type { LockGuard } from '../distributed-lock';
import { LockBackendError, LockLostError } from '../lock.errors';
import { currentLock } from '../lock-context';
import type { ContractContext } from './contract-context';
import { expectKeysFree } from './multi-key.cases';
import { whenAborted } from './time';

/**
 * Multi-key locks once held: a fence per key, one signal for the set that aborts when any key's
 * lease is lost, reentrancy, and extend / release of every key.
 */
export function multiKeyLeaseCases(ctx: ContractContext): void {
  const { describe, expect } = ctx.api;
  const it = ctx.it;
  const expectFree = (keys: readonly string[]): Promise<void> => expectKeysFree(ctx, keys);

  describe('multi-key locks, held', () => {
    it('every key keeps its own fence, strictly increasing across sets, single-key holds and holders', async () => {
      const a = ctx.service();
      const b = ctx.service();
      const last = new Map<string, bigint>();
      const saw = (key: string, fence: bigint): void => {
        if (last.has(key)) expect({ key, increased: fence > last.get(key)! }).toEqual({ key, increased: true });
        last.set(key, fence);
      };
      for (let round = 0; round < 4; round++) {
        const locks = round % 2 === 0 ? a : b;
        const set = await locks.acquire(['f:2', 'f:1'], { wait: 5_000 });
        for (const key of set.keys) saw(key, set.fence(key));
        await locks.release(set);
        // f:2 alone in between: its fence moves on, f:1's does not take part.
        const single: LockGuard = await b.acquire('f:2', { wait: 5_000 });
        saw('f:2', single.fence);
        await b.release(single);
        await a.withLock(['f:1', 'f:2'], (held) => held.keys.forEach((key) => saw(key, held.fence(key))));
      }
    });

    it("the set's signal aborts with LockLostError when one key's lease is lost, and withLock rejects with it", async () => {
      const locks = ctx.service();
      let reason: unknown;
      let perKey: boolean[] = [];
      const error = await locks
        .withLock(
          ['s:2', 's:1'],
          async (held) => {
            // Another party ends the second key's lease behind the holder's back.
            await ctx.backend.release(ctx.prefix + 's:2', held.locks[1].token);
            await whenAborted(held.signal);
            reason = held.signal.reason;
            perKey = held.locks.map((lock) => lock.signal.aborted);
            return 'done';
          },
          { ttl: 1_000 },
        )
        .catch((e: unknown) => e);
      expect(reason).toBeInstanceOf(LockLostError);
      expect(reason).toMatchObject({ key: 's:2' });
      expect(perKey).toEqual([false, true]);
      expect(error).toBeInstanceOf(LockLostError);
      expect(error).toMatchObject({ key: 's:2', workSucceeded: true });
      expect(locks.heldCount).toBe(0);
      await expectFree(['s:1', 's:2']);
    });

    it("the set's signal of work that blocked the event loop past the TTL is aborted when read", async () => {
      const locks = ctx.service();
      const ttl = 600;
      const seen: unknown[] = [];
      const error = await locks
        .withLock(
          ['b:1', 'b:2'],
          (held) => {
            const { signal } = held;
            const until = performance.now() + ttl * 2.2;
            while (performance.now() < until) {
              // busy, as synchronous CPU work is
            }
            seen.push(signal.aborted, signal.reason instanceof LockLostError);
          },
          { ttl },
        )
        .catch((e: unknown) => e);
      expect(seen).toEqual([true, true]);
      expect(error).toBeInstanceOf(LockLostError);
      expect(locks.heldCount).toBe(0);
    });

    it('re-enters the keys a surrounding withLock holds and acquires (then releases) only the others', async () => {
      const locks = ctx.service();
      const other = ctx.service();
      await locks.withLock('r:b', async (outer) => {
        await locks.withLock(['r:c', 'r:b', 'r:a'], async (held) => {
          expect(held.fence('r:b')).toBe(outer.fence);
          expect(held.locks[1]).toBe(outer);
          expect(await other.tryAcquire('r:a')).toBeNull();
          expect(await other.tryAcquire('r:c')).toBeNull();
        });
        // The set's exit released what it acquired, not the surrounding hold.
        expect(await other.tryAcquire('r:b')).toBeNull();
        expect(currentLock()).toBe(outer);
        await expectFree(['r:a', 'r:c']);
      });
      await expectFree(['r:b']);
    });

    it('extend is true only when every key was extended; release attempts every key even when one fails', async () => {
      const locks = ctx.service();
      const set = await locks.acquire(['e:a', 'e:b'], { ttl: 5_000 });
      expect(await locks.extend(set, 6_000)).toBe(true);
      // e:b is taken away behind the holder's back.
      await ctx.backend.release(ctx.prefix + 'e:b', set.locks[1].token);
      expect(await locks.extend(set)).toBe(false);
      // e:a was still extended: its lease is still this guard's.
      expect(await locks.extend(set.locks[0])).toBe(true);

      const tokens = new Set(set.locks.map((lock) => lock.token));
      const releasesBefore = ctx.backend.calls.filter((c) => c.method === 'release' && tokens.has(c.token!)).length;
      ctx.backend.fail.add('release');
      await expect(locks.release(set)).rejects.toBeInstanceOf(LockBackendError);
      ctx.backend.fail.delete('release');
      const releases = ctx.backend.calls.filter((c) => c.method === 'release' && tokens.has(c.token!)).length;
      expect(releases - releasesBefore).toBeGreaterThanOrEqual(2);
      await locks.release(set);
      await expectFree(['e:a', 'e:b']);
    });
  });
}
