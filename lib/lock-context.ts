import { AsyncLocalStorage } from 'node:async_hooks';
import type { HeldLock } from './distributed-lock';

/** A hold made by `withLock` or `@WithLock`, as the async call chains that ran inside it see it. */
export interface Hold {
  readonly held: HeldLock;
  /** The service that took the lock: reentrancy only counts holds of the same service. */
  readonly owner: object;
  /**
   * Over: released, or the `withLock` that made it has ended. Callbacks that escaped the work keep
   * the frame in their context; an ended hold is invisible to them.
   */
  readonly ended: boolean;
  /** Whether the lease is still confirmed; a loss it finds (a local deadline passed) is reported now. */
  live(): boolean;
}

/** One hold in the current async call chain; frames link to the holds around them. */
interface LockFrame {
  readonly hold: Hold;
  readonly parent: LockFrame | undefined;
}

const storage = new AsyncLocalStorage<LockFrame>();

/**
 * The innermost lock held by the current async call chain through `withLock` or `@WithLock`, or
 * `undefined` outside any. Lets deep code read the `fence` and `signal` without passing them down.
 * A lock is returned only while its lease is confirmed: once it was released, lost or ran past its
 * local deadline, this returns `undefined` (or the confirmed lock of a surrounding hold whose work
 * is still running), in every async context, including callbacks that outlived the `withLock`.
 */
export function currentLock(): HeldLock | undefined {
  for (let frame = storage.getStore(); frame; frame = frame.parent) {
    if (frame.hold.ended) continue;
    return frame.hold.live() ? frame.hold.held : undefined;
  }
  return undefined;
}

/** The hold of `key` by `owner` in the current call chain that has not ended, if any. */
export function findHold(owner: object, key: string): Hold | undefined {
  for (let frame = storage.getStore(); frame; frame = frame.parent) {
    const { hold } = frame;
    if (!hold.ended && hold.owner === owner && hold.held.key === key) return hold;
  }
  return undefined;
}

/** Runs `fn(arg)` with `hold` as the innermost hold of its call chain. */
export function runHolding<A, T>(hold: Hold, fn: (arg: A) => T, arg: A): T {
  return storage.run({ hold, parent: storage.getStore() }, fn, arg);
}
