import { MAX_TIMER_DELAY } from './lock.constants';

/** Milliseconds on the monotonic clock: immune to wall-clock steps, the base of every local deadline. */
export function monotonicNow(): number {
  // Read through globalThis at each call so that test clocks that replace it are honoured.
  return globalThis.performance.now();
}

/** A monotonic time expressed in the scale of `Date.now()`, for the fields users read. */
export function toEpochMs(monotonic: number): number {
  return Math.round(globalThis.performance.timeOrigin + monotonic);
}

/**
 * A timer that fires at monotonic time `at`, however far away: delays above the 2^31-1 ms that
 * `setTimeout` accepts are covered in steps. Unref'd unless `keepAlive` (then it keeps the process
 * running until it fires or is cancelled). Returns the function that cancels it.
 */
export function scheduleAt(at: number, callback: () => void, keepAlive = false): () => void {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const delay = at - monotonicNow();
    if (delay <= 0) {
      timer = undefined;
      callback();
      return;
    }
    timer = setTimeout(arm, Math.min(Math.ceil(delay), MAX_TIMER_DELAY));
    if (!keepAlive) timer.unref();
  };
  const first = at - monotonicNow();
  timer = setTimeout(arm, Math.max(0, Math.min(Math.ceil(first), MAX_TIMER_DELAY)));
  if (!keepAlive) timer.unref();
  return () => {
    clearTimeout(timer);
    timer = undefined;
  };
}

/** Waits until every promise has settled, or `ms` have passed, whichever comes first; leaves no timer behind. */
export async function settleWithin(promises: Iterable<Promise<unknown>>, ms: number): Promise<void> {
  let cancel: (() => void) | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      cancel = scheduleAt(monotonicNow() + ms, resolve);
    }),
  ]);
  cancel?.();
}
