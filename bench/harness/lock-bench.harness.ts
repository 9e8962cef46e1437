import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Takes the lock on `key` and resolves with the function that gives it back. */
export type LockUnderTest = (key: string) => Promise<() => Promise<void>>;

export interface ContentionResult {
  name: string;
  durationMs: number;
  /** Share of the run during which some worker was inside the critical section. */
  utilisation: number;
  acquisitions: number;
  p50Wait: number;
  p99Wait: number;
  maxWait: number;
  /** Jain's fairness index over per-worker acquisition counts (1 = perfectly even). */
  fairness: number;
  /** Times a worker entered while another was inside: must be 0. */
  overlaps: number;
  /** Every wait (ms from asking to entering), in the order the workers entered: the distribution behind p50/p99/max. */
  waits: number[];
}

/**
 * The contention workload: `workers` loops on one key, each taking the lock, holding it `holdMs`,
 * giving it back and thinking `thinkMs`, for `durationMs`. All workers run in this process, so the
 * critical section is checked exactly (one variable, one clock).
 */
export async function runContention(
  name: string,
  lock: LockUnderTest,
  { workers = 8, holdMs = 2, thinkMs = 1, durationMs = 5_000, key = `bench:${Date.now()}` } = {},
): Promise<ContentionResult> {
  const waits: number[] = [];
  const counts = new Array<number>(workers).fill(0);
  let inside = -1;
  let overlaps = 0;
  let busy = 0;
  const start = performance.now();
  const end = start + durationMs;

  const worker = async (id: number): Promise<void> => {
    while (performance.now() < end) {
      const asked = performance.now();
      const release = await lock(key);
      const entered = performance.now();
      if (entered >= end) {
        await release();
        break;
      }
      waits.push(entered - asked);
      if (inside !== -1) overlaps++;
      inside = id;
      await sleep(holdMs);
      if (inside === id) inside = -1;
      const left = performance.now();
      busy += Math.min(left, end) - entered;
      counts[id]++;
      await release();
      await sleep(thinkMs);
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, id) => worker(id)));

  const sorted = [...waits].sort((a, b) => a - b);
  const pick = (q: number): number =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
  const sum = counts.reduce((a, b) => a + b, 0);
  const sumSq = counts.reduce((a, b) => a + b * b, 0);
  return {
    name,
    durationMs,
    utilisation: busy / durationMs,
    acquisitions: sum,
    p50Wait: pick(0.5),
    p99Wait: pick(0.99),
    maxWait: sorted.length ? sorted[sorted.length - 1] : NaN,
    fairness: sumSq === 0 ? 0 : (sum * sum) / (workers * sumSq),
    overlaps,
    waits,
  };
}

export interface ThroughputResult {
  name: string;
  concurrency: number;
  opsPerSecond: number;
}

/** Uncontended acquire+release cycles per second, `concurrency` in flight, each on its own key. */
export async function runThroughput(
  name: string,
  lock: LockUnderTest,
  { concurrency = 1, durationMs = 3_000, prefix = `bench:tp:${Date.now()}` } = {},
): Promise<ThroughputResult> {
  let ops = 0;
  const end = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, id) => {
      let n = 0;
      while (performance.now() < end) {
        const release = await lock(`${prefix}:${id}:${n++ % 64}`);
        await release();
        ops++;
      }
    }),
  );
  return { name, concurrency, opsPerSecond: ops / ((performance.now() - started) / 1000) };
}

const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

/** Prints contention results as one table, with each row's ratio against `anchor` where given. */
export function printContention(results: ContentionResult[]): void {
  console.table(
    results.map((r) => ({
      lock: r.name,
      utilisation: fixed(r.utilisation, 3),
      'acq/s': fixed(r.acquisitions / (r.durationMs / 1000), 0),
      'p50 wait ms': fixed(r.p50Wait, 2),
      'p99 wait ms': fixed(r.p99Wait, 2),
      'max wait ms': fixed(r.maxWait, 1),
      'Jain fairness': fixed(r.fairness, 3),
      overlaps: r.overlaps,
    })),
  );
}

/** Prints throughput results, each with its ratio to the row named `floor` at the same concurrency. */
export function printThroughput(results: ThroughputResult[], floor: string): void {
  console.table(
    results.map((r) => {
      const base = results.find((b) => b.name === floor && b.concurrency === r.concurrency);
      return {
        lock: r.name,
        'in flight': r.concurrency,
        'ops/s': fixed(r.opsPerSecond, 0),
        [`× ${floor}`]: base ? fixed(r.opsPerSecond / base.opsPerSecond, 2) : '-',
      };
    }),
  );
}
