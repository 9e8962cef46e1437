import { Logger } from '@nestjs/common';
import type { AcquireResult, LockBackend, LockEvent } from './backends/lock-backend';
import type {
  AcquireOptions,
  HeldLock,
  LockGuard,
  TryAcquireOptions,
  WithLockOptions,
} from './distributed-lock';
import { DistributedLock } from './distributed-lock';
import { driftMargin, MAX_TIMER_DELAY, SHUTDOWN_RELEASE_TIMEOUT } from './lock.constants';
import { errorText, InvalidLockOptionsError, LockBackendError, LockError, LockLostError, LockTimeoutError } from './lock.errors';
import { monotonicNow, scheduleAt, settleWithin, toEpochMs } from './lock-clock';
import { findHeld, runHolding } from './lock-context';
import { newLockToken } from './lock-token';
import {
  describeValue,
  validateGuardShape,
  validateKey,
  validateOptionsObject,
  validateSignal,
  validateTtl,
  validateWait,
} from './lock.validation';
import { Watchdog, type StopWatch } from './watchdog';

/** Settings the service runs with, after the module's defaults were applied and checked. */
export interface DistributedLockSettings {
  backend: LockBackend;
  keyPrefix: string;
  ttl: number;
  wait: number;
}

/** How long past its next re-check a waiter's place in a backend queue lasts. */
const QUEUE_GRACE = 1_000;

/** A guard this service handed out. `expiresAt` moves forward with each confirmed extension. */
class Guard implements LockGuard {
  constructor(
    readonly key: string,
    readonly token: string,
    readonly fence: bigint,
    readonly acquiredAt: number,
    public expiresAt: number,
  ) {}

  /** Guards go into logs: fences are bigints, which JSON.stringify cannot write on its own. */
  toJSON(): Record<string, unknown> {
    return { key: this.key, token: this.token, fence: this.fence.toString(), acquiredAt: this.acquiredAt, expiresAt: this.expiresAt };
  }
}

class Held extends Guard implements HeldLock {
  constructor(key: string, token: string, fence: bigint, acquiredAt: number, expiresAt: number, readonly signal: AbortSignal) {
    super(key, token, fence, acquiredAt, expiresAt);
  }
}

/** What the service remembers of each lease it handed out and has not released yet. */
interface Lease {
  readonly guard: Guard;
  readonly backendKey: string;
  /** The token the lease was granted to (the guard's, kept here so that a release needs no re-check of the guard). */
  readonly token: string;
  readonly ttl: number;
  /** Set while the watchdog extends the lease (withLock). */
  stopWatch?: StopWatch;
  /** Aborts the holder's signal (withLock). */
  abort?: (reason: LockLostError) => void;
  /** Set once shutdown released it, so the work's own exit does not try again. */
  releasedAtShutdown?: boolean;
}

/** A granted lease, before it becomes a guard. */
interface Grant {
  token: string;
  fence: bigint;
  /** Monotonic lower bound of the moment the backend started the lease. */
  startedAt: number;
  /** Set when the backend vouches for less than the ttl until the first extension (ms from startedAt). */
  validFor?: number;
}

/** Set when a pending acquisition was abandoned (signal aborted): its loop stops at the next step. */
interface Cancellation {
  cancelled: boolean;
  wake?: () => void;
}

const CANCELLED = Symbol('cancelled');

/**
 * `DistributedLock` over any `LockBackend`: validation, defaults, waiting with deadline and signal,
 * the watchdog, reentrancy and error mapping are all here, once for every backend.
 */
export class DistributedLockService extends DistributedLock {
  private readonly logger = new Logger('DistributedLock');
  private readonly backend: LockBackend;
  private readonly keyPrefix: string;
  private readonly defaultTtl: number;
  private readonly defaultWait: number;
  private readonly watchdog: Watchdog;
  /** Guards handed out by this service, to find their lease and to refuse other services' guards. */
  private readonly leases = new WeakMap<object, Lease>();
  /** Leases not yet released, released at shutdown. */
  private readonly active = new Set<Lease>();
  /** Releases still running in the background (abandoned waits), awaited at shutdown. */
  private readonly cleanups = new Set<Promise<unknown>>();
  private shuttingDown = false;

  constructor(settings: DistributedLockSettings) {
    super();
    this.backend = settings.backend;
    this.keyPrefix = settings.keyPrefix;
    this.defaultTtl = settings.ttl;
    this.defaultWait = settings.wait;
    this.watchdog = new Watchdog((items) => this.extendBatch(items));
  }

  /** The backend this service runs on. */
  get backendName(): string {
    return this.backend.name;
  }

  /** Number of leases this service holds and has not released. */
  get heldCount(): number {
    return this.active.size;
  }

  async tryAcquire(key: string, options?: TryAcquireOptions): Promise<LockGuard | null> {
    validateKey(key);
    const opts = validateOptionsObject('tryAcquire options', options, ['ttl']);
    const ttl = opts.ttl === undefined ? this.defaultTtl : validateTtl(opts.ttl);
    const grant = await this.obtain(key, ttl, 0, undefined).catch((error: unknown) => {
      if (error instanceof LockTimeoutError) return null;
      throw error;
    });
    return grant && this.issue(key, ttl, grant).guard;
  }

  async acquire(key: string, options?: AcquireOptions): Promise<LockGuard> {
    const { ttl, wait, signal } = this.resolveOptions('acquire options', key, options);
    const grant = await this.obtain(key, ttl, wait, signal);
    return this.issue(key, ttl, grant).guard;
  }

  async extend(guard: LockGuard, ttl?: number): Promise<boolean> {
    const { key, token } = validateGuardShape(guard);
    const lease = this.leaseOf(guard);
    const leaseTtl = ttl === undefined ? (lease?.ttl ?? this.defaultTtl) : validateTtl(ttl);
    const sentAt = monotonicNow();
    const extended = await this.call(() => this.backend.extend(this.keyPrefix + key, token, leaseTtl));
    if (extended && lease) lease.guard.expiresAt = toEpochMs(sentAt + leaseTtl - driftMargin(leaseTtl));
    return extended;
  }

  async release(guard: LockGuard): Promise<void> {
    // A guard this service issued was checked when it was made: its lease says what to release.
    let lease = this.leases.get(guard);
    let backendKey: string;
    let token: string;
    if (lease) {
      backendKey = lease.backendKey;
      token = lease.token;
    } else {
      const shape = validateGuardShape(guard);
      lease = this.leaseOf(guard);
      backendKey = this.keyPrefix + shape.key;
      token = shape.token;
    }
    if (lease) this.forget(lease);
    try {
      await this.backend.release(backendKey, token);
    } catch (error) {
      throw this.backendFailure(error);
    }
  }

  async withLock<T>(key: string, fn: (lock: HeldLock) => T | Promise<T>, options?: WithLockOptions): Promise<T> {
    const { ttl, wait, signal } = this.resolveOptions('withLock options', key, options);
    if (typeof fn !== 'function') {
      throw new InvalidLockOptionsError(`Invalid withLock work: expected a function, got ${describeValue(fn)}`);
    }
    const outer = findHeld(this, key);
    if (outer) {
      if (outer.signal.aborted) throw outer.signal.reason;
      return runHolding(this, outer, () => fn(outer));
    }

    const grant = await this.obtain(key, ttl, wait, signal);
    const controller = new AbortController();
    const lease = this.issue(key, ttl, grant, controller.signal);
    const held = lease.guard as Held;
    lease.abort = (reason) => controller.abort(reason);
    lease.stopWatch = this.watchdog.watch(
      {
        key: lease.backendKey,
        token: grant.token,
        ttl,
        onConfirmed: (deadline) => {
          held.expiresAt = toEpochMs(deadline);
        },
        onLost: (detail) => controller.abort(new LockLostError(key, detail)),
      },
      grant.startedAt,
      grant.validFor,
    );

    let succeeded = false;
    let value: T | undefined;
    let failure: unknown;
    try {
      value = await runHolding(this, held, () => fn(held));
      succeeded = true;
    } catch (error) {
      failure = error;
    }
    // The watchdog stops before the release is sent, so no extension can follow the release.
    this.forget(lease);
    const lost = controller.signal.aborted ? (controller.signal.reason as LockLostError) : undefined;
    await this.releaseQuietly(lease, failure);
    if (lost) {
      throw new LockLostError(key, lost.detail, {
        workSucceeded: succeeded,
        cause: succeeded ? undefined : failure,
      });
    }
    if (!succeeded) throw failure;
    return value as T;
  }

  /**
   * Stops every watchdog, aborts the signals of work still running, releases what this process
   * holds (best effort, bounded in time) and closes the backend.
   */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.watchdog.stopAll();
    const leases = [...this.active];
    for (const lease of leases) {
      this.forget(lease);
      lease.releasedAtShutdown = true;
      lease.abort?.(new LockLostError(lease.guard.key, 'the application is shutting down'));
    }
    const releases = leases.map((lease) => this.backend.release(lease.backendKey, lease.guard.token));
    await settleWithin([...releases, ...this.cleanups], SHUTDOWN_RELEASE_TIMEOUT);
    await this.backend.close();
  }

  private resolveOptions(where: string, key: unknown, options: unknown): { ttl: number; wait: number; signal?: AbortSignal } {
    validateKey(key);
    const opts = validateOptionsObject(where, options, ['ttl', 'wait', 'signal']);
    return {
      ttl: opts.ttl === undefined ? this.defaultTtl : validateTtl(opts.ttl),
      wait: opts.wait === undefined ? this.defaultWait : validateWait(opts.wait),
      signal: validateSignal(opts.signal),
    };
  }

  /** Turns a grant into the guard handed to the caller: a `HeldLock` when a signal comes with it. */
  private issue(key: string, ttl: number, grant: Grant, signal?: AbortSignal): Lease {
    const acquiredAt = toEpochMs(monotonicNow());
    const expiresAt = toEpochMs(grant.startedAt + Math.min(ttl, grant.validFor ?? ttl) - driftMargin(ttl));
    const guard = signal
      ? new Held(key, grant.token, grant.fence, acquiredAt, expiresAt, signal)
      : new Guard(key, grant.token, grant.fence, acquiredAt, expiresAt);
    const lease: Lease = { guard, backendKey: this.keyPrefix + key, token: grant.token, ttl };
    this.leases.set(guard, lease);
    this.active.add(lease);
    return lease;
  }

  private leaseOf(guard: LockGuard): Lease | undefined {
    const lease = this.leases.get(guard);
    if (!lease && guard instanceof Guard) {
      throw new InvalidLockOptionsError(
        `Invalid guard: the guard of "${guard.key}" was issued by another DistributedLock (another module or backend); pass it to the instance that acquired it`,
      );
    }
    return lease;
  }

  private forget(lease: Lease): void {
    lease.stopWatch?.();
    lease.stopWatch = undefined;
    this.active.delete(lease);
  }

  private async releaseQuietly(lease: Lease, workError: unknown): Promise<void> {
    if (lease.releasedAtShutdown) return;
    try {
      await this.backend.release(lease.backendKey, lease.guard.token);
    } catch (error) {
      // The lease runs out by its TTL anyway; the work's own outcome is what the caller gets.
      this.logger.warn(
        `Releasing lock "${lease.guard.key}" failed (it will expire within its TTL): ${errorText(error)}` +
          (workError === undefined ? '' : ' (the work had failed too; its error is the one thrown)'),
      );
    }
  }

  /** Runs a backend call; any failure that is not already a LockError becomes a LockBackendError. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw this.backendFailure(error);
    }
  }

  /** A backend's failure as the service reports it: a LockError as it is, anything else as LockBackendError. */
  private backendFailure(error: unknown): LockError {
    return error instanceof LockError ? error : new LockBackendError(this.backend.name, errorText(error), { cause: error });
  }

  private async extendBatch(items: { key: string; token: string; ttl: number }[]): Promise<Array<boolean | Error>> {
    if (this.backend.extendMany) {
      try {
        return await this.backend.extendMany(items);
      } catch (error) {
        return items.map(() => error as Error);
      }
    }
    return Promise.all(
      items.map((item) =>
        this.backend.extend(item.key, item.token, item.ttl).catch((error: unknown) => error as Error),
      ),
    );
  }

  /** Releases `token` on `key` in the background: the wait was abandoned, nothing may stay held or queued. */
  private abandon(backendKey: string, token: string): void {
    const cleanup = this.backend.release(backendKey, token).catch((error: unknown) => {
      this.logger.warn(`Cleaning up an abandoned wait on "${backendKey}" failed: ${errorText(error)}`);
    });
    this.cleanups.add(cleanup);
    void cleanup.finally(() => this.cleanups.delete(cleanup));
  }

  /**
   * Takes the key for a new token, waiting up to `wait` ms. An aborted signal rejects at once with
   * its reason; the token's queue place, and any lease granted to it meanwhile, are released.
   */
  private obtain(key: string, ttl: number, wait: number, signal: AbortSignal | undefined): Promise<Grant> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const backendKey = this.keyPrefix + key;
    const token = newLockToken();
    const cancellation: Cancellation = { cancelled: false };
    // Without a signal nothing can cancel the wait: its outcome is the acquisition's.
    if (signal === undefined) return this.waitFor(key, backendKey, token, ttl, wait, cancellation);
    return new Promise<Grant>((resolve, reject) => {
      const onAbort = (): void => {
        cancellation.cancelled = true;
        cancellation.wake?.();
        reject(signal.reason);
        this.abandon(backendKey, token);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waitFor(key, backendKey, token, ttl, wait, cancellation).then(
        (grant) => {
          signal.removeEventListener('abort', onAbort);
          if (cancellation.cancelled) this.abandon(backendKey, token);
          else resolve(grant);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (!cancellation.cancelled) reject(error);
        },
      );
    });
  }

  private async waitFor(
    key: string,
    backendKey: string,
    token: string,
    ttl: number,
    wait: number,
    cancellation: Cancellation,
  ): Promise<Grant> {
    const started = monotonicNow();
    let first: AcquireResult;
    try {
      first = await this.backend.tryAcquire(backendKey, token, ttl);
    } catch (error) {
      throw this.backendFailure(error);
    }
    if (first.fence !== null) return { token, fence: first.fence, startedAt: started };
    if (wait === 0) throw new LockTimeoutError(key, monotonicNow() - started);
    if (cancellation.cancelled) throw CANCELLED;
    return this.waitInQueue(key, backendKey, token, ttl, started + wait, cancellation, started, first.retryIn);
  }

  /** The slow path of `waitFor`: listen first, then join the queue, so no release after this point goes unseen. */
  private async waitInQueue(
    key: string,
    backendKey: string,
    token: string,
    ttl: number,
    deadline: number,
    cancellation: Cancellation,
    started: number,
    firstRetryIn: number | undefined,
  ): Promise<Grant> {
    const inbox = new Inbox(token);
    const unsubscribe = await this.call(() => this.backend.subscribe(backendKey, (event) => inbox.push(event)));
    try {
      let retryIn = firstRetryIn;
      for (;;) {
        if (cancellation.cancelled) throw CANCELLED;
        const now = monotonicNow();
        if (now >= deadline) {
          this.abandon(backendKey, token);
          throw new LockTimeoutError(key, now - started);
        }
        const recheckAt = Math.min(deadline, now + this.recheckDelay(retryIn));
        const queueLease = Math.min(MAX_TIMER_DELAY, Math.ceil(recheckAt - now) + QUEUE_GRACE);
        const sentAt = now;
        const attempt = await this.call(() =>
          this.backend.tryAcquire(backendKey, token, ttl, { lease: queueLease }),
        );
        if (attempt.fence !== null) return { token, fence: attempt.fence, startedAt: sentAt };
        retryIn = attempt.retryIn;
        const lastBusyAt = sentAt;

        const wake = await inbox.next(Math.min(deadline, monotonicNow() + this.recheckDelay(retryIn)), cancellation);
        if (wake.type === 'granted') {
          // The lease began after our last busy answer was sent. When that bound is too old to
          // leave a useful estimate, one more attempt renews the lease and gives a fresh bound.
          if (monotonicNow() - lastBusyAt <= Math.min(ttl, wake.validFor ?? ttl) / 3) {
            return { token, fence: wake.fence, startedAt: lastBusyAt, validFor: wake.validFor };
          }
          retryIn = 0;
        }
      }
    } finally {
      unsubscribe();
    }
  }

  /** Delay before a waiter re-checks on its own: at the end of the holder's lease, or the backend's interval. */
  private recheckDelay(retryIn: number | undefined): number {
    const interval = this.backend.recheckInterval ?? Infinity;
    return Math.min(interval, retryIn === undefined ? Infinity : retryIn + 1);
  }
}

type Wake = { type: 'granted'; fence: bigint; validFor?: number } | { type: 'retry' };

/** Collects the events of one waiter and wakes it on a grant, a release, its timer or cancellation. */
class Inbox {
  private granted: bigint | undefined;
  private grantedValidFor: number | undefined;
  private released = false;
  private waker: (() => void) | undefined;

  constructor(private readonly token: string) {}

  push(event: LockEvent): void {
    if (event.type === 'granted') {
      if (event.token !== this.token) return;
      this.granted = event.fence;
      this.grantedValidFor = event.validFor;
    } else {
      this.released = true;
    }
    this.waker?.();
  }

  async next(until: number, cancellation: Cancellation): Promise<Wake> {
    if (this.granted === undefined && !this.released && !cancellation.cancelled && until > monotonicNow()) {
      await new Promise<void>((resolve) => {
        const cancelTimer = Number.isFinite(until) ? scheduleAt(until, () => wake()) : () => undefined;
        const wake = (): void => {
          cancelTimer();
          this.waker = undefined;
          cancellation.wake = undefined;
          resolve();
        };
        this.waker = wake;
        cancellation.wake = wake;
      });
    }
    this.released = false;
    if (this.granted !== undefined) {
      const fence = this.granted;
      this.granted = undefined;
      return { type: 'granted', fence, validFor: this.grantedValidFor };
    }
    return { type: 'retry' };
  }
}
