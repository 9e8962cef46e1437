import { memoryBackend } from '../lib';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { inProcessMutex } from './harness/in-process-mutex';
import { printContention, printThroughput, runContention, runThroughput } from './harness/lock-bench.harness';
import { benchArgs, contentionRow, resultsWriter, throughputRow } from './harness/results-file';
import { serviceLock } from './harness/service-lock';

/**
 * `npm run bench:memory [-- --json <file>] [-- --quick]`: the memory backend against an in-process
 * mutex, the ceiling of the harness.
 */
async function main(): Promise<void> {
  const args = benchArgs();
  const save = await resultsWriter('memory', args);
  const settings = {
    throughputMs: args.quick ? 500 : 3_000,
    callsPerRound: args.quick ? 5_000 : 50_000,
    contention: { workers: 8, holdMs: 2, thinkMs: 1, durationMs: args.quick ? 1_000 : 5_000 },
  };
  const locks = new DistributedLockService({ backend: memoryBackend(), keyPrefix: 'bench:', ttl: 30_000, wait: 5_000 });
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
  save({ settings, throughput, contention, perCall: perCalls.map((p) => p.figures) });
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
