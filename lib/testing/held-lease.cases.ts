import { DistributedLockService } from '../distributed-lock.service';
import type { LockGuard } from '../distributed-lock';
import { LockBackendError, LockLostError, LockTimeoutError } from '../lock.errors';
import { currentLock } from '../lock-context';
import type { ContractContext } from './contract-context';
import type { RecordedCall } from './recording-backend';
import { sleep } from './time';

/** "Guarantees are about the caller": nothing treats a lock as held once its lease is not confirmed. */
export function heldLeaseCases(ctx: ContractContext): void {
  const { describe } = ctx.api;
  const { expect } = ctx.api;
  const it = ctx.it;

  describe('a lock is held only while its lease is confirmed', () => {
    /** A gate for RecordingBackend.gate: calls it matches wait until open() is called. */
    function gateOn(test: (call: RecordedCall) => boolean) {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      let reached!: (call: RecordedCall) => void;
      const reachedGate = new Promise<RecordedCall>((resolve) => (reached = resolve));
      let isOpen = false;
      ctx.backend.gate = (call) => {
        if (isOpen || !test(call)) return undefined;
        reached(call);
        return opened;
      };
      return {
        reached: reachedGate,
        get isOpen() {
          return isOpen;
        },
        open: () => {
          isOpen = true;
          ctx.backend.gate = undefined;
          open();
        },
      };
    }

    /** Blocks the event loop, as synchronous CPU work does. */
    function blockFor(ms: number): void {
      const until = performance.now() + ms;
      while (performance.now() < until) {
        // busy
      }
    }

    it('does not run the work when its grant comes back after its local deadline, and leaves nothing held', async () => {
      const locks = ctx.service();
      let held = true;
      // The attempt reaches the backend only after longer than the TTL: the holder cannot trust the lease.
      ctx.backend.gate = (call) => (call.method === 'tryAcquire' && held ? sleep(400) : undefined);
      let ran = false;
      const error = await locks
        .withLock(
          'late-grant',
          () => {
            ran = true;
          },
          { ttl: 250 },
        )
        .catch((e: unknown) => e);
      held = false;
      ctx.backend.gate = undefined;
      expect(ran).toBe(false);
      expect(error).toBeInstanceOf(LockBackendError);
      expect(String((error as Error).message)).toContain('after its local deadline');
      expect(locks.heldCount).toBe(0);
      const attempt = ctx.backend.calls.find(
        (call) => call.method === 'tryAcquire' && call.key === ctx.prefix + 'late-grant',
      )!;
      await ctx.backend.whenSettled((call) => call.method === 'release' && call.token === attempt.token);
      expect(await ctx.service().tryAcquire('late-grant')).not.toBeNull();
    });

    it('acquire and tryAcquire return no guard whose grant came back after its local deadline, and leave nothing held', async () => {
      const locks = ctx.service();
      let late = true;
      // The attempts reach the backend only after longer than the TTL: the guard would be expired when returned.
      ctx.backend.gate = (call) => (call.method === 'tryAcquire' && late ? sleep(400) : undefined);
      const acquired = await locks.acquire('late-guard', { ttl: 250, wait: 0 }).catch((e: unknown) => e);
      const tried = await locks.tryAcquire('late-try', { ttl: 250 }).catch((e: unknown) => e);
      late = false;
      ctx.backend.gate = undefined;
      for (const error of [acquired, tried]) {
        expect(error).toBeInstanceOf(LockBackendError);
        expect(String((error as Error).message)).toContain('after its local deadline');
      }
      expect(locks.heldCount).toBe(0);
      for (const key of ['late-guard', 'late-try']) {
        const attempt = ctx.backend.calls.find(
          (call) => call.method === 'tryAcquire' && call.key === ctx.prefix + key,
        )!;
        await ctx.backend.whenSettled((call) => call.method === 'release' && call.token === attempt.token);
        expect(await ctx.service().tryAcquire(key)).not.toBeNull();
      }
    });

    it('a callback that outlived its withLock sees no lock, and its withLock on the key waits for the next holder', async () => {
      const a = ctx.service();
      const b = ctx.service();
      let resume!: () => void;
      const later = new Promise<void>((resolve) => (resume = resolve));
      let escaped!: Promise<{ current: unknown; aborted: boolean; nested: unknown }>;
      await a.withLock('escape', (lock) => {
        // Fire and forget: not awaited by the work.
        escaped = (async () => {
          await later;
          const current = currentLock();
          const aborted = lock.signal.aborted;
          const nested = await a
            .withLock('escape', () => 'ran inside a stale hold', { wait: 150 })
            .catch((e: unknown) => e);
          return { current, aborted, nested };
        })();
      });
      const other = (await b.tryAcquire('escape'))!;
      expect(other).not.toBeNull();
      resume();
      const seen = await escaped;
      expect(seen.current).toBeUndefined();
      expect(seen.aborted).toBe(true);
      expect(seen.nested).toBeInstanceOf(LockTimeoutError);
      await b.release(other);
    });

    it('release inside withLock ends the hold: a nested withLock on the key acquires anew', async () => {
      const a = ctx.service();
      const b = ctx.service();
      const result = await a.withLock('inner-release', async (lock) => {
        await a.release(lock);
        expect(currentLock()).toBeUndefined();
        expect(lock.signal.aborted).toBe(true);
        expect(await a.extend(lock)).toBe(false);
        const other = (await b.tryAcquire('inner-release'))!;
        expect(other).not.toBeNull();
        await expect(a.withLock('inner-release', () => 'ran', { wait: 150 })).rejects.toBeInstanceOf(LockTimeoutError);
        await b.release(other);
        return a.withLock('inner-release', (again) => again.fence > lock.fence, { wait: 2_000 });
      });
      expect(result).toBe(true);
      expect(a.heldCount).toBe(0);
    });

    it('work that blocks the event loop past the TTL sees its signal aborted, and withLock rejects with LockLostError', async () => {
      const locks = ctx.service();
      // Longer than the answer to the attempt on a slow machine, or the grant would come back too
      // late for the work to run at all (the case above).
      const ttl = 600;
      const seen: { aborted?: boolean; current?: unknown; wrote?: boolean; nested?: unknown } = {};
      const error = await locks
        .withLock(
          'blocked',
          (lock) => {
            blockFor(ttl * 2.2);
            seen.current = currentLock();
            seen.aborted = lock.signal.aborted;
            // The write a careful holder guards, with no await after the block.
            seen.wrote = !lock.signal.aborted;
            return 'done';
          },
          { ttl },
        )
        .catch((e: unknown) => e);
      expect(seen).toEqual({ aborted: true, current: undefined, wrote: false });
      expect(error).toBeInstanceOf(LockLostError);
      expect(error).toMatchObject({ key: 'blocked', workSucceeded: true });

      // Inside a lost hold, a nested withLock on the key rejects instead of running as if it held it.
      const nested = await locks
        .withLock(
          'blocked-nested',
          async () => {
            blockFor(ttl * 2.2);
            return locks.withLock('blocked-nested', () => 'ran');
          },
          { ttl },
        )
        .catch((e: unknown) => e);
      expect(nested).toBeInstanceOf(LockLostError);
      expect(locks.heldCount).toBe(0);
    });

    it('the signal of a blocked holder is aborted when read, whatever reads it first', async () => {
      const locks = ctx.service();
      const reads: unknown[] = [];
      await locks
        .withLock(
          'blocked-reads',
          (lock) => {
            const { signal } = lock;
            blockFor(1_400);
            reads.push(signal.reason instanceof LockLostError);
            reads.push(signal.aborted);
            try {
              signal.throwIfAborted();
              reads.push('not thrown');
            } catch (error) {
              reads.push(error instanceof LockLostError);
            }
          },
          { ttl: 600 },
        )
        .catch(() => undefined);
      expect(reads).toEqual([true, true, true]);
    });

    it('an extend with a shorter TTL moves the watchdog: the lease stays held on the new schedule', async () => {
      const a = ctx.service();
      const b = ctx.service();
      // The new TTL is long enough for its extensions (every second) to come back in time on a slow
      // machine, and for a wall-clock step of the backend's host of up to 2 s between two of them;
      // the old schedule's first extension (at 10 s) is far past the end of the new TTL.
      await a.withLock(
        'shorter',
        async (lock) => {
          expect(await a.extend(lock, 3_000)).toBe(true);
          const extensionsBefore = ctx.backend.count('extend') + ctx.backend.count('extendMany');
          // Past the new TTL, long before the old schedule's first extension.
          await sleep(4_000);
          expect(await b.tryAcquire('shorter')).toBeNull();
          expect(lock.signal.aborted).toBe(false);
          expect(lock.expiresAt).toBeGreaterThan(Date.now());
          expect(ctx.backend.count('extend') + ctx.backend.count('extendMany')).toBeGreaterThan(extensionsBefore);
          expect(await a.extend(lock, 5_000)).toBe(true);
          await sleep(400);
          expect(await b.tryAcquire('shorter')).toBeNull();
        },
        { ttl: 30_000 },
      );
      expect(await b.tryAcquire('shorter')).not.toBeNull();
    });

    // Run where the target can remove a lease behind its holder's back (every single-server backend).
    if (ctx.target.evict) {
      it('a lease that vanished from the backend during short work makes withLock reject with LockLostError', async () => {
        const a = ctx.service();
        // The other holder is another instance of the app, with a backend of its own (of the same
        // store; an in-process store is the case's backend itself).
        const otherBackend = ctx.target.inProcess ? ctx.backend.inner : await ctx.target.create();
        const b = new DistributedLockService({
          backend: otherBackend,
          keyPrefix: ctx.prefix,
          ttl: 10_000,
          wait: 5_000,
        });
        let other: LockGuard | null = null;
        const error = await a
          .withLock('vanished', async () => {
            await ctx.target.evict!(ctx.backend.inner, ctx.prefix + 'vanished');
            other = await b.tryAcquire('vanished');
            return 'done';
          })
          .catch((e: unknown) => e);
        expect(other).not.toBeNull();
        expect(error).toBeInstanceOf(LockLostError);
        expect(error).toMatchObject({ key: 'vanished', workSucceeded: true });
        // The other holder's lease was not touched by the failed holder's release.
        expect(await b.extend(other!)).toBe(true);
        await b.release(other!);
        if (otherBackend !== ctx.backend.inner) await otherBackend.close();
      });
    } else {
      it('not checked (the target has no evict): a lease that vanished from the backend during short work makes withLock reject with LockLostError', async () => {
        expect(ctx.target.evict).toBeUndefined();
      });
    }

    it('a waiter aborted while its queued attempt is in flight never receives the key', async () => {
      const holder = ctx.service();
      const waiter = ctx.service();
      const held = (await holder.tryAcquire('abort-in-flight'))!;
      const gate = gateOn((call) => call.method === 'tryAcquire' && call.queued === true);
      const controller = new AbortController();
      const pending = waiter.acquire('abort-in-flight', { wait: 20_000, signal: controller.signal });
      const attempt = await gate.reached;
      const reason = new Error('caller gave up');
      controller.abort(reason);
      await expect(pending).rejects.toBe(reason);
      // Whatever the give-back does, it must not overtake the attempt still on its way.
      await sleep(50);
      gate.open();
      await ctx.backend.whenSettled((call) => call === attempt);
      await ctx.backend.whenSettled((call) => call.method === 'release' && call.token === attempt.token);
      await holder.release(held);
      // Had the dead waiter stayed queued, the key would now be handed to it for its TTL.
      const next = await holder.tryAcquire('abort-in-flight');
      expect(next).not.toBeNull();
      expect(waiter.heldCount).toBe(0);
    });

    it('a wait whose deadline passes while an attempt is in flight rejects at the deadline and leaves nothing queued', async () => {
      const holder = ctx.service();
      const waiter = ctx.service();
      const held = (await holder.tryAcquire('deadline-in-flight'))!;
      const gate = gateOn((call) => call.method === 'tryAcquire' && call.queued === true);
      // The wait outlasts the first attempt and the subscription, so its queued attempt is under way
      // (held at the gate) when the deadline passes.
      const error = await waiter.acquire('deadline-in-flight', { wait: 1_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      // Answered while the ctx.backend call was still held back.
      expect(gate.isOpen).toBe(false);
      const attempt = await gate.reached;
      gate.open();
      await ctx.backend.whenSettled((call) => call.method === 'release' && call.token === attempt.token);
      await holder.release(held);
      expect(await holder.tryAcquire('deadline-in-flight')).not.toBeNull();
    });
  });
}
