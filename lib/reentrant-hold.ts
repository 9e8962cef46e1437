import type { HeldLock } from './distributed-lock';
import { LockLostError } from './lock.errors';
import { runHolding, type Hold } from './lock-context';
import type { LockSpan } from './telemetry/lock-telemetry';

/*
 * Kept apart from lock-context.ts, which the root entry's types reach (currentLock): this one names
 * the telemetry types, whose module imports @opentelemetry/api, an optional peer.
 */

/** `withLock` inside a hold of the same key by the same service: the work runs in that hold. */
export async function runReentrant<T>(
  outer: Hold & { readonly lost: LockLostError | undefined },
  fn: (lock: HeldLock) => T | Promise<T>,
  span: LockSpan | undefined,
): Promise<T> {
  let value: T;
  try {
    // A surrounding hold whose lease was lost: the work should stop, not run as if it held the key.
    if (!outer.live()) throw outer.lost!;
    try {
      value = await (span
        ? span.run((guard) => runHolding(outer, fn, guard), outer.held)
        : runHolding(outer, fn, outer.held));
    } catch (error) {
      if (outer.lost)
        throw new LockLostError(outer.held.key, outer.lost.detail, { workSucceeded: false, cause: error });
      throw error;
    }
    if (!outer.live() && outer.lost)
      throw new LockLostError(outer.held.key, outer.lost.detail, { workSucceeded: true });
  } catch (error) {
    span?.end(undefined, error);
    throw error;
  }
  span?.end(undefined);
  return value;
}
