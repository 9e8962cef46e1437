import type { Logger } from '@nestjs/common';
import type {
  AcquireOptions,
  HeldLock,
  HeldLocks,
  LockGuard,
  MultiLockGuard,
  TryAcquireOptions,
  WithLockOptions,
} from './distributed-lock';
import { MAX_KEYS_PER_LOCK } from './lock.constants';
import { errorText, InvalidLockOptionsError, LockLostError, LockTimeoutError } from './lock.errors';
import { ACQUIRE_OPTIONS, readCallOptions, TRY_ACQUIRE_OPTIONS, WITH_LOCK_OPTIONS } from './lock-call-options';
import { monotonicNow } from './lock-clock';
import { describeValue, validateGuardShape, validateKey } from './lock.validation';

/*
 * Multi-key locks, made of the single-key calls above the backend SPI: every backend gets them as
 * they are. The keys are taken one after another in one canonical order (sorted by UTF-16 code
 * units), so two callers listing overlapping keys in different orders can never each hold a key the
 * other waits for; a set that cannot be completed gives back what it took before the call returns.
 */

/** The single-key calls multi-key locks are made of: the service's own. */
export interface SingleKeyLocks {
  tryAcquire(key: string, options?: TryAcquireOptions): Promise<LockGuard | null>;
  acquire(key: string, options?: AcquireOptions): Promise<LockGuard>;
  extend(guard: LockGuard, ttl?: number): Promise<boolean>;
  release(guard: LockGuard): Promise<void>;
  withLock<T>(key: string, fn: (lock: HeldLock) => T | Promise<T>, options?: WithLockOptions): Promise<T>;
}

/** Whether a lock call was given a list of keys rather than one key. */
export function isKeyList(key: unknown): key is readonly string[] {
  return Array.isArray(key);
}

/** Whether a guard passed to `extend` / `release` is a multi-key one (it has a list of `locks`). */
export function isMultiGuard(guard: unknown): guard is MultiLockGuard {
  return typeof guard === 'object' && guard !== null && Array.isArray((guard as { locks?: unknown }).locks);
}

/**
 * A list of keys, checked (1 to 32 keys, each a valid key, none twice), in canonical order: sorted
 * by UTF-16 code units, as `Array.prototype.sort` compares strings.
 */
export function readKeyList(where: string, keys: unknown): string[] {
  const rule = `a list of 1 to ${MAX_KEYS_PER_LOCK} distinct keys`;
  if (!Array.isArray(keys)) {
    throw new InvalidLockOptionsError(`Invalid ${where} keys: expected ${rule}, got ${describeValue(keys)}`);
  }
  if (keys.length === 0)
    throw new InvalidLockOptionsError(`Invalid ${where} keys: expected ${rule}, got an empty list`);
  if (keys.length > MAX_KEYS_PER_LOCK) {
    throw new InvalidLockOptionsError(`Invalid ${where} keys: expected ${rule}, got ${keys.length} keys`);
  }
  keys.forEach((key: unknown, index) => {
    try {
      validateKey(key);
    } catch (error) {
      throw new InvalidLockOptionsError(`${errorText(error)} (item ${index} of the ${where} key list)`, {
        cause: error,
      });
    }
  });
  const sorted = [...(keys as string[])].sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) {
      throw new InvalidLockOptionsError(
        `Invalid ${where} keys: expected ${rule}, but ${describeValue(sorted[i])} is listed more than once`,
      );
    }
  }
  return sorted;
}

/** The guards of a multi-key `tryAcquire` / `acquire`: keys in canonical order, one guard per key. */
class KeySet implements MultiLockGuard {
  constructor(
    readonly keys: readonly string[],
    readonly locks: readonly LockGuard[],
  ) {
    Object.freeze(keys);
    Object.freeze(locks);
  }

  fence(key: string): bigint {
    const index = this.keys.indexOf(key);
    if (index < 0) {
      throw new InvalidLockOptionsError(
        `Invalid fence key: ${describeValue(key)} is not one of this lock's keys (${this.keys.map((k) => JSON.stringify(k)).join(', ')})`,
      );
    }
    return this.locks[index].fence;
  }
}

const MEMBERS = Symbol('members');
type CombinedSignal = AbortSignal & { [MEMBERS]: readonly AbortSignal[] };
const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')!.get!;
const reasonOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'reason')!.get!;
/** Reading a member's `aborted` confirms its lease first (a held lock's signal does): a deadline passed unnoticed counts now. */
const touch = (signal: CombinedSignal): void => signal[MEMBERS].forEach((member) => member.aborted);
/** The prototype of a set's signal: like a held lock's, it confirms every lease before it answers. */
const COMBINED_SIGNAL: object = Object.create(AbortSignal.prototype, {
  aborted: {
    get(this: CombinedSignal) {
      touch(this);
      return abortedOf.call(this);
    },
  },
  reason: {
    get(this: CombinedSignal) {
      touch(this);
      return reasonOf.call(this);
    },
  },
  throwIfAborted: {
    value(this: CombinedSignal) {
      touch(this);
      AbortSignal.prototype.throwIfAborted.call(this);
    },
  },
});

/** What the work of a multi-key `withLock` gets: every key's held lock, and one signal for them all. */
class HeldKeySet extends KeySet implements HeldLocks {
  declare readonly locks: readonly HeldLock[];
  #signal: AbortSignal | undefined;

  get signal(): AbortSignal {
    if (!this.#signal) {
      const members = this.locks.map((lock) => lock.signal);
      const signal = AbortSignal.any(members) as CombinedSignal;
      Object.setPrototypeOf(signal, COMBINED_SIGNAL);
      signal[MEMBERS] = members;
      this.#signal = signal;
    }
    return this.#signal;
  }
}

/** The wait left of a shared deadline: what the next key of a set may still wait (0: one attempt). */
function waitLeft(wait: number, started: number): number {
  return wait === Infinity ? Infinity : Math.max(0, wait - (monotonicNow() - started));
}

/** A busy key of a set: the error names that key, the wait asked for the whole set and the time waited. */
function busyKeyOfSet(error: LockTimeoutError, wait: number, started: number): LockTimeoutError {
  return new LockTimeoutError(error.key, monotonicNow() - started, error.retryIn, wait);
}

/** `tryAcquire`, `acquire`, `extend`, `release` and `withLock` on a list of keys, over the single-key calls. */
export class MultiKeyLocks {
  constructor(
    private readonly locks: SingleKeyLocks,
    private readonly defaults: { readonly ttl: number; readonly wait: number },
    private readonly logger: Logger,
  ) {}

  async tryAcquire(keys: readonly string[], options?: TryAcquireOptions): Promise<MultiLockGuard | null> {
    const list = readKeyList('tryAcquire', keys);
    readCallOptions('tryAcquire', list[0], options, TRY_ACQUIRE_OPTIONS, this.defaults);
    const taken: LockGuard[] = [];
    try {
      for (const key of list) {
        const guard = await this.locks.tryAcquire(key, options);
        if (!guard) {
          await this.giveBack(taken);
          return null;
        }
        taken.push(guard);
      }
    } catch (error) {
      await this.giveBack(taken);
      throw error;
    }
    return new KeySet(list, taken);
  }

  async acquire(keys: readonly string[], options?: AcquireOptions): Promise<MultiLockGuard> {
    const list = readKeyList('acquire', keys);
    const { wait } = readCallOptions('acquire', list[0], options, ACQUIRE_OPTIONS, this.defaults);
    const started = monotonicNow();
    const taken: LockGuard[] = [];
    try {
      for (const key of list) taken.push(await this.locks.acquire(key, { ...options, wait: waitLeft(wait, started) }));
    } catch (error) {
      await this.giveBack(taken);
      throw error instanceof LockTimeoutError ? busyKeyOfSet(error, wait, started) : error;
    }
    return new KeySet(list, taken);
  }

  /** Extends every key (all attempted); true only if every one was extended. */
  async extend(guard: MultiLockGuard, ttl?: number): Promise<boolean> {
    const results = await Promise.allSettled(this.guardsOf(guard).map((lock) => this.locks.extend(lock, ttl)));
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw failure.reason;
    return results.every((result) => result.status === 'fulfilled' && result.value);
  }

  /** Releases every key (all attempted, even when one fails); rejects with the first failure. */
  async release(guard: MultiLockGuard): Promise<void> {
    const results = await Promise.allSettled(this.guardsOf(guard).map((lock) => this.locks.release(lock)));
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /**
   * Nested single-key `withLock` calls in canonical order, each with the wait left of the shared
   * deadline and the same signal, ttl, minHold and metricName; the work runs inside the innermost,
   * so each key is extended, lost and released as a single-key hold is, and a key a surrounding
   * `withLock` holds is re-entered.
   */
  async withLock<T>(
    keys: readonly string[],
    fn: (locks: HeldLocks) => T | Promise<T>,
    options?: WithLockOptions,
  ): Promise<T> {
    const list = readKeyList('withLock', keys);
    const { wait } = readCallOptions('withLock', list[0], options, WITH_LOCK_OPTIONS, this.defaults);
    if (typeof fn !== 'function') {
      throw new InvalidLockOptionsError(`Invalid withLock work: expected a function, got ${describeValue(fn)}`);
    }
    const started = monotonicNow();
    let working = false;
    const hold = (index: number, held: readonly HeldLock[]): Promise<T> =>
      this.locks.withLock(
        list[index],
        (lock) => {
          if (index + 1 < list.length) return hold(index + 1, [...held, lock]);
          const all = [...held, lock];
          // A key taken earlier may have been lost while the set waited for the later ones: the work
          // runs only while every key is held (reading a held lock's signal confirms its lease).
          const lost = all.find((each) => each.signal.aborted);
          if (lost) throw lost.signal.reason;
          working = true;
          return fn(new HeldKeySet(list, all));
        },
        { ...options, wait: waitLeft(wait, started) },
      );
    try {
      return await hold(0, []);
    } catch (caught) {
      let error = caught;
      // The work never ran: a key taken earlier reports the set's failure as its lease lost (shutdown
      // ended it, or it was lost while a later key was awaited); what the caller needs is why.
      if (!working && error instanceof LockLostError && error.cause !== undefined) error = error.cause;
      // A key of the set stayed busy (not a LockTimeoutError of the work's own).
      if (!working && error instanceof LockTimeoutError) throw busyKeyOfSet(error, wait, started);
      throw error;
    }
  }

  /** The guards of a multi-key guard, every one checked before any is acted on. */
  private guardsOf(guard: MultiLockGuard): readonly LockGuard[] {
    const { locks } = guard;
    if (locks.length === 0) {
      throw new InvalidLockOptionsError('Invalid guard: expected a MultiLockGuard with at least one lock, got none');
    }
    locks.forEach((lock) => validateGuardShape(lock));
    return locks;
  }

  /** Gives back the keys a set took before it failed, newest first; a failed release is logged, the lease ends by its TTL. */
  private async giveBack(taken: readonly LockGuard[]): Promise<void> {
    for (let i = taken.length - 1; i >= 0; i--) {
      try {
        await this.locks.release(taken[i]);
      } catch (error) {
        this.logger.warn(`could not give back "${taken[i].key}" of a lock set that failed: ${errorText(error)}`);
      }
    }
  }
}
