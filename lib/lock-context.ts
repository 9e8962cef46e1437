import { AsyncLocalStorage } from 'node:async_hooks';
import type { HeldLock } from './distributed-lock';

/** One lock held by the current async call chain; frames link to the lock held around them. */
interface LockFrame {
  readonly held: HeldLock;
  /** The service that took the lock: reentrancy only counts holds of the same service. */
  readonly owner: object;
  readonly parent: LockFrame | undefined;
}

const storage = new AsyncLocalStorage<LockFrame>();

/**
 * The innermost lock held by the current async call chain through `withLock` or `@WithLock`, or
 * `undefined` outside any. Lets deep code read the `fence` and `signal` without passing them down.
 */
export function currentLock(): HeldLock | undefined {
  return storage.getStore()?.held;
}

/** The hold of `key` by `owner` in the current call chain, if any. */
export function findHeld(owner: object, key: string): HeldLock | undefined {
  for (let frame = storage.getStore(); frame; frame = frame.parent) {
    if (frame.owner === owner && frame.held.key === key) return frame.held;
  }
  return undefined;
}

/** Runs `fn` with `held` as the innermost lock of its call chain. */
export function runHolding<T>(owner: object, held: HeldLock, fn: () => T): T {
  return storage.run({ held, owner, parent: storage.getStore() }, fn);
}
