import { LockLostError } from '../lock.errors';
import { currentLock } from '../lock-context';
import type { ContractContext } from './contract-context';
import { sleep, whenAborted } from './time';

/** withLock: the work runs under the lock, is extended past its TTL, loses it visibly, and keeps its own error. */
export function withLockCases(ctx: ContractContext): void {
  const { describe } = ctx.api;
  const { expect } = ctx.api;
  const it = ctx.it;

  describe('withLock', () => {
    it('runs the work under the lock and releases it afterwards', async () => {
      const locks = ctx.service();
      const result = await locks.withLock('work', async (held) => {
        expect(held.key).toBe('work');
        expect(held.signal.aborted).toBe(false);
        expect(currentLock()).toBe(held);
        expect(await locks.tryAcquire('work')).toBeNull();
        return 42;
      });
      expect(result).toBe(42);
      expect(currentLock()).toBeUndefined();
      expect(await locks.tryAcquire('work')).not.toBeNull();
    });

    it('releases after the work throws, and rethrows the work’s own error', async () => {
      const locks = ctx.service();
      const boom = new Error('boom');
      await expect(locks.withLock('throws', () => Promise.reject(boom))).rejects.toBe(boom);
      expect(await locks.tryAcquire('throws')).not.toBeNull();
    });

    it('keeps extending while the work runs past the TTL', async () => {
      const locks = ctx.service();
      const other = ctx.service();
      const fenceSeen: bigint[] = [];
      // Work for two TTLs and more. The TTL leaves each extension (sent every ttl/3) time to come
      // back from a slow backend on a busy machine.
      await locks.withLock(
        'long',
        async (held) => {
          for (let i = 0; i < 6; i++) {
            await sleep(350);
            expect(await other.tryAcquire('long')).toBeNull();
            expect(held.signal.aborted).toBe(false);
          }
          fenceSeen.push(held.fence);
        },
        { ttl: 1_000 },
      );
      expect(ctx.backend.count('extend') + ctx.backend.count('extendMany')).toBeGreaterThanOrEqual(2);
      expect(await other.tryAcquire('long')).not.toBeNull();
    });

    it('aborts the signal and rejects with LockLostError when the lease is taken away', async () => {
      const locks = ctx.service();
      let reason: unknown;
      const error = await locks
        .withLock(
          'lost',
          async (held) => {
            // Another party ends the lease behind the holder's back.
            await ctx.backend.release(ctx.prefix + 'lost', held.token);
            await whenAborted(held.signal);
            reason = held.signal.reason;
            return 'done';
          },
          { ttl: 1_000 },
        )
        .catch((e: unknown) => e);
      expect(reason).toBeInstanceOf(LockLostError);
      expect(error).toBeInstanceOf(LockLostError);
      expect(error).toMatchObject({ key: 'lost', workSucceeded: true });
    });

    it('is reentrant on the same key within one call chain', async () => {
      const locks = ctx.service();
      await locks.withLock('outer', async (outer) => {
        await locks.withLock('outer', async (inner) => {
          expect(inner.fence).toBe(outer.fence);
          expect(currentLock()).toBe(outer);
        });
        // The inner exit did not release.
        expect(await locks.tryAcquire('outer')).toBeNull();
        await locks.withLock('other', async (other) => {
          expect(currentLock()).toBe(other);
        });
        expect(currentLock()).toBe(outer);
      });
      expect(await locks.tryAcquire('outer')).not.toBeNull();
    });

    it('never replaces the work’s error with a release error', async () => {
      const locks = ctx.service();
      ctx.backend.fail.add('release');
      const boom = new Error('work failed');
      await expect(locks.withLock('release-fails', () => Promise.reject(boom))).rejects.toBe(boom);
      await expect(locks.withLock('release-fails-2', () => 'ok')).resolves.toBe('ok');
    });
  });
}
