/**
 * A fault-suite worker: one OS process, one app instance. It loops `withLock(key)` → read the
 * fenced resource → think → write it back + 1 → release, and prints every event as a JSON line on
 * stdout (see history.ts). Started by the fault runner with its settings in LOCK_WORKER_CONFIG.
 *
 * A worker with a `behaviour` other than `plain` uses the lock the way real application code does
 * (see WorkerBehaviour): callbacks that escape their withLock, CPU blocks longer than the TTL,
 * extensions with other TTLs, aborts timed against attempts in flight, crowds of waiters that give
 * up together, a pool whose only connection the app keeps busy.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLock, LockLostError, LockTimeoutError, type HeldLock, type LockGuard } from '../../lib';
import { DistributedLockService } from '../../lib/distributed-lock.service';
import { createBackend, createResource, type WorkerBehaviour, type WorkerConfig } from './worker-config';
import type { HistoryEvent, SettledOutcome } from './history';
import { historyNow } from './history-clock';
import { exitWhenFlushed } from './worker-exit';

const config = JSON.parse(process.env.LOCK_WORKER_CONFIG ?? '{}') as WorkerConfig;
const behaviour: WorkerBehaviour = config.behaviour ?? { kind: 'plain' };
const workMs = behaviour.workMs ?? config.workMs;
const wait = behaviour.wait ?? config.wait;
const now = historyNow;

type Payload = HistoryEvent extends infer E ? (E extends HistoryEvent ? Omit<E, 't' | 'worker'> : never) : never;
function emit(event: Payload): void {
  process.stdout.write(`${JSON.stringify({ t: now(), worker: config.id, ...event })}\n`);
}

/** The reason a worker aborts its own attempts with: it gave up. */
class GaveUp extends Error {}

/** What the work of one call does; `endWork` records the end of the work (at most once). */
type Work = (held: HeldLock, call: number, endWork: () => void) => Promise<void>;

const { backend, pool } = createBackend(config.backend);
const locks = new DistributedLockService({ backend, keyPrefix: config.keyPrefix, ttl: config.ttl, wait });
const key = config.key;
let calls = 0;
/** Work left running after its call settled (escaped callbacks, writes not awaited): awaited at the end. */
const background = new Set<Promise<unknown>>();
/** Resolves when each call settles. */
const settledCalls = new Map<number, Promise<void>>();

function track(promise: Promise<unknown>): void {
  background.add(promise);
  void promise.finally(() => background.delete(promise));
}

function outcomeOf(error: unknown): SettledOutcome {
  if (error instanceof LockTimeoutError) return 'timeout';
  if (error instanceof LockLostError) return 'lost';
  if (error instanceof GaveUp) return 'aborted';
  return 'error';
}

/** Records a failed call; a backend error is followed by a short pause, as an app would retry. */
async function failed(call: number, error: unknown, keys: readonly string[] = [key]): Promise<void> {
  const outcome = outcomeOf(error);
  for (const each of keys) {
    if (outcome === 'timeout') emit({ type: 'timeout', call, key: each });
    else if (outcome === 'error')
      emit({ type: 'error', call, key: each, message: error instanceof Error ? error.message : String(error) });
    emit({ type: 'settled', call, key: each, outcome });
  }
  if (outcome === 'error') await sleep(50);
}

async function main(): Promise<void> {
  const resource = await createResource(config.resource);
  const end = now() + config.durationMs;

  /** The well-behaved work: read with the fence, think, write + 1 with the fence. */
  const update: Work = async (held, call) => {
    const fence = held.fence.toString();
    const read = await resource.read(config.resourceName, held.fence);
    emit({ type: 'read', call, key, fence, value: read.value, ok: read.ok });
    if (!read.ok) return;
    await sleep(workMs);
    // No check of the signal here on purpose: the resource's fence check is what must hold.
    const accepted = await resource.write(config.resourceName, held.fence, read.value + 1);
    emit({ type: 'write', call, key, fence, value: read.value + 1, accepted, signalAborted: held.signal.aborted });
  };

  /** One withLock call doing `work`, recorded from invoke to settled. */
  function lockedCall(
    work: Work,
    options: { wait?: number; ttl?: number; signal?: AbortSignal; mode?: 'shared'; limit?: number } = {},
  ): Promise<void> {
    const call = ++calls;
    const run = (async () => {
      emit({ type: 'invoke', call, key, wait: options.wait ?? wait });
      let fence: string | undefined;
      try {
        await locks.withLock(
          key,
          async (held) => {
            fence = held.fence.toString();
            emit({
              type: 'acquired',
              call,
              key,
              fence,
              ttl: options.ttl ?? config.ttl,
              ...(options.mode ? { mode: options.mode } : {}),
              ...(options.limit !== undefined ? { mode: 'limit' as const, limit: options.limit } : {}),
            });
            // The signal also aborts (with an AbortError) when the hold ends normally; only a loss counts.
            held.signal.addEventListener(
              'abort',
              () => {
                if (held.signal.reason instanceof LockLostError) emit({ type: 'lost', call, key, fence: fence! });
              },
              { once: true },
            );
            let ended = false;
            const endWork = (): void => {
              if (ended) return;
              ended = true;
              emit({ type: 'release', call, key, fence: fence! });
            };
            try {
              await work(held, call, endWork);
            } finally {
              endWork();
            }
          },
          options,
        );
        emit({ type: 'settled', call, key, outcome: 'resolved', fence });
      } catch (error) {
        await failed(call, error);
      }
    })();
    settledCalls.set(call, run);
    void run.finally(() => settledCalls.delete(call));
    return run;
  }

  /**
   * One withLock of the worker's key and its pair key (listed in `order`), recorded as one call on
   * each key: the work reads and writes the resource with the fence of the worker's key.
   */
  async function pairCall(order: 'forward' | 'reverse'): Promise<void> {
    const call = ++calls;
    const other = `${key}:pair`;
    const keys = order === 'forward' ? [key, other] : [other, key];
    for (const each of keys) emit({ type: 'invoke', call, key: each, wait });
    const fences = new Map<string, string>();
    try {
      await locks.withLock(keys, async (held) => {
        for (const lock of held.locks) {
          const fence = lock.fence.toString();
          fences.set(lock.key, fence);
          emit({ type: 'acquired', call, key: lock.key, fence, ttl: config.ttl });
          lock.signal.addEventListener(
            'abort',
            () => {
              if (lock.signal.reason instanceof LockLostError) emit({ type: 'lost', call, key: lock.key, fence });
            },
            { once: true },
          );
        }
        try {
          const mine = held.locks.find((lock) => lock.key === key)!;
          const fence = mine.fence.toString();
          const read = await resource.read(config.resourceName, mine.fence);
          emit({ type: 'read', call, key, fence, value: read.value, ok: read.ok });
          if (!read.ok) return;
          await sleep(workMs);
          const accepted = await resource.write(config.resourceName, mine.fence, read.value + 1);
          emit({
            type: 'write',
            call,
            key,
            fence,
            value: read.value + 1,
            accepted,
            signalAborted: mine.signal.aborted,
          });
        } finally {
          for (const lock of held.locks) emit({ type: 'release', call, key: lock.key, fence: lock.fence.toString() });
        }
      });
      for (const each of keys) emit({ type: 'settled', call, key: each, outcome: 'resolved', fence: fences.get(each) });
    } catch (error) {
      await failed(call, error, keys);
    }
  }

  /** One acquire (or tryAcquire: wait 0) → work → release, recorded like a withLock call. */
  async function guardedCall(
    options: { wait: number; ttl?: number; signal?: AbortSignal; tryOnly?: boolean },
    afterCall?: () => void,
  ): Promise<void> {
    const call = ++calls;
    emit({ type: 'invoke', call, key, wait: options.wait });
    let guard: LockGuard | null;
    try {
      const attempt = options.tryOnly
        ? locks.tryAcquire(key, { ttl: options.ttl })
        : locks.acquire(key, { wait: options.wait, ttl: options.ttl, signal: options.signal });
      afterCall?.();
      guard = await attempt;
    } catch (error) {
      await failed(call, error);
      return;
    }
    if (guard === null) {
      emit({ type: 'settled', call, key, outcome: 'timeout' });
      return;
    }
    const fence = guard.fence.toString();
    emit({ type: 'acquired', call, key, fence, ttl: options.ttl ?? config.ttl });
    try {
      const read = await resource.read(config.resourceName, guard.fence);
      emit({ type: 'read', call, key, fence, value: read.value, ok: read.ok });
      if (read.ok) {
        await sleep(workMs);
        const accepted = await resource.write(config.resourceName, guard.fence, read.value + 1);
        emit({ type: 'write', call, key, fence, value: read.value + 1, accepted, signalAborted: false });
      }
    } finally {
      emit({ type: 'release', call, key, fence });
    }
    try {
      await locks.release(guard);
      emit({ type: 'settled', call, key, outcome: 'resolved', fence });
    } catch (error) {
      await failed(call, error);
    }
  }

  const random = (max: number): number => Math.floor(Math.random() * (max + 1));
  let round = 0;
  process.stdout.write(`${JSON.stringify({ ready: config.id })}\n`);

  while (now() < end) {
    round++;
    switch (behaviour.kind) {
      case 'plain':
        await lockedCall(update);
        break;
      case 'escape':
        await lockedCall(async (held, call, endWork) => {
          await update(held, call, endWork);
          if (behaviour.mode === 'timer') {
            const outer = settledCalls.get(call);
            // Not awaited: it runs on after the outer withLock released, in that call's async context.
            track(
              (async () => {
                await outer;
                await sleep(behaviour.delayMs);
                // "Do I still hold the lock?" No lock in the context counts as the answer "no".
                const stale = currentLock();
                emit({
                  type: 'guard',
                  call,
                  key,
                  fence: (stale ?? held).fence.toString(),
                  aborted: stale ? stale.signal.aborted : true,
                });
                await lockedCall(update);
              })(),
            );
          } else {
            endWork();
            await locks.release(held);
            await lockedCall(update);
          }
        });
        break;
      case 'cpu-block': {
        if (round % behaviour.every !== 0) {
          await lockedCall(update);
          break;
        }
        let write: Promise<void> | undefined;
        await lockedCall(async (held, call, endWork) => {
          const fence = held.fence.toString();
          const read = await resource.read(config.resourceName, held.fence);
          emit({ type: 'read', call, key, fence, value: read.value, ok: read.ok });
          if (!read.ok) return;
          const until = performance.now() + behaviour.blockMs;
          while (performance.now() < until) {
            // Busy: the event loop is blocked, no timer of the library can run.
          }
          // The usual guard, with no await between it and the write, and nothing awaited after.
          const aborted = held.signal.aborted;
          emit({ type: 'guard', call, key, fence, aborted });
          if (!aborted) {
            write = resource.write(config.resourceName, held.fence, read.value + 1).then((accepted) => {
              emit({ type: 'write', call, key, fence, value: read.value + 1, accepted, signalAborted: aborted });
            });
          }
          endWork();
        });
        await write;
        break;
      }
      case 'extend':
        await lockedCall(async (held, call, endWork) => {
          await locks.extend(held, behaviour.ttl);
          await update(held, call, endWork);
        });
        break;
      case 'abort': {
        const controller = new AbortController();
        const giveUp = (): void => controller.abort(new GaveUp('the worker gave up'));
        if (random(2) === 0) {
          // A short wait instead: the deadline expires against the attempt in flight.
          await guardedCall({ wait: random(behaviour.maxDelayMs), ttl: behaviour.ttl });
          break;
        }
        const delay = random(1) === 0 ? 0 : random(behaviour.maxDelayMs);
        const timer = delay > 0 ? setTimeout(giveUp, delay) : undefined;
        await guardedCall({ wait, ttl: behaviour.ttl, signal: controller.signal }, delay === 0 ? giveUp : undefined);
        clearTimeout(timer);
        break;
      }
      case 'reader':
        // A reader: reads the resource with its fence (refused once a later writer wrote), writes nothing.
        await lockedCall(
          async (held, call) => {
            const read = await resource.read(config.resourceName, held.fence);
            emit({ type: 'read', call, key, fence: held.fence.toString(), value: read.value, ok: read.ok });
            await sleep(workMs);
          },
          { mode: 'shared' },
        );
        break;
      case 'pair':
        await pairCall(behaviour.order);
        break;
      case 'limited':
        // One of at most `limit` holders: holds for the work time, touches no resource.
        await lockedCall(() => sleep(workMs), { limit: behaviour.limit });
        break;
      case 'crowd':
        await Promise.all(
          Array.from({ length: behaviour.waiters }, () =>
            lockedCall(update, { wait: behaviour.wait, ttl: behaviour.ttl }),
          ),
        );
        break;
      case 'hog-pool': {
        if (!pool || round % 2 === 1) {
          await lockedCall(update);
          break;
        }
        // The app's own transaction keeps every connection of the pool for holdMs.
        const clients = await Promise.all(Array.from({ length: pool.options.max ?? 1 }, () => pool.connect()));
        let attempts: Array<Promise<void>> = [];
        let failure: Error | undefined;
        try {
          await clients[0].query('BEGIN');
          attempts = [guardedCall({ wait: behaviour.wait }), guardedCall({ wait: 0, tryOnly: true })];
          await sleep(behaviour.holdMs);
          await clients[0].query('COMMIT');
        } catch (error) {
          failure = error instanceof Error ? error : new Error(String(error));
        } finally {
          for (const client of clients) client.release(failure);
        }
        await Promise.all(attempts);
        break;
      }
    }
    await sleep(config.thinkMs);
  }
  await Promise.all([...background]);
  await locks.shutdown();
  await pool?.end();
  await resource.close();
}

main().then(
  () => exitWhenFlushed(0),
  (error: unknown) => {
    process.stderr.write(`worker ${config.id} failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    exitWhenFlushed(1);
  },
);
