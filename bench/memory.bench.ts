import { context, metrics, SpanKind, trace } from '@opentelemetry/api';
import { memoryBackend } from '../lib';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { telemetrySetting } from '../lib/telemetry/lock-telemetry';
import { inProcessMutex } from './harness/in-process-mutex';
import { printContention, printThroughput, runContention, runThroughput } from './harness/lock-bench.harness';
import { registerOtelSdk } from './harness/otel-sdk';
import { serviceLock } from './harness/service-lock';

type Telemetry = Parameters<typeof telemetrySetting>[0];
const service = (telemetry?: Telemetry): DistributedLockService =>
  new DistributedLockService({
    backend: memoryBackend(),
    keyPrefix: 'bench:',
    ttl: 30_000,
    wait: 5_000,
    telemetry: telemetrySetting(telemetry),
  });

/**
 * `npm run bench:memory`: the memory backend against an in-process mutex, the ceiling of the harness,
 * then the cost of telemetry. `npm run bench:memory -- --telemetry` runs the telemetry table alone.
 */
async function main(): Promise<void> {
  if (process.argv.includes('--telemetry')) return telemetryTable();
  const locks = service();
  const mutex = inProcessMutex();
  const library = serviceLock(locks);

  console.log('Uncontended acquire+release');
  printThroughput(
    [
      await runThroughput('in-process mutex', mutex),
      await runThroughput('memoryBackend', library),
      await runThroughput('in-process mutex', mutex, { concurrency: 64 }),
      await runThroughput('memoryBackend', library, { concurrency: 64 }),
    ],
    'in-process mutex',
  );
  console.log('Cost per call, sequential, 10 keys (median of 5 rounds of 50,000 calls)');
  console.table([
    await perCall('in-process mutex: lock + unlock', async (i) => (await mutex(`m${i % 10}`))()),
    await perCall('memoryBackend: tryAcquire + release', async (i) => {
      await locks.release((await locks.tryAcquire(`t${i % 10}`))!);
    }),
    await perCall('memoryBackend: withLock', (i) => locks.withLock(`w${i % 10}`, () => i)),
    await perCall('memoryBackend: withLock, the work reads lock.signal', (i) =>
      locks.withLock(`s${i % 10}`, (lock) => lock.signal.aborted),
    ),
  ]);
  console.log('Contended: 8 workers, 1 key, hold 2 ms, think 1 ms, 5 s');
  printContention([await runContention('in-process mutex', mutex), await runContention('memoryBackend', library)]);
  await locks.shutdown();
  await telemetryTable();
}

/**
 * µs per `withLock` with telemetry off, with `@opentelemetry/api` but no SDK (the default of an app
 * that has the API without an SDK), and with the SDK registered (a meter provider whose reader
 * aggregates, a tracer provider batching spans to an exporter that drops them). The rows of a table
 * run in turn in every round, so a load that comes and goes weighs on all of them alike. The SDK's
 * context manager (one more AsyncLocalStorage) slows every promise of the process, so the rows
 * without an SDK run before it is registered, and the SDK table repeats `telemetry: false`.
 */
async function telemetryTable(): Promise<void> {
  const work = (locks: DistributedLockService) => (i: number) => locks.withLock(`w${i % 10}`, () => i);
  const off = service(false);
  const noSdk = service();
  console.log(
    'withLock without an OpenTelemetry SDK, sequential, 10 keys (median of 5 interleaved rounds of 50,000 calls)',
  );
  console.table(
    await perCallInterleaved([
      ['withLock, telemetry: false', work(off)],
      ['withLock, @opentelemetry/api without an SDK', work(noSdk)],
    ]),
  );
  // Each service looks the providers up at its first call, so these are made after the SDK is registered.
  const sdk = registerOtelSdk();
  const offWithSdk = service(false);
  const full = service();
  const metricsOnly = service({ traces: false });
  const tracesOnly = service({ metrics: false });
  console.log('withLock with the OpenTelemetry SDK registered (same rounds)');
  console.table(
    await perCallInterleaved([
      ['withLock, telemetry: false', work(offWithSdk)],
      ['withLock, metrics and spans', work(full)],
      ['withLock, metrics only (traces: false)', work(metricsOnly)],
      ['withLock, spans only (metrics: false)', work(tracesOnly)],
      [
        'tryAcquire + release, metrics',
        async (i) => {
          await full.release((await full.tryAcquire(`t${i % 10}`))!);
        },
      ],
      ['the SDK alone: what withLock records, without a lock', sdkFloor()],
    ]),
  );
  for (const locks of [off, noSdk, offWithSdk, full, metricsOnly, tracesOnly]) await locks.shutdown();
  await sdk.unregister();
  console.log(`spans exported (and dropped): ${sdk.exporter.exported}`);
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

/** `perCall` for several calls at once: each round runs every call in turn, after a warm-up round. */
async function perCallInterleaved(
  rows: Array<[string, (i: number) => Promise<unknown>]>,
): Promise<Array<Record<string, string>>> {
  const rounds = rows.map((): number[] => []);
  for (let round = 0; round < 6; round++) {
    for (const [index, [, call]] of rows.entries()) {
      const started = performance.now();
      for (let i = 0; i < 50_000; i++) await call(i);
      if (round > 0) rounds[index].push(((performance.now() - started) * 1000) / 50_000);
    }
  }
  return rows.map(([name], index) => {
    const sorted = rounds[index].sort((a, b) => a - b);
    return {
      call: name,
      'µs per call (median)': sorted[2].toFixed(2),
      'min–max': `${sorted[0].toFixed(2)}–${sorted[4].toFixed(2)}`,
    };
  });
}

/** µs per call of `call`, the median of 5 rounds of 50,000 calls after a warm-up round. */
async function perCall(name: string, call: (i: number) => Promise<unknown>): Promise<Record<string, string>> {
  const rounds: number[] = [];
  for (let round = 0; round < 6; round++) {
    const started = performance.now();
    for (let i = 0; i < 50_000; i++) await call(i);
    if (round > 0) rounds.push(((performance.now() - started) * 1000) / 50_000);
  }
  rounds.sort((a, b) => a - b);
  return {
    call: name,
    'µs per call (median)': rounds[2].toFixed(2),
    'min–max': `${rounds[0].toFixed(2)}–${rounds[4].toFixed(2)}`,
  };
}

void main();
