import { driftMargin } from '../../lib/lock.constants';
import { Watchdog, type ExtendBatch, type WatchedLease } from '../../lib/watchdog';

describe('Watchdog', () => {
  beforeEach(() => jest.useFakeTimers({ now: 0 }));
  afterEach(() => jest.useRealTimers());

  interface Probe {
    lease: WatchedLease;
    lost: string[];
    confirmed: number[];
  }
  const probe = (key: string, ttl: number): Probe => {
    const p: Probe = {
      lost: [],
      confirmed: [],
      lease: {
        backendKey: key,
        token: 'a'.repeat(32),
        ttl,
        onConfirmed: (deadline) => p.confirmed.push(deadline),
        onLost: (detail) => p.lost.push(detail),
      },
    };
    return p;
  };
  /** A backend stand-in whose answers the test controls: every batch is recorded and answered later. */
  const controlledBatches = () => {
    const batches: Array<{ items: { key: string }[]; answer: (r: Array<boolean | Error>) => void }> = [];
    const extend: ExtendBatch = (items) => new Promise((resolve) => batches.push({ items, answer: resolve }));
    return { batches, extend };
  };

  it('holds 10,000 leases with one timer and extends them in one batch per tick', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const probes = Array.from({ length: 10_000 }, (_, i) => probe(`k${i}`, 30_000));
    const watches = probes.map((p) => watchdog.watch(p.lease, performance.now()));
    expect(jest.getTimerCount()).toBe(1);

    await jest.advanceTimersByTimeAsync(10_000);
    expect(batches).toHaveLength(1);
    expect(batches[0].items).toHaveLength(10_000);
    batches[0].answer(probes.map(() => true));
    await jest.advanceTimersByTimeAsync(0);
    expect(probes.every((p) => p.confirmed.length === 1)).toBe(true);
    expect(jest.getTimerCount()).toBe(1);

    watches.forEach((watch) => watch.stop());
    expect(watchdog.size).toBe(0);
    // The timer stays armed (unref'd) for the next lease, and finds nothing when it fires.
    expect(jest.getTimerCount()).toBe(1);
    await jest.advanceTimersByTimeAsync(30_000);
    expect(batches).toHaveLength(1);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('keeps its timer armed across a stream of short leases, and never grows its heap past twice the live ones', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const long = probe('long', 30_000);
    watchdog.watch(long.lease, performance.now());
    const timers = jest.getTimerCount();
    for (let i = 0; i < 10_000; i++) watchdog.watch(probe(`k${i}`, 30_000).lease, performance.now()).stop();
    expect(jest.getTimerCount()).toBe(timers);
    expect((watchdog as unknown as { heap: { size: number } }).heap.size).toBeLessThanOrEqual(65);
    await jest.advanceTimersByTimeAsync(10_000);
    expect(batches.map((batch) => batch.items.map((item) => item.key))).toEqual([['long']]);
    watchdog.stopAll();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('extends every ttl/3 and moves the deadline to send time + ttl - drift', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const p = probe('k', 3_000);
    watchdog.watch(p.lease, performance.now());
    await jest.advanceTimersByTimeAsync(999);
    expect(batches).toHaveLength(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(batches).toHaveLength(1);
    const sentAt = performance.now();
    await jest.advanceTimersByTimeAsync(50);
    batches[0].answer([true]);
    await jest.advanceTimersByTimeAsync(0);
    expect(p.confirmed).toEqual([sentAt + 3_000 - driftMargin(3_000)]);
    await jest.advanceTimersByTimeAsync(950);
    expect(batches).toHaveLength(2);
  });

  it('reports the lease lost at once when an extension is refused', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const p = probe('k', 3_000);
    watchdog.watch(p.lease, performance.now());
    await jest.advanceTimersByTimeAsync(1_000);
    batches[0].answer([false]);
    await jest.advanceTimersByTimeAsync(0);
    expect(p.lost).toEqual([expect.stringContaining('refused')]);
    expect(watchdog.size).toBe(0);
    watchdog.stopAll();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('reports the lease lost at its local deadline when no extension is confirmed, not before', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const p = probe('k', 3_000);
    watchdog.watch(p.lease, performance.now());
    const deadline = 3_000 - driftMargin(3_000);
    await jest.advanceTimersByTimeAsync(deadline - 1);
    expect(batches).toHaveLength(1); // sent, never answered
    expect(p.lost).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(p.lost).toEqual([expect.stringContaining('no extension was confirmed')]);
    // A late answer changes nothing.
    batches[0].answer([true]);
    await jest.advanceTimersByTimeAsync(0);
    expect(p.confirmed).toEqual([]);
  });

  it('counts the first deadline from validFor when the backend vouches for less than the ttl, and extends before it', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const p = probe('k', 3_000);
    watchdog.watch(p.lease, performance.now(), 1_200);
    // The first extension goes halfway to the shorter deadline, not at ttl/3.
    await jest.advanceTimersByTimeAsync(599);
    expect(batches).toHaveLength(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(batches).toHaveLength(1);
    const deadline = 1_200 - driftMargin(3_000);
    await jest.advanceTimersByTimeAsync(deadline - 600 - 1);
    expect(p.lost).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(p.lost).toEqual([expect.stringContaining('no extension was confirmed')]);
  });

  it('gives the whole ttl back once an extension is confirmed after a shorter first term', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const p = probe('k', 3_000);
    watchdog.watch(p.lease, performance.now(), 2_400);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(batches).toHaveLength(1);
    const sentAt = performance.now();
    batches[0].answer([true]);
    await jest.advanceTimersByTimeAsync(0);
    expect(p.confirmed).toEqual([sentAt + 3_000 - driftMargin(3_000)]);
  });

  it('retries after a failed extension and recovers when the backend answers again', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const p = probe('k', 3_000);
    watchdog.watch(p.lease, performance.now());
    await jest.advanceTimersByTimeAsync(1_000);
    batches[0].answer([new Error('connection reset')]);
    await jest.advanceTimersByTimeAsync(300);
    expect(batches).toHaveLength(2);
    batches[1].answer([true]);
    await jest.advanceTimersByTimeAsync(0);
    expect(p.confirmed).toHaveLength(1);
    expect(p.lost).toEqual([]);
  });

  it('sends nothing for a lease once its stop function returned', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    const a = probe('a', 3_000);
    const b = probe('b', 3_000);
    const stopA = watchdog.watch(a.lease, performance.now());
    watchdog.watch(b.lease, performance.now());
    stopA.stop();
    await jest.advanceTimersByTimeAsync(1_000);
    expect(batches.flatMap((batch) => batch.items.map((i) => i.key))).toEqual(['b']);
  });

  it('groups leases due within a few milliseconds of each other into one batch', async () => {
    const { batches, extend } = controlledBatches();
    const watchdog = new Watchdog(extend);
    for (let i = 0; i < 100; i++) {
      watchdog.watch(probe(`k${i}`, 3_000).lease, performance.now());
      await jest.advanceTimersByTimeAsync(0.1);
    }
    await jest.advanceTimersByTimeAsync(1_000);
    expect(batches).toHaveLength(1);
    expect(batches[0].items).toHaveLength(100);
  });
});
