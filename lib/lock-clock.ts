import { MAX_TIMER_DELAY } from './lock.constants';

/** Milliseconds on the monotonic clock: immune to wall-clock steps, the base of every local deadline. */
export function monotonicNow(): number {
  // Read through globalThis at each call so that test clocks that replace it are honoured.
  return globalThis.performance.now();
}

/**
 * How far a wall-clock step back must go before the offset follows it (ms): `Date.now()` counts
 * whole milliseconds, so a reading of the offset falls up to 1 ms short of the true one.
 */
const WALL_STEP_BACK_TOLERANCE = 5;
/** `Date.now()` less the monotonic clock, as last followed. */
let wallOffset = Date.now() - monotonicNow();

/**
 * `Date.now()` less the monotonic clock, now. The two clocks part whenever the wall clock is
 * stepped (NTP, a resumed VM, a machine back from suspend, which the monotonic clock does not
 * count), so `performance.timeOrigin` goes stale; this follows a step forward at once (a reading
 * never exceeds the true offset) and a step back once it is past the rounding of `Date.now()`,
 * so times converted close together keep their order.
 */
export function epochOffset(): number {
  const reading = Date.now() - monotonicNow();
  if (reading > wallOffset || reading < wallOffset - WALL_STEP_BACK_TOLERANCE) wallOffset = reading;
  return wallOffset;
}

/**
 * A monotonic time expressed in the scale of `Date.now()` as it reads now, for the fields users
 * read (`acquiredAt`, `expiresAt`): compared with `Date.now()`, it tells the time left on the
 * monotonic clock, however the wall clock was stepped since the process started. `offset`: an
 * `epochOffset()` just read, for several times converted together.
 */
export function toEpochMs(monotonic: number, offset = epochOffset()): number {
  return Math.round(offset + monotonic);
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

/**
 * One unref'd timer for a scheduler that keeps its own queue (the watchdog, the lease expiries):
 * armed for the earliest time it needs, it calls `tick` at that monotonic time.
 */
export class WakeTimer {
  private timer: NodeJS.Timeout | undefined;
  /** The monotonic time it is armed for; Infinity when it is not. */
  at = Infinity;

  constructor(private readonly tick: () => void) {}

  /** Arms it for `at`, replacing the time it was armed for. */
  arm(at: number): void {
    this.disarm();
    this.at = at;
    const delay = Math.min(Math.max(0, Math.ceil(at - monotonicNow())), MAX_TIMER_DELAY);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.at = Infinity;
      this.tick();
    }, delay);
    this.timer.unref();
  }

  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.at = Infinity;
  }
}
