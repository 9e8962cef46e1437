import type { ReleaseResult } from '../backends/lock-backend';
import type { LockGuard } from '../distributed-lock';
import { LockTimeoutError } from '../lock.errors';
import type { ContractContext } from './contract-context';
import { sleep } from './time';

/** Waiting: wake-up by the release, deadlines, wait 0, aborts, and the order waiters are served in. */
export function waitingCases(ctx: ContractContext): void {
  const { expect } = ctx.api;
  const it = ctx.it;

  it(`wakes a waiting acquire by the release itself${ctx.capabilities.fifo ? '' : ' (no queue: it retries on the release event)'}, making no calls while it waits`, async () => {
    const holder = ctx.service();
    const waiter = ctx.service();
    const held = (await holder.tryAcquire('wake'))!;
    const pending = waiter.acquire('wake', { wait: 10_000 });
    const queued = await ctx.backend.whenQueued(ctx.prefix + 'wake');
    const token = queued.token!;
    const callsWhileWaiting = ctx.backend.count('tryAcquire', token);
    // Long enough for any polling loop to show itself.
    await sleep(300);
    expect(ctx.backend.count('tryAcquire', token)).toBe(callsWhileWaiting);

    await holder.release(held);
    const guard = await pending;
    expect(guard.token).toBe(token);
    expect(guard.fence).toBeGreaterThan(held.fence);
    // Handed the key by the release: at most one more attempt after it, none in a loop. (Without a
    // queue, each release announcement of the store may cost a retry: the count is not bounded here.)
    if (ctx.capabilities.fifo)
      expect(ctx.backend.count('tryAcquire', token)).toBeLessThanOrEqual(callsWhileWaiting + 1);
  });

  it('rejects with LockTimeoutError at the deadline and leaves nothing queued', async () => {
    const locks = ctx.service();
    const held = (await locks.tryAcquire('deadline'))!;
    const error = await locks.acquire('deadline', { wait: 150 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(error).toMatchObject({ key: 'deadline' });
    expect((error as LockTimeoutError).waited).toBeGreaterThanOrEqual(150);
    expect((error as LockTimeoutError).message).toContain('"deadline"');

    await locks.release(held);
    // Had the timed-out waiter stayed queued, the key would now be handed to it.
    expect(await locks.acquire('deadline', { wait: 2_000 })).not.toBeNull();
  });

  it('with wait 0 makes exactly one attempt', async () => {
    const locks = ctx.service();
    await locks.tryAcquire('once');
    const before = ctx.backend.count('tryAcquire');
    await expect(locks.acquire('once', { wait: 0 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(ctx.backend.count('tryAcquire')).toBe(before + 1);
    expect(ctx.backend.count('subscribe')).toBe(0);
  });

  it('aborts a waiting acquire at once and leaves nothing held or queued', async () => {
    const locks = ctx.service();
    const held = (await locks.tryAcquire('abort'))!;
    const controller = new AbortController();
    const pending = locks.acquire('abort', { wait: 30_000, signal: controller.signal });
    await ctx.backend.whenQueued(ctx.prefix + 'abort');
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);

    await locks.release(held);
    const next = await locks.acquire('abort', { wait: 3_000, ttl: 10_000 });
    expect(next.fence).toBeGreaterThan(held.fence);

    const before = ctx.backend.calls.length;
    await expect(locks.acquire('abort', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(ctx.backend.calls.length).toBe(before);
  });

  if (ctx.capabilities.fifo) {
    it('hands the key to the queued waiter in the release itself: a caller right after the release does not overtake it', async () => {
      const holder = ctx.service();
      const waiter = ctx.service();
      const late = ctx.service();
      const held = (await holder.tryAcquire('no-overtake'))!;
      const pending = waiter.acquire('no-overtake', { wait: 10_000 });
      await ctx.backend.whenQueued(ctx.prefix + 'no-overtake');
      await holder.release(held);
      expect(await late.tryAcquire('no-overtake')).toBeNull();
      const guard = await pending;
      expect(guard.fence).toBeGreaterThan(held.fence);
      await waiter.release(guard);
    });
  } else {
    it('not claimed (fifo: false): a queued waiter that a caller right after the release cannot overtake', async () => {
      expect(ctx.capabilities.fifo).toBe(false);
    });
  }

  if (ctx.capabilities.fifo) {
    it("wakes a queued waiter of the releasing service from the release's answer, without its subscription's event (releaseWithHandOff; a backend without it: by the event)", async () => {
      const locks = ctx.service();
      const held = (await locks.tryAcquire('answer'))!;
      const pending = locks.acquire('answer', { wait: 5_000 });
      const queued = await ctx.backend.whenQueued(ctx.prefix + 'answer');
      const attempts = ctx.backend.count('tryAcquire', queued.token);
      // Nothing the subscription delivers reaches the waiter from here on, until the events are let go.
      ctx.backend.holdEvents();
      let guard: LockGuard;
      try {
        await locks.release(held);
        if (!ctx.backend.releaseWithHandOff) ctx.backend.releaseEvents();
        guard = await pending;
      } finally {
        // The grant's event, now late, changes nothing.
        ctx.backend.releaseEvents();
      }
      expect(guard.token).toBe(queued.token);
      expect(guard.fence).toBeGreaterThan(held.fence);
      if (ctx.backend.releaseWithHandOff) {
        // The answer named the waiter, and woke it by itself: no re-check, no further attempt.
        const answer = ctx.backend.calls.find((c) => c.method === 'release' && c.token === held.token)!
          .result as ReleaseResult;
        expect(answer).toMatchObject({ released: true, handedTo: { token: queued.token, fence: guard.fence } });
        expect(ctx.backend.count('tryAcquire', queued.token)).toBe(attempts);
      }
      await locks.release(guard);
      const next = (await locks.tryAcquire('answer'))!;
      expect(next.fence).toBeGreaterThan(guard.fence);
      await locks.release(next);
    });
  } else {
    it("not claimed (fifo: false): a queued waiter woken from the release's answer", async () => {
      expect(ctx.capabilities.fifo).toBe(false);
    });
  }

  if (ctx.capabilities.fifo) {
    it('hands the key to waiters in the order they came', async () => {
      const locks = ctx.service();
      const key = 'fifo';
      const first = (await locks.tryAcquire(key))!;
      const order: number[] = [];
      const waiters: Array<Promise<void>> = [];
      for (let i = 1; i <= 5; i++) {
        waiters.push(
          locks.acquire(key, { wait: 20_000 }).then(async (guard) => {
            order.push(i);
            await sleep(5);
            await locks.release(guard);
          }),
        );
        await ctx.backend.whenQueued(ctx.prefix + key, i);
      }
      await locks.release(first);
      await Promise.all(waiters);
      expect(order).toEqual([1, 2, 3, 4, 5]);
    });
  } else {
    it('without a FIFO queue (fifo: false), serves every waiter in turn, one holder at a time, in no promised order', async () => {
      const locks = ctx.service();
      const key = 'no-fifo';
      const first = (await locks.tryAcquire(key))!;
      const served: number[] = [];
      const fences: bigint[] = [first.fence];
      let holding = 0;
      let overlapped = false;
      const waiters: Array<Promise<void>> = [];
      for (let i = 1; i <= 5; i++) {
        waiters.push(
          locks.acquire(key, { wait: 20_000 }).then(async (guard) => {
            overlapped ||= ++holding > 1;
            served.push(i);
            fences.push(guard.fence);
            await sleep(5);
            holding--;
            await locks.release(guard);
          }),
        );
        await ctx.backend.whenQueued(ctx.prefix + key, i);
      }
      await locks.release(first);
      await Promise.all(waiters);
      expect(overlapped).toBe(false);
      expect([...served].sort()).toEqual([1, 2, 3, 4, 5]);
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
    });
  }
}
