import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { MultiSemaphore, Semaphore } from 'redis-semaphore';
import { memoryBackend, type DistributedLock, type LockBackend } from '../lib';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { postgresBackend } from '../lib/postgres';
import { redisBackend } from '../lib/redis';
import { BENCH_OPTIONS, resultsWriter } from './harness/results-file';
import { packageVersion } from './harness/machine-facts';

/**
 * `npm run bench:modes [-- --quick --only TEXT --json <file>]`: limited and shared locks, side by side in one run.
 *
 * - Limited key: 16 workers loop on one key with `limit: 4`, each holding 2 ms and thinking 1 ms; this
 *   library on memory, Redis and PostgreSQL against redis-semaphore's `Semaphore` and `MultiSemaphore`
 *   (one permit of 4 per holder). Figures: utilisation of the permits (the share of limit × time that
 *   some holder was inside), acquisitions per second, p50/p99/max wait, Jain fairness over the
 *   workers, and holds beyond the limit (must be 0).
 * - Read-heavy: 16 workers on one key, 9 in 10 of their holds readers (`mode: 'shared'`), the rest
 *   writers, hold 2 ms, think 1 ms; against the same workload with every hold exclusive. Figures:
 *   acquisitions per second, p99 wait of readers and of writers, and violations (a writer together
 *   with anyone: must be 0).
 */

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SEMAPHORE = `redis-semaphore ${packageVersion('redis-semaphore')}`;

/** Takes one place of `key` and resolves with the function that gives it back. */
type TakePlace = (key: string) => Promise<() => Promise<void>>;
/** Takes `key` shared (a reader) or exclusive (a writer). */
type TakeMode = (key: string, shared: boolean) => Promise<() => Promise<void>>;

interface LimitedResult {
  name: string;
  permitUtilisation: number;
  acquisitionsPerSecond: number;
  p50Wait: number;
  p99Wait: number;
  maxWait: number;
  fairness: number;
  beyondLimit: number;
  mostAtOnce: number;
}

interface ReadWriteResult {
  name: string;
  acquisitionsPerSecond: number;
  readerP99Wait: number;
  writerP99Wait: number;
  writerMaxWait: number;
  violations: number;
}

const quantile = (values: number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
};
const jain = (counts: number[]): number => {
  const sum = counts.reduce((a, b) => a + b, 0);
  const squares = counts.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 0 : (sum * sum) / (counts.length * squares);
};

async function runLimited(
  name: string,
  take: TakePlace,
  { workers = 16, limit = 4, holdMs = 2, thinkMs = 1, durationMs = 5_000 } = {},
): Promise<LimitedResult> {
  const key = `limited:${randomBytes(4).toString('hex')}`;
  const waits: number[] = [];
  const counts = new Array<number>(workers).fill(0);
  let inside = 0;
  let most = 0;
  let beyond = 0;
  let busy = 0;
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: workers }, async (_, id) => {
      while (performance.now() < end) {
        const asked = performance.now();
        const release = await take(key);
        const entered = performance.now();
        if (entered >= end) {
          await release();
          break;
        }
        waits.push(entered - asked);
        inside++;
        most = Math.max(most, inside);
        if (inside > limit) beyond++;
        await sleep(holdMs);
        inside--;
        busy += Math.min(performance.now(), end) - entered;
        counts[id]++;
        await release();
        await sleep(thinkMs);
      }
    }),
  );
  return {
    name,
    permitUtilisation: busy / (limit * durationMs),
    acquisitionsPerSecond: counts.reduce((a, b) => a + b, 0) / (durationMs / 1000),
    p50Wait: quantile(waits, 0.5),
    p99Wait: quantile(waits, 0.99),
    maxWait: Math.max(...waits),
    fairness: jain(counts),
    beyondLimit: beyond,
    mostAtOnce: most,
  };
}

async function runReadWrite(
  name: string,
  take: TakeMode,
  { workers = 16, readers = 0.9, holdMs = 2, thinkMs = 1, durationMs = 5_000, sharedReads = true } = {},
): Promise<ReadWriteResult> {
  const key = `rw:${randomBytes(4).toString('hex')}`;
  const readerWaits: number[] = [];
  const writerWaits: number[] = [];
  let reading = 0;
  let writing = 0;
  let violations = 0;
  let acquisitions = 0;
  let seed = 17;
  // A small seeded generator, so both runs draw the same sequence of readers and writers.
  const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  const end = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < end) {
        const reader = random() < readers;
        const asked = performance.now();
        const release = await take(key, reader && sharedReads);
        const entered = performance.now();
        if (entered >= end) {
          await release();
          break;
        }
        (reader ? readerWaits : writerWaits).push(entered - asked);
        if (reader) {
          // Readers together are a violation only where they were to hold exclusive.
          if (writing > 0 || (!sharedReads && reading > 0)) violations++;
          reading++;
        } else {
          if (writing > 0 || reading > 0) violations++;
          writing++;
        }
        await sleep(holdMs);
        if (reader) reading--;
        else writing--;
        acquisitions++;
        await release();
        await sleep(thinkMs);
      }
    }),
  );
  return {
    name,
    acquisitionsPerSecond: acquisitions / (durationMs / 1000),
    readerP99Wait: quantile(readerWaits, 0.99),
    writerP99Wait: quantile(writerWaits, 0.99),
    writerMaxWait: Math.max(...writerWaits),
    violations,
  };
}

function limitedOn(locks: DistributedLock, limit: number): TakePlace {
  return async (key) => {
    const guard = await locks.acquire(key, { limit, wait: 60_000 });
    return () => locks.release(guard);
  };
}

function modeOn(locks: DistributedLock): TakeMode {
  return async (key, shared) => {
    const guard = await locks.acquire(key, { mode: shared ? 'shared' : 'exclusive', wait: 60_000 });
    return () => locks.release(guard);
  };
}

function semaphoreOf(client: Redis, limit: number): TakePlace {
  return async (key) => {
    const semaphore = new Semaphore(client, key, limit, { lockTimeout: 30_000, acquireTimeout: 60_000 });
    await semaphore.acquire();
    return () => semaphore.release();
  };
}

function multiSemaphoreOf(client: Redis, limit: number): TakePlace {
  return async (key) => {
    const semaphore = new MultiSemaphore(client, key, limit, 1, { lockTimeout: 30_000, acquireTimeout: 60_000 });
    await semaphore.acquire();
    return () => semaphore.release();
  };
}

const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ...BENCH_OPTIONS, only: { type: 'string' } } });
  const save = await resultsWriter('modes', values);
  const durationMs = values.quick ? 1_000 : 5_000;
  const limited = { workers: 16, limit: 4, holdMs: 2, thinkMs: 1, durationMs };
  const readWrite = { workers: 16, readers: 0.9, holdMs: 2, thinkMs: 1, durationMs };
  const prefix = `ndl-bench-modes:${randomBytes(4).toString('hex')}:`;
  const schema = `dl_bench_modes_${randomBytes(4).toString('hex')}`;
  const services = new Map<string, DistributedLockService>();
  const service = (name: string, backend: () => LockBackend): DistributedLockService => {
    let locks = services.get(name);
    if (!locks) {
      locks = new DistributedLockService({ backend: backend(), keyPrefix: prefix, ttl: 30_000, wait: 60_000 });
      services.set(name, locks);
    }
    return locks;
  };
  const memory = (): DistributedLockService => service('memory', () => memoryBackend());
  const redis = (): DistributedLockService => service('redis', () => redisBackend({ url: REDIS_URL }));
  const postgres = (): DistributedLockService =>
    service('postgres', () => postgresBackend({ connection: DATABASE_URL, schema, applicationName: 'dl-bench-modes' }));
  const postgresRelaxed = (): DistributedLockService =>
    service('postgres-relaxed', () =>
      postgresBackend({ connection: DATABASE_URL, schema, applicationName: 'dl-bench-modes', durability: 'relaxed' }),
    );
  const semaphoreClient = new Redis(REDIS_URL, { keyPrefix: prefix });
  const wanted = (name: string): boolean => !values.only || name.includes(values.only);

  const limitedCandidates: Array<[string, () => TakePlace]> = [
    ['memoryBackend, limit 4', () => limitedOn(memory(), 4)],
    ['redisBackend, limit 4', () => limitedOn(redis(), 4)],
    [`${SEMAPHORE} Semaphore (limit 4)`, () => semaphoreOf(semaphoreClient, 4)],
    [`${SEMAPHORE} MultiSemaphore (limit 4, 1 permit each)`, () => multiSemaphoreOf(semaphoreClient, 4)],
    ["postgresBackend ('full'), limit 4", () => limitedOn(postgres(), 4)],
    ["postgresBackend ('relaxed'), limit 4", () => limitedOn(postgresRelaxed(), 4)],
  ];
  const readWriteCandidates: Array<[string, () => TakeMode, boolean]> = [
    ['memoryBackend, readers shared', () => modeOn(memory()), true],
    ['memoryBackend, every hold exclusive', () => modeOn(memory()), false],
    ['redisBackend, readers shared', () => modeOn(redis()), true],
    ['redisBackend, every hold exclusive', () => modeOn(redis()), false],
    ["postgresBackend ('full'), readers shared", () => modeOn(postgres()), true],
    ["postgresBackend ('full'), every hold exclusive", () => modeOn(postgres()), false],
    ["postgresBackend ('relaxed'), readers shared", () => modeOn(postgresRelaxed()), true],
    ["postgresBackend ('relaxed'), every hold exclusive", () => modeOn(postgresRelaxed()), false],
  ];
  const limitedResults: LimitedResult[] = [];
  const readWriteResults: ReadWriteResult[] = [];
  try {
    console.log(
      `Limited key: ${limited.workers} workers, limit ${limited.limit}, hold ${limited.holdMs} ms, think ${limited.thinkMs} ms, ${durationMs / 1000} s each; Node ${process.version}`,
    );
    for (const [name, make] of limitedCandidates) {
      if (!wanted(name)) continue;
      console.error(`limited: ${name}…`);
      limitedResults.push(await runLimited(name, make(), limited));
    }
    console.table(
      limitedResults.map((r) => ({
        lock: r.name,
        'permit utilisation': fixed(r.permitUtilisation, 3),
        'acq/s': fixed(r.acquisitionsPerSecond, 0),
        'p50 wait ms': fixed(r.p50Wait, 2),
        'p99 wait ms': fixed(r.p99Wait, 2),
        'max wait ms': fixed(r.maxWait, 1),
        fairness: fixed(r.fairness, 3),
        'most at once': r.mostAtOnce,
        'beyond limit': r.beyondLimit,
      })),
    );
    const ours = limitedResults.find((r) => r.name.startsWith('redisBackend'));
    const theirs = limitedResults.find((r) => r.name.includes('Semaphore (limit'));
    if (ours && theirs) {
      console.log(
        `Redis, limit 4: permit utilisation ${fixed(ours.permitUtilisation, 3)} vs ${fixed(theirs.permitUtilisation, 3)} (${fixed(ours.permitUtilisation / theirs.permitUtilisation, 2)}×), ` +
          `p99 wait ${fixed(ours.p99Wait, 1)} vs ${fixed(theirs.p99Wait, 1)} ms (${fixed(theirs.p99Wait / ours.p99Wait, 1)}× lower).`,
      );
    }

    console.log(
      `\nRead-heavy key: ${readWrite.workers} workers, ${readWrite.readers * 100} % of holds readers, hold ${readWrite.holdMs} ms, think ${readWrite.thinkMs} ms, ${durationMs / 1000} s each`,
    );
    for (const [name, make, sharedReads] of readWriteCandidates) {
      if (!wanted(name)) continue;
      console.error(`read-heavy: ${name}…`);
      readWriteResults.push(await runReadWrite(name, make(), { ...readWrite, sharedReads }));
    }
    console.table(
      readWriteResults.map((r) => ({
        lock: r.name,
        'acq/s': fixed(r.acquisitionsPerSecond, 0),
        'reader p99 wait ms': fixed(r.readerP99Wait, 2),
        'writer p99 wait ms': fixed(r.writerP99Wait, 2),
        'writer max wait ms': fixed(r.writerMaxWait, 1),
        violations: r.violations,
      })),
    );
    for (const backend of [
      'memoryBackend',
      'redisBackend',
      "postgresBackend ('full')",
      "postgresBackend ('relaxed')",
    ]) {
      const shared = readWriteResults.find((r) => r.name.startsWith(backend) && r.name.includes('readers shared'));
      const exclusive = readWriteResults.find((r) => r.name.startsWith(backend) && r.name.includes('exclusive'));
      if (shared && exclusive) {
        console.log(
          `${backend}: shared readers ${fixed(shared.acquisitionsPerSecond / exclusive.acquisitionsPerSecond, 2)}× the acquisitions per second of every hold exclusive.`,
        );
      }
    }
    save({ settings: { limited, readWrite }, limited: limitedResults, readWrite: readWriteResults });
  } finally {
    for (const locks of services.values()) await locks.shutdown();
    semaphoreClient.disconnect();
    if (services.has('postgres') || services.has('postgres-relaxed')) {
      const admin = new Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
    const cleaner = new Redis(REDIS_URL);
    const stale = await cleaner.keys(`${prefix}*`);
    if (stale.length > 0) await cleaner.del(...stale);
    cleaner.disconnect();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
