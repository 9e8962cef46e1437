import { memoryBackend } from '../../lib';
import { DistributedLockService } from '../../lib/distributed-lock.service';
import { LeaseExpiries } from '../../lib/lease-expiries';
import { eventually } from '../support/time';

describe('LeaseExpiries', () => {
  beforeEach(() => jest.useFakeTimers({ now: 0 }));
  afterEach(() => jest.useRealTimers());

  it('expires each item once at its time, with one timer, and honours moves and removals', async () => {
    const expired: string[] = [];
    const expiries = new LeaseExpiries<string>((item) => expired.push(item));
    const start = performance.now();
    expiries.set('a', start + 100);
    expiries.set('b', start + 200);
    expiries.set('c', start + 300);
    expect(jest.getTimerCount()).toBe(1);
    expiries.set('a', start + 400); // moved later: its first time is stale
    expiries.delete('c');
    await jest.advanceTimersByTimeAsync(250);
    expect(expired).toEqual(['b']);
    await jest.advanceTimersByTimeAsync(200);
    expect(expired).toEqual(['b', 'a']);
    expect(expiries.size).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('LeaseExpiries under a stream of items removed before their time', () => {
  it('keeps its heap at most twice the items it holds', () => {
    const expiries = new LeaseExpiries<number>(() => undefined);
    const start = performance.now();
    for (let i = 0; i < 100; i++) expiries.set(-i - 1, start + 60_000);
    let largest = 0;
    for (let i = 0; i < 100_000; i++) {
      expiries.set(i, start + 30_000 + i);
      expiries.delete(i);
      largest = Math.max(largest, expiries.nodes);
    }
    expect(expiries.size).toBe(100);
    expect(largest).toBeLessThanOrEqual(2 * 101);
    expiries.clear();
  });
});

describe('leases that end by their TTL without a release', () => {
  it('are all forgotten by the service: 5,000 unreleased leases, held count back to 0', async () => {
    const backend = memoryBackend();
    const locks = new DistributedLockService({ backend, keyPrefix: 'expiry:', ttl: 10_000, wait: 0 });
    for (let i = 0; i < 5_000; i++) await locks.tryAcquire(`k${i}`, { ttl: 50 + (i % 50) });
    expect(locks.heldCount).toBeGreaterThan(0);
    await eventually(() => locks.heldCount === 0, { within: 10_000, what: 'every ended lease to be forgotten' });
    await eventually(() => backend.size === 0, { within: 10_000, what: 'the backend to drop the ended leases' });
    await locks.shutdown();
  });
});
