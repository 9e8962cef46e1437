import { randomBytes } from 'node:crypto';
import { Client, Pool } from 'pg';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { postgresBackend } from '../lib/postgres';
import { PostgresLockNames } from '../lib/backends/postgres/postgres-lock.names';
import { PostgresLockStatements } from '../lib/backends/postgres/postgres-lock.statements';
import { runContention, runThroughput, type LockUnderTest, type ThroughputResult } from './harness/lock-bench.harness';
import { packageVersion } from './harness/machine-facts';
import { advisoryLockPackage, leaseFloor, sessionAdvisoryLocks } from './harness/postgres-anchors';
import {
  benchArgs,
  contentionRow,
  resultsWriter,
  throughputRow,
  type ContentionRow,
  type ThroughputRow,
} from './harness/results-file';
import { serviceLock } from './harness/service-lock';

const FLOOR = 'raw floor (same statements, bare pg)';
const LIBRARY = "postgresBackend (durability 'full', default)";
const RELAXED = "postgresBackend (durability 'relaxed')";
const ADVISORY_PACKAGE = `advisory-lock ${packageVersion('advisory-lock')}`;
const ADVISORY_CEILING = 'session advisory locks, 8 dedicated conns';

const fixed = (n: number | undefined, digits: number): string =>
  n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);

/**
 * `npm run bench:postgres [-- --json <file>] [-- --quick]`: the PostgreSQL backend side by side with the raw floor (the same lease
 * statements from a bare pg pool) and advisory-lock 2.0.0, on the PostgreSQL of DATABASE_URL
 * (default the local one), in a schema of its own that is dropped afterwards.
 */
async function main(): Promise<void> {
  const args = benchArgs();
  const save = await resultsWriter('postgres', args);
  const settings = {
    runMs: args.quick ? 500 : 2_000,
    advisoryMs: args.quick ? 500 : 3_000,
    concurrencies: [1, 8],
    contention: { workers: 8, holdMs: 2, thinkMs: 1, durationMs: args.quick ? 1_000 : 5_000 },
  };
  const c = settings.contention;
  const contended = `${c.workers} workers, 1 key, hold ${c.holdMs} ms, think ${c.thinkMs} ms, ${c.durationMs / 1000} s`;
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
  const throughput: ThroughputRow[] = [];
  const contention: ContentionRow[] = [];
  try {
    for (const concurrency of settings.concurrencies) {
      console.error(`uncontended, ${concurrency} in flight…`);
      // Each lock twice, in mirrored order (A B C C B A), so that drift of the machine during the run
      // weighs on all of them alike; the table shows the mean of the two runs.
      const order: Array<[string, LockUnderTest, ThroughputRow['role']]> = [
        [FLOOR, floor, 'floor'],
        [LIBRARY, library, 'library'],
        [RELAXED, relaxed, 'library-variant'],
      ];
      const runs: ThroughputResult[] = [];
      for (const [name, lock] of [...order, ...[...order].reverse()]) {
        runs.push(await runThroughput(name, lock, { concurrency, durationMs: settings.runMs }));
      }
      for (const [name, , role] of order) {
        const mine = runs.filter((r) => r.name === name);
        console.error(`  ${name}: ${mine.map((r) => r.opsPerSecond.toFixed(0)).join(' / ')} ops/s`);
        const opsPerSecond = mine.reduce((sum, r) => sum + r.opsPerSecond, 0) / mine.length;
        throughput.push(
          throughputRow(
            { name, concurrency, opsPerSecond },
            role,
            mine.map((r) => r.opsPerSecond),
          ),
        );
      }
      const advisoryRun = await runThroughput(ADVISORY_PACKAGE, advisory, {
        concurrency,
        durationMs: settings.advisoryMs,
      });
      throughput.push(throughputRow(advisoryRun, 'anchor'));
    }
    console.error(`contended: ${contended}…`);
    const { durationMs } = c;
    contention.push(contentionRow(await runContention('raw floor polling every 1 ms', floor, { durationMs }), 'floor'));
    contention.push(contentionRow(await runContention(LIBRARY, library, { durationMs }), 'library'));
    contention.push(contentionRow(await runContention(RELAXED, relaxed, { durationMs }), 'library-variant'));
    contention.push(contentionRow(await runContention(ADVISORY_PACKAGE, advisory, { durationMs }), 'anchor'));
    contention.push(contentionRow(await runContention(ADVISORY_CEILING, ceiling.lock, { durationMs }), 'ceiling'));
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
    `PostgreSQL backend: uncontended acquire+release (mean of 2 × ${settings.runMs / 1000} s, mirrored order; ` +
      `advisory-lock 1 × ${settings.advisoryMs / 1000} s) and contended (${contended})`,
  );
  console.table(rows);
  console.log(
    'Targets: seq and 8 in flight ≥ 0.90 × floor; contended utilisation ≥ 0.75, p99 ≤ 30 ms, Jain ≥ 0.98, 0 overlaps.',
  );
  console.log(
    "The floor sends the statements of durability 'full'. × floor of the 'relaxed' row compares different durability.",
  );
  save({ settings, throughput, contention });
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
