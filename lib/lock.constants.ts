/** The package, as its meter and tracer are named (a unit test keeps the version equal to package.json's). */
export const PACKAGE_NAME = 'nestjs-distributed-lock';
export const PACKAGE_VERSION = '0.2.0';
/** Default lease length, in milliseconds. */
export const DEFAULT_TTL = 30_000;
/** Default time `acquire`, `withLock` and `@WithLock` wait for a busy lock, in milliseconds. */
export const DEFAULT_WAIT = 5_000;
/** Default prefix put in front of every key before it reaches the backend. */
export const DEFAULT_KEY_PREFIX = 'lock:';
/** Largest delay `setTimeout` honours; above it Node fires the timer at once. Also the largest TTL. */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;
/** Longest key, in UTF-8 bytes (the prefix not counted). */
export const MAX_KEY_BYTES = 1024;
/** Most keys one multi-key lock call may list. */
export const MAX_KEYS_PER_LOCK = 32;
/** Largest `limit` of a limited lock (at most this many holders of one key at once). */
export const MAX_LOCK_LIMIT = 10_000;
/** Longest key prefix, in UTF-8 bytes. */
export const MAX_KEY_PREFIX_BYTES = 256;
/** How long shutdown spends releasing the locks this process still holds, in milliseconds. */
export const SHUTDOWN_RELEASE_TIMEOUT = 2_000;

/** Metadata key under which `@WithLock` records its options on the method. */
export const WITH_LOCK_METADATA = 'LOCK:WITH_LOCK';
/**
 * An option `@WithLock({ onBusy: 'skip' })` passes to `withLock`: a busy key is then a skipped run
 * (`lock.outcome` 'skipped'), not a failure. A symbol: no options check lists it, no user sets it.
 */
export const SKIP_WHEN_BUSY = Symbol('nestjs-distributed-lock:skip-when-busy');
/** Where `@WithLock`'s options carry what was checked when the method was decorated. */
export const PRECHECKED_OPTIONS = Symbol('nestjs-distributed-lock:prechecked-options');
/** Property under which Nest injects `DistributedLock` into classes that use `@WithLock`. */
export const LOCK_SERVICE_PROPERTY = Symbol.for('nestjs-distributed-lock:service');

/**
 * The margin taken off a lease on the holder's side, for clock drift between the holder and the
 * backend and for timer lateness: 1% of the TTL plus 2 ms (the figure Redlock uses).
 */
export function driftMargin(ttl: number): number {
  return Math.floor(ttl / 100) + 2;
}

/**
 * The local deadline (monotonic) of a lease of `ttl` whose term began no earlier than `startedAt`:
 * the term is the ttl, or less where the backend vouches for less (`validFor`), drift taken off.
 */
export function localDeadline(startedAt: number, ttl: number, validFor = ttl): number {
  return startedAt + Math.min(ttl, validFor) - driftMargin(ttl);
}
