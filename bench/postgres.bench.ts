import { randomBytes } from 'node:crypto';
import { Client, Pool } from 'pg';
import { DistributedLockService } from '../lib';
import { postgresBackend } from '../lib/postgres';
import { PostgresLockNames } from '../lib/backends/postgres/postgres-lock.names';
import { PostgresLockStatements } from '../lib/backends/postgres/postgres-lock.statements';
import {
  runContention,
  runThroughput,
  type ContentionResult,
  type LockUnderTest,
  type ThroughputResult,
} from './harness/lock-bench.harness';
import { advisoryLockPackage, leaseFloor, sessionAdvisoryLocks } from './harness/postgres-anchors';
import { serviceLock } from './harness/service-lock';

const FLOOR = 'raw floor (same statements, bare pg)';
const LIBRARY = "postgresBackend (durability 'full', default)";
const RELAXED = "postgresBackend (durability 'relaxed')";
const ADVISORY_PACKAGE = 'advisory-lock 2.0.0';
const ADVISORY_CEILING = 'session advisory locks, 8 dedicated conns';

const fixed = (n: number | undefined, digits: number): string =>
  n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);

/**
 * `npm run bench:postgres`: the PostgreSQL backend side by side with the raw floor (the same lease
 * statements from a bare pg pool) and advisory-lock 2.0.0, on the PostgreSQL of DATABASE_URL
 * (default the local one), in a schema of its own that is dropped afterwards.
 */
async function main(): Promise<void> {
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `dl_bench_${randomBytes(4).toString('hex')}`;
  const backend = postgresBackend({ connection: url, schema, applicationName: 'dl-bench' });
  await backend.ready();
  const locks = new DistributedLockService({ backend, keyPrefix: 'bench:', ttl: 30_000, wait: 60_000 });
  const relaxedBackend = postgresBackend({
    connection: url,
    schema,
    applicationName: 'dl-bench-relaxed',
    durability: 'relaxed',
  });
  await relaxedBackend.ready();
  const relaxedLocks = new DistributedLockService({
    backend: relaxedBackend,
    keyPrefix: 'bench-relaxed:',
    ttl: 30_000,
    wait: 60_000,
  });
  const floorPool = new Pool({ connectionString: url, max: 10, application_name: 'dl-bench-floor' });
  const statements = new PostgresLockStatements(new PostgresLockNames({ schema }), 5_000, false);
  const library = serviceLock(locks);
  const relaxed = serviceLock(relaxedLocks);
  const floor = leaseFloor(floorPool, statements);
  const advisory = advisoryLockPackage(url);
  const ceiling = await sessionAdvisoryLocks(url, 8);
  const throughput: ThroughputResult[] = [];
  const contention: ContentionResult[] = [];
  try {
    for (const concurrency of [1, 8]) {
      console.error(`uncontended, ${concurrency} in flight…`);
      // Each lock twice, in mirrored order (A B C C B A), so that drift of the machine during the run
      // weighs on all of them alike; the table shows the mean of the two runs.
      const order: Array<[string, LockUnderTest]> = [
        [FLOOR, floor],
        [LIBRARY, library],
        [RELAXED, relaxed],
      ];
      const runs: ThroughputResult[] = [];
      for (const [name, lock] of [...order, ...[...order].reverse()]) {
        runs.push(await runThroughput(name, lock, { concurrency, durationMs: 2_000 }));
      }
      for (const [name] of order) {
        const mine = runs.filter((r) => r.name === name);
        console.error(`  ${name}: ${mine.map((r) => r.opsPerSecond.toFixed(0)).join(' / ')} ops/s`);
        throughput.push({
          name,
          concurrency,
          opsPerSecond: mine.reduce((sum, r) => sum + r.opsPerSecond, 0) / mine.length,
        });
      }
      throughput.push(await runThroughput(ADVISORY_PACKAGE, advisory, { concurrency }));
    }
    console.error('contended: 8 workers, 1 key, hold 2 ms, think 1 ms, 5 s…');
    contention.push(await runContention('raw floor polling every 1 ms', floor));
    contention.push(await runContention(LIBRARY, library));
    contention.push(await runContention(RELAXED, relaxed));
    contention.push(await runContention(ADVISORY_PACKAGE, advisory));
    contention.push(await runContention(ADVISORY_CEILING, ceiling.lock));
  } finally {
    await locks.shutdown();
    await relaxedLocks.shutdown();
    await floorPool.end();
    await ceiling.close();
    const admin = new Client({ connectionString: url });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }

  const tp = (name: string, concurrency: number): ThroughputResult | undefined =>
    throughput.find((r) => r.name === name && r.concurrency === concurrency);
  const rows = [FLOOR, LIBRARY, RELAXED, ADVISORY_PACKAGE, ADVISORY_CEILING].map((name) => {
    const seq = tp(name, 1);
    const par = tp(name, 8);
    const c = contention.find((r) => r.name === name || (name === FLOOR && r.name.startsWith('raw floor')));
    return {
      lock: name === FLOOR ? `${FLOOR} / polling 1 ms when contended` : name,
      'seq ops/s': fixed(seq?.opsPerSecond, 0),
      'seq × floor': seq ? fixed(seq.opsPerSecond / tp(FLOOR, 1)!.opsPerSecond, 2) : '-',
      '8 in flight ops/s': fixed(par?.opsPerSecond, 0),
      '8 × floor': par ? fixed(par.opsPerSecond / tp(FLOOR, 8)!.opsPerSecond, 2) : '-',
      utilisation: fixed(c?.utilisation, 3),
      'p50 wait ms': fixed(c?.p50Wait, 2),
      'p99 wait ms': fixed(c?.p99Wait, 2),
      'max wait ms': fixed(c?.maxWait, 1),
      Jain: fixed(c?.fairness, 3),
      overlaps: c ? String(c.overlaps) : '-',
    };
  });
  console.log(
    'PostgreSQL backend: uncontended acquire+release (mean of 2 × 2 s, mirrored order; advisory-lock 1 × 3 s) and contended (8 workers, 1 key, hold 2 ms, think 1 ms, 5 s)',
  );
  console.table(rows);
  console.log(
    'Targets: seq and 8 in flight ≥ 0.90 × floor; contended utilisation ≥ 0.75, p99 ≤ 30 ms, Jain ≥ 0.98, 0 overlaps.',
  );
  console.log(
    "The floor sends the statements of durability 'full'. × floor of the 'relaxed' row compares different durability.",
  );
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
