/**
 * A fault-suite worker: one OS process, one app instance. It loops `withLock(key)` → read the
 * fenced resource → think → write it back + 1 → release, and prints every event as a JSON line on
 * stdout (see history.ts). Started by the fault runner with its settings in LOCK_WORKER_CONFIG.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DistributedLockService, LockLostError, LockTimeoutError } from '../../lib';
import { createBackend, createResource, type WorkerConfig } from './worker-config';
import type { HistoryEvent } from './history';
import { historyNow } from './history-clock';

const config = JSON.parse(process.env.LOCK_WORKER_CONFIG ?? '{}') as WorkerConfig;
const now = historyNow;

type Payload = HistoryEvent extends infer E ? (E extends HistoryEvent ? Omit<E, 't' | 'worker'> : never) : never;
function emit(event: Payload): void {
  process.stdout.write(`${JSON.stringify({ t: now(), worker: config.id, ...event })}\n`);
}

async function main(): Promise<void> {
  const backend = createBackend(config.backend);
  const resource = await createResource(config.resource);
  const locks = new DistributedLockService({ backend, keyPrefix: config.keyPrefix, ttl: config.ttl, wait: config.wait });
  const key = config.key;
  const end = now() + config.durationMs;
  process.stdout.write(`${JSON.stringify({ ready: config.id })}\n`);

  while (now() < end) {
    emit({ type: 'invoke', key });
    try {
      await locks.withLock(key, async (held) => {
        const fence = held.fence.toString();
        emit({ type: 'acquired', key, fence, ttl: config.ttl });
        // The signal also aborts (with an AbortError) when the hold ends normally; only a loss counts.
        held.signal.addEventListener(
          'abort',
          () => {
            if (held.signal.reason instanceof LockLostError) emit({ type: 'lost', key, fence });
          },
          { once: true },
        );
        try {
          const read = await resource.read(config.resourceName, held.fence);
          emit({ type: 'read', key, fence, value: read.value, ok: read.ok });
          if (!read.ok) return;
          await sleep(config.workMs);
          // No check of the signal here on purpose: the resource's fence check is what must hold.
          const accepted = await resource.write(config.resourceName, held.fence, read.value + 1);
          emit({ type: 'write', key, fence, value: read.value + 1, accepted, signalAborted: held.signal.aborted });
        } finally {
          emit({ type: 'release', key, fence });
        }
      });
    } catch (error) {
      if (error instanceof LockTimeoutError) emit({ type: 'timeout', key });
      else if (!(error instanceof LockLostError)) {
        emit({ type: 'error', key, message: error instanceof Error ? error.message : String(error) });
        await sleep(50);
      }
    }
    await sleep(config.thinkMs);
  }
  await locks.shutdown();
  await resource.close();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`worker ${config.id} failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
