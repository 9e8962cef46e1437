import { Test } from '@nestjs/testing';
import type { INestApplicationContext } from '@nestjs/common';
import { DistributedLock, LockLostError, LockModule, memoryBackend, type LockGuard } from '../../lib';
import { driftMargin } from '../../lib/lock.constants';

/*
 * A guard's `acquiredAt` and `expiresAt` are `Date.now()` milliseconds, while its deadline is kept
 * on the monotonic clock. The two clocks part when the wall clock is stepped (NTP, a VM resumed from
 * a pause, a machine back from suspend): the guard's times must then still read against `Date.now()`.
 */
describe('guard times when the wall clock was stepped away from the monotonic clock', () => {
  const realNow = Date.now.bind(Date);
  let step = 0;
  let app: INestApplicationContext;
  let locks: DistributedLock;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ backend: memoryBackend(), ttl: 5_000 })],
    }).compile();
    app = await moduleRef.init();
    locks = app.get(DistributedLock);
  });
  beforeEach(() => {
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() + step);
  });
  afterEach(() => {
    jest.restoreAllMocks();
    step = 0;
  });
  afterAll(() => app.close());

  /**
   * What a guard of a lease of `ttl` confirmed since `before` (a `Date.now()` reading) reads against
   * `Date.now()`: its term from then, less the drift margin, and no more than a term from now.
   */
  function expectFresh(guard: LockGuard, ttl: number, before: number): void {
    const now = Date.now();
    expect(guard.expiresAt).toBeGreaterThanOrEqual(before + ttl - driftMargin(ttl) - 1);
    expect(guard.expiresAt).toBeLessThanOrEqual(now + ttl);
  }

  it.each([
    ['forward by a minute (a paused VM resumed, a machine back from suspend)', 60_000],
    ['back by a minute (NTP correcting a fast clock)', -60_000],
  ])('stepped %s: a guard of tryAcquire, and its extension, read against Date.now()', async (_, by) => {
    step = by;
    const before = Date.now();
    const guard = (await locks.tryAcquire(`stepped:${by}`))!;
    expect(guard.acquiredAt).toBeGreaterThanOrEqual(before - 1);
    expect(guard.acquiredAt).toBeLessThanOrEqual(Date.now() + 1);
    expectFresh(guard, 5_000, before);
    step = by * 2;
    const beforeExtend = Date.now();
    expect(await locks.extend(guard, 3_000)).toBe(true);
    expectFresh(guard, 3_000, beforeExtend);
    await locks.release(guard);
  });

  it('stepped while withLock works: the held lock reads against Date.now() after the step', async () => {
    const before = Date.now();
    await locks.withLock(
      'stepped:held',
      async (lock) => {
        expectFresh(lock, 5_000, before);
        step = 60_000;
        const beforeExtend = Date.now();
        expect(await locks.extend(lock, 4_000)).toBe(true);
        expectFresh(lock, 4_000, beforeExtend);
        expect(lock.signal.aborted).toBe(false);
      },
      { ttl: 5_000 },
    );
  });

  it('stepped back, then work that blocks the event loop past its TTL: the signal is aborted and expiresAt is past by Date.now()', async () => {
    step = -60_000;
    const reads: Array<{ aborted: boolean; expiredByDate: boolean }> = [];
    const outcome = await locks
      .withLock(
        'stepped:blocked',
        (lock) => {
          // No await, no timer gets a turn: the lease's 300 ms go by inside one synchronous stretch.
          const until = performance.now() + 450;
          while (performance.now() < until) {
            // busy
          }
          reads.push({ aborted: lock.signal.aborted, expiredByDate: lock.expiresAt <= Date.now() });
        },
        { ttl: 300 },
      )
      .catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(LockLostError);
    expect(reads).toEqual([{ aborted: true, expiredByDate: true }]);
  });
});
