/**
 * The backend SPI: what a storage engine must do so that `DistributedLock` can run on it.
 *
 * A backend stores leases and nothing else. Validation, defaults, token generation, waiting with a
 * deadline and an AbortSignal, the watchdog, reentrancy and error mapping are done once, above this
 * interface, by the service. Keys reach the backend already prefixed and validated (non-empty,
 * well-formed UTF-16 without NUL, at most 1024 + 256 UTF-8 bytes); tokens are 32 lowercase hex
 * characters; TTLs are integers from 1 to 2^31-1 milliseconds.
 *
 * Rules every implementation keeps, as far as its `capabilities` claim them (the conformance kit,
 * `nestjs-distributed-lock/testing`, checks them):
 * 1. At most one token holds a key at a time, by the backend's own clock.
 * 2. A lease ends `ttl` ms after it was granted or last extended, by the backend's own clock,
 *    unless extended or released first.
 * 3. Every grant of a key returns a fence greater than every fence returned before for that key,
 *    across releases, expiries and restarts of the backend (`capabilities.fencing: 'strict'`; see
 *    `'per-node'` for the weaker promise).
 * 4. `extend` and `release` act only when the given token holds the key; they never touch another
 *    token's lease.
 * 5. Waiters that joined the queue of a key (`tryAcquire` with `queue`) get the key in the order
 *    they joined; a waiter that stops refreshing its place drops out after its queue lease
 *    (`capabilities.fifo: true`; a backend without a queue says `fifo: false`).
 * 6. A failure of the backend is thrown (any error; the service wraps it in `LockBackendError`),
 *    never reported as "busy" (`fence: null`) or "not held" (`false`).
 * 7. With `mode` (`tryAcquire`'s last argument, for the modes `capabilities.modes` claims), a key
 *    may have several holders, each with its own token, fence and lease, which it extends and
 *    releases by its token as an exclusive holder does:
 *    - `{ kind: 'shared' }`: any number of shared holders at once, never with an exclusive holder
 *      (a call without `mode`). A shared attempt is busy while an exclusive holder holds the key or
 *      a live waiter of any mode is queued ahead of it (any live waiter, when it is not queued), so
 *      a queued writer is never overtaken by readers that came after it.
 *    - `{ kind: 'limit', limit }`: at most `limit` holders at once. A key held with a limit is busy
 *      for a call with another limit, `shared` or no mode, and the answer says so (`heldWith`),
 *      as it does for a limited call on a key held exclusively or shared.
 *    Rule 1 becomes: at any moment the holders of a key are one exclusive holder, or shared holders
 *    only, or at most `limit` holders of that one limit. Rule 3 holds for every grant of every mode:
 *    each fence is greater than every fence granted before for the key. A release or expiry hands
 *    the key to the queue's oldest live waiters, in order, as many as may hold it together (one
 *    exclusive waiter; a run of shared waiters; up to the limit), stopping at the first that may not;
 *    so does a waiter that leaves the queue (a release of a token that holds nothing), for the
 *    waiters behind it that it held back.
 *
 * `tryAcquire` and `releaseWithHandOff`, the two calls of every lock, may answer with the result
 * itself rather than a promise of it, when the operation took effect before the call returned (the
 * memory backend does): the service then waits for nothing, and an uncontended `withLock` takes
 * no turn of the event loop of its own. A failure is still a rejected promise (or a throw); any
 * backend may keep returning promises.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- see the class below
export interface LockBackend {
  /** A short name for messages and errors, such as 'memory', 'redis' or 'postgres'. */
  readonly name: string;

  /**
   * Which of the rules above the backend keeps where some backends keep less (see
   * `LockBackendCapabilities`). Rules 1, 2, 4 and 6 have no flag: every backend keeps them. Left
   * out (a backend written before the flags existed), or a flag left out: the full rule, as the SPI
   * promised before; the conformance kit then checks the full rule.
   */
  readonly capabilities?: LockBackendCapabilities;

  /**
   * How often a waiter re-checks a key in case a wake-up was lost, in milliseconds. Backends whose
   * wake-ups cannot be lost (the memory backend) leave it undefined: waiters then make no call at
   * all while they wait, beyond one re-check when the holder's lease ends (`retryIn`).
   */
  readonly recheckInterval?: number;

  /**
   * One attempt to take `key` for `token` for `ttl` ms.
   *
   * - Free key (or expired lease), and no live waiter queued ahead of `token`: grant it and return
   *   the new fence.
   * - `token` already holds the key (the queue handed it over, perhaps with the wake-up lost):
   *   renew the lease to `ttl` ms from now and return its fence. The caller counts the lease from the
   *   moment it sent this call, so the renewal is what keeps that estimate conservative.
   * - Otherwise return `{ fence: null }`, with `retryIn` set to the time left on the current lease
   *   when the backend knows it. With `queue`, the token also joins the key's FIFO queue of waiters
   *   (or refreshes its place there) for `queue.lease` ms, and a later release or expiry of the key
   *   hands the lease straight to the queue's oldest live waiter, for the `ttl` it asked for, and
   *   emits a `granted` event.
   */
  tryAcquire(
    key: string,
    token: string,
    ttl: number,
    queue?: QueueOptions,
    mode?: LeaseMode,
  ): Promise<AcquireResult> | AcquireResult;

  /** Renews the lease to `ttl` ms from now when `token` holds `key`; false when it does not. */
  extend(key: string, token: string, ttl: number): Promise<boolean>;

  /**
   * Renews many leases at once, for the watchdog; one result per item, in order: true, false, or
   * the error that item's extension failed with (so one failing node of a cluster does not fail the
   * leases on the others). Optional: when a backend does not implement it, the service calls
   * `extend` for each item in the same tick.
   */
  extendMany?(items: readonly ExtendItem[]): Promise<Array<boolean | Error>>;

  /**
   * Ends `token`'s lease on `key` (handing the key to the oldest live queued waiter, if any) and
   * removes `token` from the key's queue. Returns true when a lease was ended. Calling it for a
   * token that holds nothing and waits for nothing is a harmless no-op.
   */
  release(key: string, token: string): Promise<boolean>;

  /**
   * `release`, also saying whom the release handed the key to (`handedTo`). Optional: when a
   * backend has it, the service calls it instead of `release` and wakes its own waiter for that
   * token at once from the answer, without waiting for the `granted` event; the event still comes
   * and is harmless (a waiter takes one grant of its token, however often it is told). A backend
   * without it is woken through its subscription alone, as before.
   */
  releaseWithHandOff?(key: string, token: string): Promise<ReleaseResult> | ReleaseResult;

  /**
   * Starts delivering the events of `key` to `listener`. Resolves once the subscription is live:
   * every release or hand-off after that moment reaches the listener (at most once, possibly late,
   * possibly never on a lossy transport, which is what `recheckInterval` covers). Resolves to the
   * function that stops the delivery. Listeners must not throw.
   */
  subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void>;

  /** Resolves when the backend answers; throws when it does not. */
  ping(): Promise<void>;

  /**
   * Stops the backend's timers and closes the connections it opened itself. Connections or clients
   * that the user passed in stay open: they belong to the user.
   */
  close(): Promise<void>;
}

/**
 * What a backend keeps of the rules that not every backend keeps in full.
 *
 * - `fifo` (rule 5): `true`: `tryAcquire` with `queue` puts the token in the key's FIFO queue, a
 *   release or expiry hands the key to the oldest live waiter with a `granted` event, and nobody
 *   overtakes a queued waiter. `false`: no queue; `queue` is ignored, waiters are woken by `released`
 *   events (and `recheckInterval`) and retry, so the key goes to whichever retry comes first: every
 *   waiter can still get it, but in no promised order.
 * - `modes` (rule 7): which of `'shared'` and `'limit'` `tryAcquire` takes as its `mode`.
 * - `fencing` (rule 3): `'strict'`: every grant's fence is greater than every fence granted before
 *   for the key, to any client, across releases, expiries and restarts. `'per-node'`: each server
 *   node keeps rule 3 for its own fences, and the backend reports a combination of them (the quorum
 *   backend: the highest of the granting majority); fences increase across the grants one backend
 *   object makes (in an app, one process), and across processes only as far as the nodes' clocks agree.
 */
export interface LockBackendCapabilities {
  readonly fifo?: boolean;
  readonly fencing?: 'strict' | 'per-node';
  /**
   * The modes of rule 7 the backend keeps, besides exclusive. Left out: none; the service refuses
   * a call in a mode its backend does not claim with `InvalidLockOptionsError`, before any call.
   */
  readonly modes?: readonly LeaseModeKind[];
}

/** Every rule in full: what a backend keeps when it declares no capabilities (no modes: rule 7 is new). */
export const FULL_CAPABILITIES: Required<LockBackendCapabilities> = Object.freeze({
  fifo: true,
  fencing: 'strict',
  modes: Object.freeze([]) as readonly LeaseModeKind[],
});

/** The capabilities `backend` claims, the flags it leaves out read as the full rule. */
export function capabilitiesOf(backend: Pick<LockBackend, 'capabilities'>): Required<LockBackendCapabilities> {
  return {
    fifo: backend.capabilities?.fifo ?? FULL_CAPABILITIES.fifo,
    fencing: backend.capabilities?.fencing ?? FULL_CAPABILITIES.fencing,
    modes: backend.capabilities?.modes ?? FULL_CAPABILITIES.modes,
  };
}

/** The modes of rule 7 besides exclusive, by name. */
export type LeaseModeKind = 'shared' | 'limit';

/**
 * How a lease shares its key with others (rule 7); absent: exclusive. `limit` is an integer from 1
 * to `MAX_LOCK_LIMIT`.
 */
export type LeaseMode = { readonly kind: 'shared' } | { readonly kind: 'limit'; readonly limit: number };

/** How a key is held, as a busy answer reports a conflict of modes: `'exclusive'`, `'shared'` or `'limit:<n>'`. */
export type HeldWith = 'exclusive' | 'shared' | `limit:${number}`;

/** Options of a queued attempt. */
export interface QueueOptions {
  /** How long the waiter's place in the queue lasts unless refreshed by another attempt, in ms. */
  lease: number;
}

export type AcquireResult = (
  | { fence: bigint }
  | {
      fence: null;
      /** Time left on the current holder's lease, in ms, when the backend knows it. */
      retryIn?: number;
      /**
       * Set when the key is held in a mode this attempt cannot share it with whatever the holder
       * does (rule 7: a limited key asked for with another limit or another mode, or the other way
       * round): the caller stops rather than wait. The attempt did not queue.
       */
      heldWith?: HeldWith;
    }
) & {
  /**
   * Set when the attempt found the lease expired and handed the key to the oldest queued waiter
   * (another token): the service wakes that waiter at once when it is its own. Optional, as for
   * `releaseWithHandOff`; the `granted` event still comes.
   */
  handedTo?: HandOff;
  /** Further hand-offs of the same call (rule 7: several waiters may take the key together). */
  alsoHandedTo?: readonly HandOff[];
};

/** A hand-off a call made: the key went to the queued waiter `token` (as told by a `granted` event). */
export interface HandOff {
  token: string;
  fence: bigint;
  /** As `validFor` of the `granted` event. */
  validFor?: number;
}

/** What `releaseWithHandOff` answers. */
export interface ReleaseResult {
  /** What `release` answers: true when a lease was ended. */
  released: boolean;
  /** Set when the release handed the key to a queued waiter. */
  handedTo?: HandOff;
  /** Further hand-offs of the same release (rule 7: several waiters may take the key together). */
  alsoHandedTo?: readonly HandOff[];
}

/**
 * A call's hand-offs as the fields of its answer: the first as `handedTo`, the others as
 * `alsoHandedTo`; nothing for none.
 */
export function handOffFields(
  handOffs: readonly HandOff[] | undefined,
): { handedTo?: HandOff; alsoHandedTo?: HandOff[] } | undefined {
  if (!handOffs || handOffs.length === 0) return undefined;
  return handOffs.length === 1 ? { handedTo: handOffs[0] } : { handedTo: handOffs[0], alsoHandedTo: handOffs.slice(1) };
}

/** Releases through `releaseWithHandOff` when the backend has it, else through `release`. */
export async function releaseOn(backend: LockBackend, key: string, token: string): Promise<ReleaseResult> {
  if (backend.releaseWithHandOff) return backend.releaseWithHandOff(key, token);
  return { released: await backend.release(key, token) };
}

export interface ExtendItem {
  key: string;
  token: string;
  ttl: number;
}

/** What a subscription delivers. */
export type LockEvent =
  /** The key was released or expired with nobody queued: waiters should try again. */
  | { type: 'released'; key: string }
  /**
   * The key was handed to the queued waiter `token` with fence `fence`. `validFor` (ms), when set:
   * the backend can vouch for the lease only that long from the hand-off, less than the ttl asked
   * for, until the holder's first extension (a hand-off not yet on disk; see the PostgreSQL backend).
   * The holder's local deadline is then counted from it.
   */
  | { type: 'granted'; key: string; token: string; fence: bigint; validFor?: number };

/**
 * The injection token of the backend that `LockModule` uses: this abstract class itself, so that
 * `constructor(private readonly backend: LockBackend)` resolves without `@Inject`, and so that the
 * name is a value, which `isolatedModules` + `emitDecoratorMetadata` need in a decorated signature.
 * The interface above merges into it; a backend implements it (`implements LockBackend`).
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- a token, never instantiated
export abstract class LockBackend {}

/** The same token under its earlier name: `@Inject(LOCK_BACKEND)` keeps working. */
export const LOCK_BACKEND = LockBackend;
