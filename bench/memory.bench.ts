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
  console.log('Contended: 8 workers, 1 key, hold 2 ms, think 1 ms, 5 s');
  printContention([await runContention('in-process mutex', mutex), await runContention('memoryBackend', library)]);
  await locks.shutdown();
}

void main();
