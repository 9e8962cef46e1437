/** A lease that is held: what `tryAcquire` and `acquire` return. */
export interface LockGuard {
  /** The key as the caller gave it, without the module's key prefix. */
  readonly key: string;
  /** 128 random bits (32 hex digits) that identify this holder; only its holder can extend or release. */
  readonly token: string;
  /**
   * The fencing token: strictly greater than the fence of every earlier acquisition of this key.
   * Pass it to the resource you protect and have the resource reject writes with a lower fence
   * than one it has already seen; that is what keeps a paused or partitioned former holder harmless.
   */
  readonly fence: bigint;
  /** When the lease was acquired, in `Date.now()` milliseconds. */
  readonly acquiredAt: number;
  /**
   * The holder's conservative estimate of when the lease ends, in `Date.now()` milliseconds,
   * measured on the monotonic clock: the moment the winning request was sent, plus the TTL, minus a
   * drift margin (1% of the TTL + 2 ms). Updated by a successful `extend`.
   */
  readonly expiresAt: number;
}

/** The lease handed to work run by `withLock` and `@WithLock`, and returned by `currentLock()`. */
export interface HeldLock extends LockGuard {
  /**
   * Aborted, with a `LockLostError` as its reason, the moment the lease cannot be confirmed: an
   * extension was refused, or none was confirmed before the local deadline. Pass it to whatever
   * the work calls that accepts a signal.
   */
  readonly signal: AbortSignal;
}

/**
 * The leases of a multi-key `tryAcquire` / `acquire`: every key of the list, held together. Pass it
 * to `extend` and `release`, which act on every key.
 */
export interface MultiLockGuard {
  /** The keys in the order they were acquired: sorted by UTF-16 code units, whatever order the caller listed them in. */
  readonly keys: readonly string[];
  /** One guard per key, in the order of `keys`; each has its own token and fence. */
  readonly locks: readonly LockGuard[];
  /** The fence of `key` (each key keeps its own); throws `InvalidLockOptionsError` for a key not in the set. */
  fence(key: string): bigint;
}

/** What the work of a multi-key `withLock` / `@WithLock` receives: every key held, with one signal for the set. */
export interface HeldLocks extends MultiLockGuard {
  /** One held lock per key, in the order of `keys`, each with its own fence and signal. */
  readonly locks: readonly HeldLock[];
  /**
   * Aborts as soon as any key's signal does: with that key's `LockLostError` when its lease is lost,
   * with an `AbortError` once the hold ends. Read like a held lock's signal, it checks every key's
   * local deadline first.
   */
  readonly signal: AbortSignal;
}

export interface TryAcquireOptions {
  /** Lease length in ms, an integer from 1 to 2^31-1. Defaults to the module's `ttl`. */
  ttl?: number;
  /**
   * The `lock.name` of the call's metrics and span (OpenTelemetry): a name of the call site, such as
   * `'orders.pay'`, never an id (each value is a new series). Default `'(unnamed)'`: the key is never
   * used, since it often carries ids. At most 255 UTF-8 bytes.
   */
  metricName?: string;
  /**
   * `'exclusive'` (the default): one holder at a time, the writer of a read-write lock. `'shared'`:
   * any number of shared holders at once, never together with an exclusive one; a waiting exclusive
   * caller is not overtaken by shared callers that came after it. See "Shared and limited locks".
   */
  mode?: 'exclusive' | 'shared';
  /**
   * At most this many holders of the key at once, across the fleet (an integer from 1 to 10,000):
   * each has its own lease, fence, watchdog, signal and release. Every caller of a limited key must
   * give the same limit; a call with another limit, or without one, while the key is held with a
   * limit fails with `InvalidLockOptionsError`. Not with `mode`.
   */
  limit?: number;
}

export interface AcquireOptions extends TryAcquireOptions {
  /**
   * How long to wait for a busy lock, in ms: 0 makes a single attempt, `Infinity` waits without
   * limit. Defaults to the module's `wait`.
   */
  wait?: number;
  /** Aborting it stops the wait at once: the call rejects with the signal's reason and leaves nothing held or queued. */
  signal?: AbortSignal;
}

export interface WithLockOptions extends AcquireOptions {
  /**
   * Keep the lease at least this long after the work started, in ms (an integer from 0 to 2^31-1;
   * default 0), even when the work ends sooner: the lease is then set to end at start + `minHold`
   * by one extension and left to expire, not released. Other instances whose own trigger fires a
   * little later (a `@Cron` on a skewed clock) then find the key still busy. Work that takes longer
   * is released as usual. The lease is not released at shutdown either.
   */
  minHold?: number;
}

/**
 * The lock service: inject it by type, `constructor(private readonly locks: DistributedLock)`.
 * Keys are strings of at most 1024 UTF-8 bytes; all times are milliseconds.
 */
export abstract class DistributedLock {
  /**
   * One attempt: the guard, or `null` when another holder has the key. With a list of keys (1 to 32,
   * no duplicates), one attempt per key in sorted order: every key or none (`null`, the keys taken
   * already given back).
   */
  abstract tryAcquire(key: string, options?: TryAcquireOptions): Promise<LockGuard | null>;
  abstract tryAcquire(keys: readonly string[], options?: TryAcquireOptions): Promise<MultiLockGuard | null>;

  /**
   * Waits up to `wait` for the key, woken by the release itself, in the order the waiters came.
   * Rejects with `LockTimeoutError` when the wait runs out, and with the signal's reason when the
   * signal aborts. With a list of keys, takes them one after another in sorted order within the one
   * `wait`; when one cannot be had, the keys taken already are released before the call rejects
   * (a `LockTimeoutError` names the busy key).
   */
  abstract acquire(key: string, options?: AcquireOptions): Promise<LockGuard>;
  abstract acquire(keys: readonly string[], options?: AcquireOptions): Promise<MultiLockGuard>;

  /**
   * Renews the lease for `ttl` (default: the TTL it was acquired with). False when the lease is no
   * longer this guard's: expired, released or taken over. A multi-key guard: every key is extended,
   * true only if all were.
   */
  abstract extend(guard: LockGuard, ttl?: number): Promise<boolean>;
  abstract extend(guard: MultiLockGuard, ttl?: number): Promise<boolean>;

  /**
   * Ends the lease. Idempotent; a no-op when it already expired or belongs to a later holder. A
   * multi-key guard: every key is released, all attempted even when one fails.
   */
  abstract release(guard: LockGuard): Promise<void>;
  abstract release(guard: MultiLockGuard): Promise<void>;

  /** The kind of backend the locks live in: 'memory', 'redis', 'postgres' or a third party's name. */
  abstract readonly backendName: string;

  /**
   * Leases this instance holds now: guards of `tryAcquire`/`acquire` not released and not yet ended
   * by their TTL, and the holds of `withLock`/`@WithLock` whose work runs (a `minHold` tail is not
   * counted: no work runs under it).
   */
  abstract readonly heldCount: number;

  /** Resolves when the backend answers, within `timeout` ms (default 1000); rejects with `LockBackendError` otherwise. */
  abstract ping(timeout?: number): Promise<void>;

  /**
   * Acquires the key, runs `fn` with the held lock, extends the lease every ttl/3 while `fn` runs
   * and releases it afterwards. Reentrant: a call on a key that the same async call chain already
   * holds runs `fn` at once inside the outer hold. Rejects with `LockLostError` when the lease was
   * lost before `fn` settled; `fn`'s own error is never replaced by a release error. With a list of
   * keys, `fn` runs once every key is held (taken in sorted order within the one `wait`) and gets
   * them all as `HeldLocks`.
   */
  abstract withLock<T>(key: string, fn: (lock: HeldLock) => T | Promise<T>, options?: WithLockOptions): Promise<T>;
  abstract withLock<T>(
    keys: readonly string[],
    fn: (locks: HeldLocks) => T | Promise<T>,
    options?: WithLockOptions,
  ): Promise<T>;
}
