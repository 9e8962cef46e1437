import { execFile } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { context, metrics, SpanKind, trace } from '@opentelemetry/api';
import { memoryBackend } from '../lib';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { telemetrySetting } from '../lib/telemetry/lock-telemetry';
import { inProcessMutex } from './harness/in-process-mutex';
import { printContention, printThroughput, runContention, runThroughput } from './harness/lock-bench.harness';
import { registerOtelSdk } from './harness/otel-sdk';
import { BENCH_OPTIONS, contentionRow, resultsWriter, throughputRow } from './harness/results-file';
import { serviceLock } from './harness/service-lock';

const execFileAsync = promisify(execFile);

type Telemetry = Parameters<typeof telemetrySetting>[0];
const service = (telemetry?: Telemetry): DistributedLockService =>
  new DistributedLockService({
    backend: memoryBackend(),
    keyPrefix: 'bench:',
    ttl: 30_000,
    wait: 5_000,
    telemetry: telemetrySetting(telemetry),
  });

/** The common options, and this script's own: `--telemetry` runs the telemetry table alone. */
function memoryBenchArgs(): { json?: string; quick: boolean; telemetry: boolean; 'telemetry-row'?: string } {
  return parseArgs({
    options: { ...BENCH_OPTIONS, telemetry: { type: 'boolean', default: false }, 'telemetry-row': { type: 'string' } },
  }).values;
}

/**
 * `npm run bench:memory [-- --json <file>] [-- --quick]`: the memory backend against an in-process
 * mutex, the ceiling of the harness, then the cost of telemetry. `npm run bench:memory -- --telemetry`
 * runs the telemetry table alone.
 */
async function main(): Promise<void> {
  const args = memoryBenchArgs();
  if (args['telemetry-row'] !== undefined) return telemetryRow(Number(args['telemetry-row']), args.quick);
  if (args.telemetry) {
    await telemetryTable(args.quick);
    return;
  }
  const save = await resultsWriter('memory', args);
  const settings = {
    throughputMs: args.quick ? 500 : 3_000,
    callsPerRound: args.quick ? 5_000 : 50_000,
    contention: { workers: 8, holdMs: 2, thinkMs: 1, durationMs: args.quick ? 1_000 : 5_000 },
  };
  const locks = service();
  const mutex = inProcessMutex();
  const library = serviceLock(locks);
  const durationMs = settings.throughputMs;

  console.log('Uncontended acquire+release');
  const throughput = [
    throughputRow(await runThroughput('in-process mutex', mutex, { durationMs }), 'ceiling'),
    throughputRow(await runThroughput('memoryBackend', library, { durationMs }), 'library'),
    throughputRow(await runThroughput('in-process mutex', mutex, { concurrency: 64, durationMs }), 'ceiling'),
    throughputRow(await runThroughput('memoryBackend', library, { concurrency: 64, durationMs }), 'library'),
  ];
  printThroughput(throughput, 'in-process mutex');
  const calls = settings.callsPerRound;
  console.log(`Cost per call, sequential, 10 keys (median of 5 rounds of ${calls.toLocaleString('en')} calls)`);
  const perCalls = [
    await perCall('in-process mutex: lock + unlock', calls, async (i) => (await mutex(`m${i % 10}`))()),
    await perCall('memoryBackend: tryAcquire + release', calls, async (i) => {
      await locks.release((await locks.tryAcquire(`t${i % 10}`))!);
    }),
    await perCall('memoryBackend: withLock', calls, (i) => locks.withLock(`w${i % 10}`, () => i)),
    await perCall('memoryBackend: withLock, the work reads lock.signal', calls, (i) =>
      locks.withLock(`s${i % 10}`, (lock) => lock.signal.aborted),
    ),
  ];
  console.table(perCalls.map((p) => p.printed));
  const c = settings.contention;
  console.log(
    `Contended: ${c.workers} workers, 1 key, hold ${c.holdMs} ms, think ${c.thinkMs} ms, ${c.durationMs / 1000} s`,
  );
  const contention = [
    contentionRow(await runContention('in-process mutex', mutex, { durationMs: c.durationMs }), 'ceiling'),
    contentionRow(await runContention('memoryBackend', library, { durationMs: c.durationMs }), 'library'),
  ];
  printContention(contention);
  await locks.shutdown();
  const telemetry = await telemetryTable(args.quick);
  save({ settings, throughput, contention, perCall: perCalls.map((p) => p.figures), telemetry });
}

/** One row of the telemetry table: whether the SDK is registered, and the call measured in that process. */
interface TelemetryRow {
  name: string;
  sdk: boolean;
  call: () => (i: number) => Promise<unknown>;
}

const withLockOn = (telemetry?: Telemetry) => () => {
  const locks = service(telemetry);
  return (i: number) => locks.withLock(`w${i % 10}`, () => i);
};
const tryAcquireOn = (telemetry?: Telemetry) => () => {
  const locks = service(telemetry);
  return async (i: number) => {
    await locks.release((await locks.tryAcquire(`t${i % 10}`))!);
  };
};

const TELEMETRY_ROWS: TelemetryRow[] = [
  { name: 'withLock, telemetry: false', sdk: false, call: withLockOn(false) },
  { name: 'withLock, @opentelemetry/api without an SDK', sdk: false, call: withLockOn() },
  { name: 'withLock, SDK registered, telemetry: false', sdk: true, call: withLockOn(false) },
  { name: 'withLock, SDK: metrics and spans', sdk: true, call: withLockOn() },
  { name: 'withLock, SDK: metrics only (traces: false)', sdk: true, call: withLockOn({ traces: false }) },
  { name: 'withLock, SDK: spans only (metrics: false)', sdk: true, call: withLockOn({ metrics: false }) },
  { name: 'the SDK alone: what withLock records, without a lock', sdk: true, call: sdkFloor },
  { name: 'tryAcquire + release, telemetry: false', sdk: false, call: tryAcquireOn(false) },
  { name: 'tryAcquire + release, SDK: metrics', sdk: true, call: tryAcquireOn() },
];

/**
 * µs per call with telemetry off, with `@opentelemetry/api` but no SDK (the default of an app that
 * has the API without an SDK), and with the SDK registered (a meter provider whose reader
 * aggregates, a tracer provider batching spans to an exporter that drops them). Each row runs in a
 * process of its own, as an app runs one `DistributedLock` (two in one process slow each other's
 * calls down, the optimiser then sees both), three times, in turn with the other rows, so that a
 * load that comes and goes weighs on all of them alike. The SDK's context manager (one more
 * AsyncLocalStorage) slows every promise of a process: hence the row with the SDK and telemetry off.
 */
async function telemetryTable(
  quick: boolean,
): Promise<Array<{ name: string; medianUs: number; runMediansUs: number[] }>> {
  const runs = TELEMETRY_ROWS.map((): Array<{ median: number; min: number; max: number }> => []);
  for (let run = 0; run < 3; run++) {
    for (const [index] of TELEMETRY_ROWS.entries()) {
      const rowArgs = [__filename, '--telemetry-row', String(index), ...(quick ? ['--quick'] : [])];
      const { stdout } = await execFileAsync(process.execPath, rowArgs);
      runs[index].push(JSON.parse(stdout) as { median: number; min: number; max: number });
    }
  }
  console.log(
    `Telemetry: µs per call, sequential, 10 keys (each row in its own process; the median of 3 runs of the median of 5 rounds of ${rowCalls(quick).toLocaleString('en')} calls)`,
  );
  const medians = runs.map((rowRuns) => rowRuns.map((r) => r.median).sort((a, b) => a - b));
  console.table(
    TELEMETRY_ROWS.map((row, index) => ({
      call: row.name,
      'µs per call': medians[index][1].toFixed(2),
      'medians of the runs': medians[index].map((m) => m.toFixed(2)).join(' '),
      'min–max of all rounds': `${Math.min(...runs[index].map((r) => r.min)).toFixed(2)}–${Math.max(...runs[index].map((r) => r.max)).toFixed(2)}`,
    })),
  );
  return TELEMETRY_ROWS.map((row, index) => ({
    name: row.name,
    medianUs: medians[index][1],
    runMediansUs: medians[index],
  }));
}

/** Calls per round of a telemetry row. */
const rowCalls = (quick: boolean): number => (quick ? 5_000 : 30_000);

/** A child process of `telemetryTable`: measures one row and prints its figures as JSON. */
async function telemetryRow(index: number, quick: boolean): Promise<void> {
  const row = TELEMETRY_ROWS[index];
  // Each service looks the providers up at its first call: the SDK is registered before it is made.
  const sdk = row.sdk ? registerOtelSdk() : undefined;
  const call = row.call();
  const calls = rowCalls(quick);
  const rounds: number[] = [];
  for (let round = 0; round < 6; round++) {
    const started = performance.now();
    for (let i = 0; i < calls; i++) await call(i);
    if (round > 0) rounds.push(((performance.now() - started) * 1000) / calls);
  }
  rounds.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ median: rounds[2], min: rounds[0], max: rounds[4] }));
  await sdk?.unregister();
  process.exit(0);
}

/**
 * The SDK's own share: what one `withLock` records (a span with two events, run as the active span,
 * and the two histograms with the same attributes), with no lock around it.
 */
function sdkFloor(): (i: number) => Promise<unknown> {
  const meter = metrics.getMeter('bench-floor');
  const wait = meter.createHistogram('floor.wait.duration', { unit: 's' });
  const hold = meter.createHistogram('floor.hold.duration', { unit: 's' });
  const tracer = trace.getTracer('bench-floor');
  const base = { 'lock.name': '(unnamed)', 'lock.backend': 'memory' };
  const withOutcome = { ...base, 'lock.outcome': 'acquired' };
  return async (i) => {
    const span = tracer.startSpan('lock (unnamed)', { kind: SpanKind.INTERNAL, attributes: base });
    wait.record(0.000001, withOutcome);
    span.addEvent('lock.acquired', { 'lock.fence': String(i) });
    await context.with(trace.setSpan(context.active(), span), () => Promise.resolve(i));
    span.addEvent('lock.released');
    hold.record(0.000001, base);
    span.setAttribute('lock.outcome', 'acquired');
    span.end();
  };
}

/** µs per call of `call`, the median of 5 rounds of `calls` calls after a warm-up round. */
async function perCall(
  name: string,
  calls: number,
  call: (i: number) => Promise<unknown>,
): Promise<{ printed: Record<string, string>; figures: { name: string; medianUs: number; roundsUs: number[] } }> {
  const rounds: number[] = [];
  for (let round = 0; round < 6; round++) {
    const started = performance.now();
    for (let i = 0; i < calls; i++) await call(i);
    if (round > 0) rounds.push(((performance.now() - started) * 1000) / calls);
  }
  rounds.sort((a, b) => a - b);
  return {
    printed: {
      call: name,
      'µs per call (median)': rounds[2].toFixed(2),
      'min–max': `${rounds[0].toFixed(2)}–${rounds[4].toFixed(2)}`,
    },
    figures: { name, medianUs: rounds[2], roundsUs: rounds },
  };
}

void main();
