import { memoryBackend } from '../lib';
import { DistributedLockService } from '../lib/distributed-lock.service';
import { inProcessMutex } from './harness/in-process-mutex';
import { printContention, printThroughput, runContention, runThroughput } from './harness/lock-bench.harness';
import { serviceLock } from './harness/service-lock';

/** `npm run bench:memory`: the memory backend against an in-process mutex, the ceiling of the harness. */
async function main(): Promise<void> {
  const locks = new DistributedLockService({ backend: memoryBackend(), keyPrefix: 'bench:', ttl: 30_000, wait: 5_000 });
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
