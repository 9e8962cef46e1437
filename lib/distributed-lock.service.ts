import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import { releaseOn, type HandOff, type LockBackend } from './backends/lock-backend';
import { BackgroundWork } from './background-work';
import type { AcquireOptions, HeldLock, LockGuard, TryAcquireOptions, WithLockOptions } from './distributed-lock';
import { DistributedLock } from './distributed-lock';
import { driftMargin, SHUTDOWN_RELEASE_TIMEOUT } from './lock.constants';
import {
  errorText,
  InvalidLockOptionsError,
  LockBackendError,
  LockError,
  LockLostError,
  LockTimeoutError,
} from './lock.errors';
import { Acquisition, type AcquisitionHost, type Grant } from './lock-acquisition';
import { monotonicNow, scheduleAt, settleWithin, toEpochMs } from './lock-clock';
import { findHold, runHolding } from './lock-context';
import { Guard, WithLockLease, type Lease } from './held-lock';
import { LeaseExpiries } from './lease-expiries';
import {
  describeValue,
  validateGuardShape,
  validateKey,
  validateMinHold,
  validateOptionsObject,
  validateSignal,
  validateTtl,
  validateWait,
} from './lock.validation';
import { Watchdog } from './watchdog';

/** Settings the service runs with, after the module's defaults were applied and checked. */
export interface DistributedLockSettings {
  backend: LockBackend;
  keyPrefix: string;
  ttl: number;
  wait: number;
}

/** How long `ping()` waits for the backend by default. */
const DEFAULT_PING_TIMEOUT = 1_000;

const ACQUIRE_OPTIONS = ['ttl', 'wait', 'signal'] as const;
const WITH_LOCK_OPTIONS = [...ACQUIRE_OPTIONS, 'minHold'] as const;

/**
 * `DistributedLock` over any `LockBackend`: validation, defaults, waiting with deadline and signal,
 * the watchdog, reentrancy and error mapping are all here, once for every backend.
 */
export class DistributedLockService extends DistributedLock implements OnApplicationShutdown {
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
  /** When the leases of `tryAcquire`/`acquire` end by their TTL if nobody releases them: then they are forgotten. */
  private readonly expiries = new LeaseExpiries<Lease>((lease) => this.active.delete(lease));
  /** Releases still running in the background (abandoned waits), awaited at shutdown. */
  private readonly cleanups = new BackgroundWork();
  /** What acquisitions need from the service; its `waiting` set holds the waits in progress. */
  private readonly host: AcquisitionHost;
  private shuttingDown = false;

  constructor(settings: DistributedLockSettings) {
    super();
    this.backend = settings.backend;
    this.keyPrefix = settings.keyPrefix;
    this.defaultTtl = settings.ttl;
    this.defaultWait = settings.wait;
    this.watchdog = new Watchdog((items) => this.extendBatch(items));
    this.host = {
      backend: this.backend,
      backendFailure: (error) => this.backendFailure(error),
      giveBack: (backendKey, token) => this.giveBack(backendKey, token),
      handedOver: (backendKey, handOff) => this.handedOver(backendKey, handOff),
      waiting: new Map(),
    };
  }

  /** The backend this service runs on. */
  get backendName(): string {
    return this.backend.name;
  }

  /** Number of leases this service holds and has not released. */
  get heldCount(): number {
    return this.active.size;
  }

  async ping(timeout = DEFAULT_PING_TIMEOUT): Promise<void> {
    const ms = validateTtl(timeout, 'ping timeout');
    let cancel: (() => void) | undefined;
    try {
      await Promise.race([
        this.backend.ping(),
        new Promise<never>((_, reject) => {
          cancel = scheduleAt(monotonicNow() + ms, () =>
            reject(new LockBackendError(this.backend.name, `the backend did not answer a ping within ${ms} ms`)),
          );
        }),
      ]);
    } catch (error) {
      throw this.backendFailure(error);
    } finally {
      cancel?.();
    }
  }

  async tryAcquire(key: string, options?: TryAcquireOptions): Promise<LockGuard | null> {
    validateKey(key);
    const opts = validateOptionsObject('tryAcquire options', options, ['ttl']);
    const ttl = opts.ttl === undefined ? this.defaultTtl : validateTtl(opts.ttl);
    const grant = await this.obtain(key, ttl, 0, undefined).catch((error: unknown) => {
      if (error instanceof LockTimeoutError) return null;
      throw error;
    });
    return grant && this.issue(key, ttl, grant);
  }

  async acquire(key: string, options?: AcquireOptions): Promise<LockGuard> {
    const { ttl, wait, signal } = this.resolveOptions('acquire options', key, options);
    const grant = await this.obtain(key, ttl, wait, signal);
    return this.issue(key, ttl, grant);
  }

  async extend(guard: LockGuard, ttl?: number): Promise<boolean> {
    const { key, token } = validateGuardShape(guard);
    const lease = this.leaseOf(guard);
    const leaseTtl = ttl === undefined ? (lease?.ttl ?? this.defaultTtl) : validateTtl(ttl);
    const held = lease instanceof WithLockLease ? lease : undefined;
    // A lease that withLock no longer counts as held stays that way.
    if (held && !held.live()) return false;
    const sentAt = monotonicNow();
    // The watchdog learns of the extension before it leaves: its ttl is the lease's from now on.
    const settle = held?.watch?.extending(sentAt, leaseTtl);
    let extended: boolean;
    try {
      extended = await this.backend.extend(this.keyPrefix + key, token, leaseTtl);
    } catch (error) {
      settle?.(error as Error);
      throw this.backendFailure(error);
    }
    settle?.(extended);
    if (held?.watch) {
      if (extended) held.guard.expiresAt = toEpochMs(held.watch.deadline);
      return extended && held.live();
    }
    if (extended && lease) {
      lease.guard.expiresAt = toEpochMs(sentAt + leaseTtl - driftMargin(leaseTtl));
      // Renewed: held again until the new end, even if it had been forgotten as ended.
      this.active.add(lease);
      this.expiries.set(lease, this.endOf(leaseTtl));
    }
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
    if (lease instanceof WithLockLease) {
      // Released inside its own work: the hold ends now, for every async context that carries it.
      if (lease.ended || lease.releasedAtShutdown) return;
      lease.end('released');
    }
    if (lease) this.forget(lease);
    try {
      await this.releaseOnBackend(backendKey, token);
    } catch (error) {
      throw this.backendFailure(error);
    }
  }

  async withLock<T>(key: string, fn: (lock: HeldLock) => T | Promise<T>, options?: WithLockOptions): Promise<T> {
    const { ttl, wait, signal } = this.resolveOptions('withLock options', key, options, WITH_LOCK_OPTIONS);
    const minHold = options?.minHold === undefined ? 0 : validateMinHold(options.minHold, 'withLock minHold');
    if (typeof fn !== 'function') {
      throw new InvalidLockOptionsError(`Invalid withLock work: expected a function, got ${describeValue(fn)}`);
    }
    const outer = findHold(this, key) as WithLockLease | undefined;
    if (outer) return this.runReentrant(outer, fn);

    const grant = await this.obtain(key, ttl, wait, signal);
    const lease = this.issueHeld(key, ttl, grant);
    if (lease.watch!.deadline <= monotonicNow()) {
      // The grant came back after its own local deadline (a stalled network or backend): the lease
      // may already have ended and gone to someone else, so the work must not run under it.
      lease.end('ended');
      this.forget(lease);
      this.giveBack(lease.backendKey, lease.token);
      throw new LockBackendError(
        this.backend.name,
        `the grant of "${key}" came back after its local deadline (ttl ${ttl} ms): the backend or the network ` +
          'was too slow for this ttl, so the work was not run',
      );
    }
    const workStartedAt = monotonicNow();
    let succeeded = false;
    let value: T | undefined;
    let failure: unknown;
    try {
      value = await runHolding(lease, () => fn(lease.guard));
      succeeded = true;
    } catch (error) {
      failure = error;
    }
    // Was the lease confirmed until the work settled? A deadline passed while the loop was blocked shows here.
    lease.live();
    const releasedByHolder = lease.state === 'released';
    // The hold ends (watchdog stopped, signal aborted) before the release is sent, so no extension
    // can follow the release and no callback that escaped the work counts it as held.
    lease.end('ended');
    this.forget(lease);
    let lost = lease.lost;
    if (!releasedByHolder && !lease.releasedAtShutdown) {
      const left = Math.ceil(minHold - (monotonicNow() - workStartedAt));
      // minHold: the lease stays until start + minHold, then ends by itself; a lost one is released.
      const ended = !lost && left >= 1 ? await this.keepFor(lease, left) : await this.releaseQuietly(lease, failure);
      if (ended === false && !lost) {
        lost = new LockLostError(
          key,
          'the lease was already gone when the work ended: it expired or was removed from the backend while the work ran (evicted, flushed, failed over)',
        );
        this.reportLost(lease, lost.detail);
      }
    }
    if (lost) {
      throw new LockLostError(key, lost.detail, { workSucceeded: succeeded, cause: succeeded ? undefined : failure });
    }
    if (!succeeded) throw failure;
    return value as T;
  }

  /** Nest's shutdown hook: the service shuts itself down when the application does. */
  onApplicationShutdown(): Promise<void> {
    return this.shutdown();
  }

  /**
   * Ends the waits in progress, stops every watchdog, aborts the signals of work still running,
   * releases what this process holds (best effort, bounded in time) and closes the backend.
   * Idempotent.
   */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    const waits = [...this.host.waiting.values()].map((acquisition) => {
      acquisition.stop(new LockBackendError(this.backend.name, 'the application is shutting down'));
      return acquisition.finished!;
    });
    this.watchdog.stopAll();
    this.expiries.clear();
    const leases = [...this.active];
    for (const lease of leases) {
      this.forget(lease);
      lease.releasedAtShutdown = true;
      if (lease instanceof WithLockLease)
        lease.lose(new LockLostError(lease.guard.key, 'the application is shutting down'));
    }
    const releases = leases.map((lease) => this.releaseOnBackend(lease.backendKey, lease.token));
    // Stopped waits give back what they may hold once their last call returns.
    await settleWithin([...releases, ...waits], SHUTDOWN_RELEASE_TIMEOUT);
    await this.cleanups.settle(SHUTDOWN_RELEASE_TIMEOUT);
    await this.backend.close();
  }

  private async runReentrant<T>(outer: WithLockLease, fn: (lock: HeldLock) => T | Promise<T>): Promise<T> {
    // A surrounding hold whose lease was lost: the work should stop, not run as if it held the key.
    if (!outer.live()) throw outer.lost!;
    let value: T;
    try {
      value = await runHolding(outer, () => fn(outer.guard));
    } catch (error) {
      if (outer.lost)
        throw new LockLostError(outer.guard.key, outer.lost.detail, { workSucceeded: false, cause: error });
      throw error;
    }
    if (!outer.live() && outer.lost)
      throw new LockLostError(outer.guard.key, outer.lost.detail, { workSucceeded: true });
    return value;
  }

  private resolveOptions(
    where: string,
    key: unknown,
    options: unknown,
    allowed: readonly string[] = ACQUIRE_OPTIONS,
  ): { ttl: number; wait: number; signal?: AbortSignal } {
    validateKey(key);
    const opts = validateOptionsObject(where, options, allowed);
    return {
      ttl: opts.ttl === undefined ? this.defaultTtl : validateTtl(opts.ttl),
      wait: opts.wait === undefined ? this.defaultWait : validateWait(opts.wait),
      signal: validateSignal(opts.signal),
    };
  }

  /** Takes the key for a new token, waiting up to `wait` ms (see `Acquisition`). */
  private obtain(key: string, ttl: number, wait: number, signal: AbortSignal | undefined): Promise<Grant> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Acquisition(this.host, key, this.keyPrefix + key, ttl, wait).run(signal);
  }

  private expiresAtOf(ttl: number, grant: Grant): number {
    return toEpochMs(grant.startedAt + Math.min(ttl, grant.validFor ?? ttl) - driftMargin(ttl));
  }

  /** Turns a grant into the guard handed to the caller of `tryAcquire` / `acquire`. */
  private issue(key: string, ttl: number, grant: Grant): Guard {
    const guard = new Guard(key, grant.token, grant.fence, toEpochMs(monotonicNow()), this.expiresAtOf(ttl, grant));
    const lease: Lease = { guard, backendKey: this.keyPrefix + key, token: grant.token, ttl };
    this.leases.set(guard, lease);
    this.active.add(lease);
    this.expiries.set(lease, this.endOf(ttl));
    return guard;
  }

  /**
   * A monotonic time by which a lease of `ttl` granted or renewed by an answer that just arrived has
   * certainly ended at the backend (the backend started it before it answered), drift included.
   */
  private endOf(ttl: number): number {
    return monotonicNow() + ttl + driftMargin(ttl);
  }

  /** Logs a lost lease the moment it is found lost: the work should stop. */
  private reportLost(lease: WithLockLease, detail: string): void {
    this.logger.warn(
      `Lock "${lease.guard.key}" (fence ${lease.guard.fence}) was lost: ${detail}. ` +
        'The work under it no longer runs exclusively and should stop; its signal is aborted.',
    );
  }

  /** Turns a grant into the lease `withLock` holds, under the watchdog's care. */
  private issueHeld(key: string, ttl: number, grant: Grant): WithLockLease {
    const lease = new WithLockLease(
      this,
      this.keyPrefix + key,
      ttl,
      grant.token,
      key,
      grant.fence,
      toEpochMs(monotonicNow()),
      this.expiresAtOf(ttl, grant),
    );
    this.leases.set(lease.guard, lease);
    this.active.add(lease);
    lease.watch = this.watchdog.watch(
      {
        key: lease.backendKey,
        token: grant.token,
        ttl,
        onConfirmed: (deadline) => {
          lease.guard.expiresAt = toEpochMs(deadline);
        },
        onLost: (detail) => {
          lease.lose(new LockLostError(key, detail));
          this.reportLost(lease, detail);
        },
      },
      grant.startedAt,
      grant.validFor,
    );
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
    if (lease instanceof WithLockLease) lease.watch?.stop();
    this.active.delete(lease);
    this.expiries.delete(lease);
  }

  /**
   * Sets the lease to end `ms` from now (minHold) and leaves it to expire. True/false as the backend
   * answered; undefined when it failed (logged: the lease then ends by its TTL).
   */
  private async keepFor(lease: Lease, ms: number): Promise<boolean | undefined> {
    try {
      return await this.backend.extend(lease.backendKey, lease.token, ms);
    } catch (error) {
      this.logger.warn(
        `Keeping lock "${lease.guard.key}" for its minHold failed (it ends by its TTL instead): ${errorText(error)}`,
      );
      return undefined;
    }
  }

  /** Releases the lease after its work; true/false as the backend answered, undefined when it failed (logged). */
  private async releaseQuietly(lease: Lease, workError: unknown): Promise<boolean | undefined> {
    try {
      return await this.releaseOnBackend(lease.backendKey, lease.token);
    } catch (error) {
      // The lease runs out by its TTL anyway; the work's own outcome is what the caller gets.
      this.logger.warn(
        `Releasing lock "${lease.guard.key}" failed (it will expire within its TTL): ${errorText(error)}` +
          (workError === undefined ? '' : ' (the work had failed too; its error is the one thrown)'),
      );
      return undefined;
    }
  }

  /** A backend's failure as the service reports it: a LockError as it is, anything else as LockBackendError. */
  private backendFailure(error: unknown): LockError {
    return error instanceof LockError
      ? error
      : new LockBackendError(this.backend.name, errorText(error), { cause: error });
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
  private giveBack(backendKey: string, token: string): void {
    this.cleanups.run(this.releaseOnBackend(backendKey, token), (error) => {
      this.logger.warn(`Cleaning up an abandoned wait on "${backendKey}" failed: ${errorText(error)}`);
    });
  }

  /**
   * Releases `token` on `backendKey`; when the backend says it handed the key to a waiter of this
   * service, that waiter is woken now rather than by the event that follows. True when a lease was ended.
   */
  private async releaseOnBackend(backendKey: string, token: string): Promise<boolean> {
    const { released, handedTo } = await releaseOn(this.backend, backendKey, token);
    if (handedTo) this.handedOver(backendKey, handedTo);
    return released;
  }

  /** A call of this service handed `backendKey` to `handOff.token`: its waiter, if it is ours, is woken. */
  private handedOver(backendKey: string, handOff: HandOff): void {
    this.host.waiting.get(handOff.token)?.handedOver(backendKey, handOff);
  }
}
