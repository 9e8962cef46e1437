import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { LockLostError, type ExtendItem, type HeldLock, type LockBackend } from '../lib';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { redisBackend } from '../lib/redis';
import { inProcessMutex } from './harness/in-process-mutex';
import {
  printContention,
  printThroughput,
  runContention,
  runThroughput,
  type ContentionResult,
} from './harness/lock-bench.harness';
import { packageVersion } from './harness/machine-facts';
import { rawIoredisFloor, redisSemaphoreAnchor, redlockAnchor } from './harness/redis-anchors';
import { benchArgs, contentionRow, resultsWriter, throughputRow, type Role } from './harness/results-file';
import { serviceLock } from './harness/service-lock';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LIBRARY = 'nestjs-distributed-lock';
const FLOOR = 'raw ioredis floor';
const FLOOR_AUTO = 'raw floor, auto-pipelined';
const REDLOCK = `redlock ${packageVersion('redlock')}`;
const SEMAPHORE = `redis-semaphore ${packageVersion('redis-semaphore')}`;
const ROLES: Record<string, Role> = {
  [LIBRARY]: 'library',
  [FLOOR]: 'floor',
  [FLOOR_AUTO]: 'floor',
  [REDLOCK]: 'anchor',
  [SEMAPHORE]: 'anchor',
};

/** Counts the watchdog's batched extensions (one `extendMany` = one pipeline = one round trip). */
function countingExtensions(backend: LockBackend): { backend: LockBackend; calls: number[]; failures: number } {
  const stats = { backend, calls: [] as number[], failures: 0 };
  const inner = backend.extendMany!.bind(backend);
  (backend as { extendMany: (items: readonly ExtendItem[]) => Promise<Array<boolean | Error>> }).extendMany = async (
    items,
  ) => {
    stats.calls.push(items.length);
    const results = await inner(items);
    stats.failures += results.filter((r) => r !== true).length;
    return results;
  };
  return stats;
}

/** Redis CPU seconds (user + system) so far. */
async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** `count` locks held at once under withLock while the watchdog renews them. */
async function manyHeld(
  prefix: string,
  admin: Redis,
  { count, ttl, holdMs }: { count: number; ttl: number; holdMs: number },
): Promise<Record<string, string | number>> {
  const stats = countingExtensions(redisBackend({ url: REDIS_URL }));
  const locks = new DistributedLockService({ backend: stats.backend, keyPrefix: `${prefix}many:`, ttl, wait: 10_000 });
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const redisBefore = await usedMemory(admin);
  let release!: () => void;
  const hold = new Promise<void>((resolve) => (release = resolve));
  const held: HeldLock[] = [];
  const acquireStarted = performance.now();
  const works = Array.from({ length: count }, (_, i) =>
    locks.withLock(`k${i}`, async (lock) => {
      held.push(lock);
      await hold;
    }),
  );
  while (held.length < count) await new Promise((resolve) => setTimeout(resolve, 5));
  const acquireMs = performance.now() - acquireStarted;
  // Garbage of the acquisitions (replies, buffers) is not what a held lock costs.
  global.gc?.();
  const heapHeld = process.memoryUsage().heapUsed;
  const redisHeld = await usedMemory(admin);
  const cpuBefore = process.cpuUsage();
  const redisCpuBefore = await redisCpu(admin);
  const callsBefore = stats.calls.length;
  const holdStarted = performance.now();
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  const cpu = process.cpuUsage(cpuBefore);
  const redisCpuUsed = (await redisCpu(admin)) - redisCpuBefore;
  const heldFor = performance.now() - holdStarted;
  const calls = stats.calls.slice(callsBefore);
  release();
  // A lock was lost when its withLock rejected with LockLostError (its signal aborts at every end of a hold).
  const outcomes = await Promise.allSettled(works);
  const lost = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof LockLostError).length;
  await locks.shutdown();
  const renewals = calls.reduce((a, b) => a + b, 0);
  const periods = heldFor / (ttl / 3);
  return {
    locks: count,
    'acquire all (ms)': Math.round(acquireMs),
    'renewal periods (ttl/3)': Number(periods.toFixed(1)),
    'watchdog ticks (= round trips)': calls.length,
    'round trips per period': Number((calls.length / periods).toFixed(1)),
    'leases per round trip': Math.round(renewals / Math.max(1, calls.length)),
    'failed renewals': stats.failures,
    'locks lost': lost,
    'CPU ms per s (this process)': Math.round((cpu.user + cpu.system) / 1000 / (heldFor / 1000)),
    'Redis CPU ms per s (all its clients)': Math.round((redisCpuUsed * 1000) / (heldFor / 1000)),
    'heap per lock (bytes)': Math.round((heapHeld - heapBefore) / count),
    'Redis memory per lock (bytes)': Math.round((redisHeld - redisBefore) / count),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '-';
}

async function main(): Promise<void> {
  const args = benchArgs();
  const save = await resultsWriter('redis', args);
  const settings = {
    rounds: args.quick ? 2 : 5,
    roundMs: args.quick ? 300 : 1_000,
    concurrencies: [1, 64],
    contention: { workers: 8, holdMs: 2, thinkMs: 1, durationMs: args.quick ? 1_000 : 5_000 },
    manyHeld: { count: args.quick ? 1_000 : 10_000, ttl: 3_000, holdMs: args.quick ? 3_500 : 7_000 },
  };
  const prefix = `ndl-bench:${randomBytes(4).toString('hex')}:`;
  const admin = new Redis(REDIS_URL);
  const floorClient = new Redis(REDIS_URL, { keyPrefix: prefix });
  const floorAutoClient = new Redis(REDIS_URL, { keyPrefix: prefix, enableAutoPipelining: true });
  const redlockClient = new Redis(REDIS_URL, { keyPrefix: prefix });
  const semaphoreClient = new Redis(REDIS_URL, { keyPrefix: prefix });
  const locks = new DistributedLockService({
    backend: redisBackend({ url: REDIS_URL }),
    keyPrefix: prefix,
    ttl: 30_000,
    wait: 60_000,
  });

  const candidates: Array<[string, ReturnType<typeof serviceLock>]> = [
    [LIBRARY, serviceLock(locks)],
    [FLOOR, rawIoredisFloor(floorClient)],
    [FLOOR_AUTO, rawIoredisFloor(floorAutoClient)],
    [REDLOCK, redlockAnchor(redlockClient)],
    [SEMAPHORE, redisSemaphoreAnchor(semaphoreClient)],
  ];
  try {
    console.log(`Redis at ${new URL(REDIS_URL).host}; Node ${process.version}; other work may share this machine.\n`);
    console.log(
      `Uncontended acquire+release (median of ${settings.rounds} interleaved rounds of ${settings.roundMs / 1000} s each, so load from other work hits every candidate alike)`,
    );
    const throughput: Array<ReturnType<typeof throughputRow>> = [];
    for (const concurrency of settings.concurrencies) {
      const rounds = new Map<string, number[]>(candidates.map(([name]) => [name, []]));
      for (let round = 0; round < settings.rounds; round++) {
        for (const [name, lock] of candidates) {
          const result = await runThroughput(name, lock, {
            concurrency,
            durationMs: settings.roundMs,
            prefix: `tp:${concurrency}`,
          });
          rounds.get(name)!.push(result.opsPerSecond);
        }
      }
      for (const [name, values] of rounds) {
        throughput.push(throughputRow({ name, concurrency, opsPerSecond: median(values) }, ROLES[name], values));
      }
    }
    printThroughput(throughput, FLOOR);

    const c = settings.contention;
    console.log(
      `Contended: ${c.workers} workers, 1 key, hold ${c.holdMs} ms, think ${c.thinkMs} ms, ${c.durationMs / 1000} s`,
    );
    const { durationMs } = c;
    const contention = [
      contentionRow(await runContention('in-process mutex (ceiling)', inProcessMutex(), { durationMs }), 'ceiling'),
    ];
    for (const [name, lock] of candidates.filter(([n]) => n !== FLOOR && n !== FLOOR_AUTO)) {
      contention.push(
        contentionRow(await runContention(name, lock, { key: `contended:${name}`, durationMs }), ROLES[name]),
      );
    }
    printContention(contention);

    const m = settings.manyHeld;
    console.log(
      `${m.count.toLocaleString('en')} locks held at once under withLock (ttl ${m.ttl / 1000} s, held ${m.holdMs / 1000} s)`,
    );
    const many = await manyHeld(prefix, admin, m);
    console.table([many]);

    const tp = (name: string, c: number): number =>
      throughput.find((r) => r.name === name && r.concurrency === c)!.opsPerSecond;
    const ct = (name: string): ContentionResult => contention.find((r) => r.name === name)!;
    const ours = ct(LIBRARY);
    const rows: Array<Record<string, string>> = [];
    const row = (metric: string, values: Record<string, number>, digits: number, lowerIsBetter = false): void => {
      const mine = values[LIBRARY];
      const r: Record<string, string> = { metric };
      for (const [name, value] of Object.entries(values))
        r[name] = Number.isFinite(value) ? value.toFixed(digits) : '-';
      for (const anchor of [FLOOR, REDLOCK, SEMAPHORE]) {
        const other = values[anchor];
        r[`vs ${anchor.split(' ')[0] === 'raw' ? 'floor' : anchor.split(' ')[0]}`] =
          other === undefined ? '-' : lowerIsBetter ? ratio(other, mine) : ratio(mine, other);
      }
      rows.push(r);
    };
    for (const c of [1, 64]) {
      row(`ops/s, ${c} in flight`, Object.fromEntries(candidates.map(([n]) => [n, tp(n, c)])), 0);
    }
    const contended = (pick: (r: ContentionResult) => number): Record<string, number> =>
      Object.fromEntries([LIBRARY, REDLOCK, SEMAPHORE].map((n) => [n, pick(ct(n))]));
    row(
      'utilisation',
      contended((r) => r.utilisation),
      3,
    );
    row(
      'p99 wait ms (ratio: x better)',
      contended((r) => r.p99Wait),
      1,
      true,
    );
    row(
      'max wait ms (ratio: x better)',
      contended((r) => r.maxWait),
      1,
      true,
    );
    row(
      'Jain fairness',
      contended((r) => r.fairness),
      3,
    );
    row(
      'overlaps',
      contended((r) => r.overlaps),
      0,
    );
    console.log(`Summary (ratios: ${LIBRARY} against each anchor; above 1 is better)`);
    console.table(rows);
    console.log(
      `Targets: ≥ 0.90× floor uncontended (${ratio(tp(LIBRARY, 1), tp(FLOOR, 1))}, ${ratio(tp(LIBRARY, 64), tp(FLOOR, 64))}); ` +
        `utilisation ≥ 0.90 (${ours.utilisation.toFixed(3)}), p99 ≤ 30 ms (${ours.p99Wait.toFixed(1)}), ` +
        `Jain ≥ 0.98 (${ours.fairness.toFixed(3)}), overlaps 0 (${ours.overlaps}).`,
    );
    save({ settings, throughput, contention, manyHeld: many });
  } finally {
    await locks.shutdown();
    for (const client of [floorClient, floorAutoClient, redlockClient, semaphoreClient]) client.disconnect();
    // The anchors' keys start with the prefix; this library's start with its hash tag `{prefix…}`.
    for (const pattern of [`${prefix}*`, `{${prefix}*`]) {
      let cursor = '0';
      for (let i = 0; i < 10_000; i++) {
        const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        if (keys.length) await admin.unlink(...keys);
        cursor = next;
        if (cursor === '0') break;
      }
    }
    admin.disconnect();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
