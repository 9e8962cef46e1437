// A script whose only pending work is a lock wait on the memory backend: the process must stay
// alive until the wait settles. Prints one JSON line with the outcome.
import { memoryBackend } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';

async function main(): Promise<void> {
  const wait = Number(process.argv[2] ?? 300);
  const locks = new DistributedLockService({ backend: memoryBackend(), keyPrefix: '', ttl: 60_000, wait });
  await locks.tryAcquire('busy');
  const started = performance.now();
  const outcome = await locks.acquire('busy').then(
    () => 'acquired',
    (error: Error) => error.name,
  );
  process.stdout.write(`${JSON.stringify({ outcome, waited: Math.round(performance.now() - started) })}\n`);
}

void main();
