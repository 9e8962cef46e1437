import { Logger, type LoggerService } from '@nestjs/common';
import { driftMargin } from '../lock.constants';
import type { ContractContext } from './contract-context';
import { eventually, sleep, whenAborted } from './time';

/** minHold, leases that end by their TTL, and the warning a lost lease gets. */
export function minHoldCases(ctx: ContractContext): void {
  const { describe } = ctx.api;
  const { expect } = ctx.api;
  const it = ctx.it;

  describe('minHold and leases that end by their TTL', () => {
    // The minHold of these cases outlasts the few calls each makes before it checks that the lease
    // is still held (or that a waiter has queued), however slow the backend and the machine.
    it('keeps the lease until minHold after the work started, without a release, then lets it end', async () => {
      const a = ctx.service();
      const b = ctx.service();
      let token = '';
      const result = await a.withLock(
        'min-hold',
        (lock) => {
          token = lock.token;
          return 'done';
        },
        { minHold: 1_500 },
      );
      expect(result).toBe('done');
      expect(a.heldCount).toBe(0);
      // Held for the rest of minHold, by one extension and no release.
      expect(await b.tryAcquire('min-hold')).toBeNull();
      expect(ctx.backend.count('release', token)).toBe(0);
      const next = await b.acquire('min-hold', { wait: 5_000 });
      expect(ctx.backend.count('release', token)).toBe(0);
      await b.release(next);
    });

    it(`hands a minHold lease to a ${ctx.capabilities.fifo ? 'queued' : 'waiting'} caller when it ends, with a higher fence`, async () => {
      const a = ctx.service();
      const b = ctx.service();
      let fence = 0n;
      await a.withLock('min-hold-fifo', (lock) => (fence = lock.fence), { minHold: 1_500 });
      const waiting = b.acquire('min-hold-fifo', { wait: 5_000 });
      await ctx.backend.whenQueued(ctx.prefix + 'min-hold-fifo');
      const next = await waiting;
      expect(next.fence).toBeGreaterThan(fence);
      await b.release(next);
    });

    it('releases as usual when the work took longer than minHold', async () => {
      const a = ctx.service();
      const b = ctx.service();
      let token = '';
      await a.withLock(
        'min-hold-short',
        async (lock) => {
          token = lock.token;
          await sleep(150);
        },
        { minHold: 50 },
      );
      expect(ctx.backend.count('release', token)).toBe(1);
      expect(await b.tryAcquire('min-hold-short')).not.toBeNull();
    });

    it('forgets leases that ended by their TTL without a release, and releases none of them at shutdown', async () => {
      const locks = ctx.service();
      // Fifty leases, all held at once (their TTL outlasts any answer), then cut to 100 ms each
      // and left to end by that TTL. (Taken with a TTL of 100 ms straight away, the first could end
      // before a slow backend, or a busy pool, answered the last: then they are never 50 at once.)
      const guards = await Promise.all(Array.from({ length: 50 }, (_, i) => locks.tryAcquire(`ttl-end-${i}`)));
      expect(guards.every((g) => g !== null)).toBe(true);
      expect(locks.heldCount).toBe(50);
      expect(await Promise.all(guards.map((g) => locks.extend(g!, 100)))).toEqual(guards.map(() => true));
      await eventually(() => locks.heldCount === 0, { within: 5_000, what: 'the ended leases to be forgotten' });

      // A lease taken with a short TTL is forgotten when it ends; one that an extension renewed in
      // time is held again until its new end, past the end of its first TTL.
      const ttl = 1_000;
      expect(await locks.tryAcquire('ttl-end-own', { ttl: 400 })).not.toBeNull();
      const kept = (await locks.tryAcquire('ttl-end-kept', { ttl }))!;
      // No later than this, the service would forget it if the extension had not renewed it.
      const firstEnd = performance.now() + ttl + driftMargin(ttl);
      expect(await locks.extend(kept, 10_000)).toBe(true);
      await eventually(() => locks.heldCount === 1, { within: 5_000, what: 'the unextended lease to be forgotten' });
      await sleep(Math.max(0, firstEnd - performance.now()) + 50);
      expect(locks.heldCount).toBe(1);
      const releasesBefore = ctx.backend.count('release');
      await locks.shutdown();
      expect(ctx.backend.count('release')).toBe(releasesBefore + 1);
    });

    it('logs a lost lease at the moment it is lost, naming the key and fence, before the work ends', async () => {
      const locks = ctx.service();
      const warnings: string[] = [];
      const restore = recordWarnings(warnings);
      try {
        let warnedBeforeEnd: string[] = [];
        await locks
          .withLock(
            'lost-logged',
            async (held) => {
              await ctx.backend.release(ctx.prefix + 'lost-logged', held.token);
              await whenAborted(held.signal);
              warnedBeforeEnd = [...warnings];
              return 'done';
            },
            { ttl: 1_000 },
          )
          .catch(() => undefined);
        expect(warnedBeforeEnd).toEqual([
          expect.stringMatching(/^Lock "lost-logged" \(fence \d+\) was lost: .*should stop/),
        ]);
      } finally {
        restore();
      }
    });
  });
}

/**
 * Records what Nest's `Logger` warns (the service logs through it) until the returned function puts
 * the app's logger back: `Logger.overrideLogger`, so no test-runner spy is needed.
 */
function recordWarnings(warnings: string[]): () => void {
  const previous = (Logger as unknown as { staticInstanceRef?: LoggerService }).staticInstanceRef;
  const ignore = (): void => undefined;
  Logger.overrideLogger({
    log: ignore,
    error: ignore,
    warn: (message: unknown) => void warnings.push(String(message)),
  });
  return () => Logger.overrideLogger(previous ?? false);
}
