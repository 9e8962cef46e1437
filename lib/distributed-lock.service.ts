import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import { capabilitiesOf, type AcquireResult, type LeaseModeKind, type LockBackend } from './backends/lock-backend';
import { BackendCalls } from './backend-calls';
import type { AcquireOptions, HeldLock, LockGuard, TryAcquireOptions, WithLockOptions } from './distributed-lock';
import type { HeldLocks, MultiLockGuard } from './distributed-lock';
import { DistributedLock } from './distributed-lock';
import { SHUTDOWN_RELEASE_TIMEOUT } from './lock.constants';
import { InvalidLockOptionsError, LockBackendError, LockLostError, LockTimeoutError } from './lock.errors';
import { Acquisition, type Grant } from './lock-acquisition';
import {
  ACQUIRE_OPTIONS,
  readCallOptions,
  TRY_ACQUIRE_OPTIONS,
  WITH_LOCK_OPTIONS,
  type CallOptions,
} from './lock-call-options';
import { monotonicNow, settleWithin } from './lock-clock';
import { findHold, runHolding } from './lock-context';
import { runReentrant } from './reentrant-hold';
import { Guard, WithLockLease, type Lease } from './held-lock';
import { LeaseRegistry } from './lease-registry';
import { checkModeSupported, checkReentrantMode } from './lease-modes';
import { refusedGrant, waitFailed } from './wait-outcomes';
import { isKeyList, isMultiGuard, MultiKeyLocks } from './multi-key-lock';
import { describeValue, validateGuardShape, validateTtl } from './lock.validation';
import { telemetrySetting, type LockTelemetry, type TelemetrySetting } from './telemetry/lock-telemetry';
import { ServiceTelemetry } from './telemetry/service-telemetry';
import { isThenable } from './thenable';

/** Settings the service runs with, after the module's defaults were applied and checked. */
export interface DistributedLockSettings {
  backend: LockBackend;
  keyPrefix: string;
  ttl: number;
  wait: number;
  /** What telemetry to record; left out, as the module's default (on where `@opentelemetry/api` is installed). */
  telemetry?: TelemetrySetting;
}

/** The work of a `withLock` call: given the held lock, or for a list of keys the held set. */
type Work<T, L> = (lock: L) => T | Promise<T>;
/** A key, or a list of keys (a multi-key lock). */
type Keys = string | readonly string[];

/** How long `ping()` waits for the backend by default. */
const DEFAULT_PING_TIMEOUT = 1_000;

/**
 * `DistributedLock` over any `LockBackend`: validation, defaults, waiting with deadline and signal
 * (`Acquisition`), the leases handed out and their watchdog (`LeaseRegistry`), the backend's other
 * calls and their failures (`BackendCalls`), reentrancy and telemetry are all done here, once for
 * every backend. This class is the public API over them, and the shutdown; a list of keys goes to
 * `MultiKeyLocks`, which makes multi-key locks of these single-key calls.
 */
export class DistributedLockService extends DistributedLock implements OnApplicationShutdown {
  private readonly logger = new Logger('DistributedLock');
  private readonly backend: LockBackend;
  private readonly keyPrefix: string;
  private readonly defaults: { readonly ttl: number; readonly wait: number };
  private readonly telemetry: ServiceTelemetry;
  private readonly calls: BackendCalls;
  private readonly leases: LeaseRegistry;
  private readonly multi: MultiKeyLocks;
  /** The modes besides exclusive that the backend keeps. */
  private readonly modes: readonly LeaseModeKind[];
  private shuttingDown = false;

  constructor(settings: DistributedLockSettings) {
    super();
    this.backend = settings.backend;
    this.keyPrefix = settings.keyPrefix;
    this.defaults = { ttl: settings.ttl, wait: settings.wait };
    this.telemetry = new ServiceTelemetry(settings.telemetry ?? telemetrySetting(undefined), this.backend.name);
    this.calls = new BackendCalls(this.backend, this.telemetry, this.logger);
    this.leases = new LeaseRegistry(this.calls, this.telemetry, this.logger);
    this.multi = new MultiKeyLocks(this, this.defaults, this.logger);
    this.modes = capabilitiesOf(this.backend).modes;
  }

  /** The backend this service runs on. */
  get backendName(): string {
    return this.backend.name;
  }

  /** Number of leases this service holds and has not released. */
  get heldCount(): number {
    return this.leases.size;
  }

  ping(timeout = DEFAULT_PING_TIMEOUT): Promise<void> {
    let ms: number;
    try {
      ms = validateTtl(timeout, 'ping timeout');
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return this.calls.ping(ms);
  }

  tryAcquire(key: string, options?: TryAcquireOptions): Promise<LockGuard | null>;
  tryAcquire(keys: readonly string[], options?: TryAcquireOptions): Promise<MultiLockGuard | null>;
  async tryAcquire(key: Keys, options?: TryAcquireOptions): Promise<LockGuard | MultiLockGuard | null> {
    if (isKeyList(key)) return this.multi.tryAcquire(key, options);
    const call = readCallOptions('tryAcquire', key, options, TRY_ACQUIRE_OPTIONS, this.defaults);
    const telemetry = this.telemetry.current;
    const acquisition = this.acquisition(key, call, 0);
    let grant: Grant;
    try {
      grant = await acquisition.run(undefined);
    } catch (error) {
      waitFailed(telemetry, acquisition, call, error, this.shuttingDown);
      if (error instanceof LockTimeoutError) return null;
      throw error;
    }
    return this.issue(telemetry, acquisition, key, call, grant);
  }

  acquire(key: string, options?: AcquireOptions): Promise<LockGuard>;
  acquire(keys: readonly string[], options?: AcquireOptions): Promise<MultiLockGuard>;
  async acquire(key: Keys, options?: AcquireOptions): Promise<LockGuard | MultiLockGuard> {
    if (isKeyList(key)) return this.multi.acquire(key, options);
    const call = readCallOptions('acquire', key, options, ACQUIRE_OPTIONS, this.defaults);
    const telemetry = this.telemetry.current;
    const acquisition = this.acquisition(key, call, call.wait);
    let grant: Grant;
    try {
      grant = await this.obtain(acquisition, call.signal);
    } catch (error) {
      waitFailed(telemetry, acquisition, call, error, this.shuttingDown);
      throw error;
    }
    return this.issue(telemetry, acquisition, key, call, grant);
  }

  async extend(guard: LockGuard | MultiLockGuard, ttl?: number): Promise<boolean> {
    if (isMultiGuard(guard)) return this.multi.extend(guard, ttl);
    const { key, token } = validateGuardShape(guard);
    const lease = this.leases.leaseOf(guard);
    const leaseTtl = ttl === undefined ? (lease?.ttl ?? this.defaults.ttl) : validateTtl(ttl);
    return this.leases.extend(lease, this.keyPrefix + key, token, leaseTtl);
  }

  async release(guard: LockGuard | MultiLockGuard): Promise<void> {
    if (isMultiGuard(guard)) return this.multi.release(guard);
    // A guard this service issued was checked when it was made: its lease says what to release.
    let lease = Guard.leaseOf(guard);
    let backendKey: string;
    let token: string;
    if (lease && lease.owner === this.leases) {
      backendKey = lease.backendKey;
      token = lease.token;
    } else {
      const shape = validateGuardShape(guard);
      lease = this.leases.leaseOf(guard);
      backendKey = this.keyPrefix + shape.key;
      token = shape.token;
    }
    if (lease instanceof WithLockLease) {
      // Released inside its own work: the hold ends now, for every async context that carries it.
      if (lease.ended || lease.releasedAtShutdown) return;
      lease.end('released');
    }
    if (lease) {
      lease.released = true;
      this.leases.forget(lease);
    }
    try {
      await this.calls.releaseAndHandOver(backendKey, token);
    } catch (error) {
      throw this.calls.backendFailure(error, 'release');
    }
  }

  withLock<T>(key: string, fn: (lock: HeldLock) => T | Promise<T>, options?: WithLockOptions): Promise<T>;
  withLock<T>(keys: readonly string[], fn: (locks: HeldLocks) => T | Promise<T>, options?: WithLockOptions): Promise<T>;
  async withLock<T>(key: Keys, work: Work<T, never>, options?: WithLockOptions): Promise<T> {
    if (isKeyList(key)) return this.multi.withLock(key, work as Work<T, HeldLocks>, options);
    const fn = work as Work<T, HeldLock>;
    const call = readCallOptions('withLock', key, options, WITH_LOCK_OPTIONS, this.defaults);
    if (typeof fn !== 'function') {
      throw new InvalidLockOptionsError(`Invalid withLock work: expected a function, got ${describeValue(fn)}`);
    }
    const telemetry = this.telemetry.current;
    const outer = findHold(this.leases, key) as WithLockLease | undefined;
    if (outer) {
      checkReentrantMode(key, outer.mode, call.mode);
      return runReentrant(outer, fn, telemetry.tracing ? telemetry.startSpan(call.name, key, true) : undefined);
    }
    const acquisition = this.acquisition(key, call, call.wait);
    const span = telemetry.tracing ? telemetry.startSpan(call.name, key, false) : undefined;
    let grant: Grant;
    try {
      if (call.signal) grant = await this.obtain(acquisition, call.signal);
      else {
        // The uncontended path awaits the backend's own promise, and nothing else: none at all when the
        // backend answered at once (the memory backend), and then the work starts within this call.
        let first: AcquireResult;
        try {
          const attempt = acquisition.firstAttempt();
          first = isThenable(attempt) ? await attempt : attempt;
        } catch (error) {
          throw acquisition.failed(error);
        }
        const answer = acquisition.answered(first);
        grant = answer instanceof Promise ? await answer : answer;
      }
    } catch (error) {
      const outcome = waitFailed(telemetry, acquisition, call, error, this.shuttingDown);
      span?.end(outcome, outcome === 'skipped' ? undefined : error);
      throw error;
    }
    const now = monotonicNow();
    const refused = refusedGrant(this.calls, telemetry, acquisition, call, grant, now, this.shuttingDown);
    if (refused) {
      span?.end(refused.outcome, refused.error);
      throw refused.error;
    }
    if (telemetry.on) telemetry.waited(call.name, 'acquired', now - acquisition.started);
    span?.acquired(grant.fence);
    const lease = this.leases.issueHeld(telemetry, acquisition.backendKey, key, call, grant, now);
    lease.span = span;
    lease.mode = call.mode;

    let succeeded = false;
    let value: T | undefined;
    let failure: unknown;
    try {
      const result = span
        ? span.run((guard) => runHolding(lease, fn, guard), lease.guard)
        : runHolding(lease, fn, lease.guard);
      // Work that returns no promise is not awaited: it is over, and its lease is checked now.
      value = isThenable(result) ? await result : result;
      succeeded = true;
    } catch (error) {
      failure = error;
    }
    const ending = this.leases.endHold(lease, call.minHold, now, failure);
    const lost = isThenable(ending) ? await ending : ending;
    if (lost) {
      const error = new LockLostError(key, lost.detail, {
        workSucceeded: succeeded,
        cause: succeeded ? undefined : failure,
      });
      span?.end('acquired', error);
      throw error;
    }
    if (!succeeded) {
      span?.end('acquired', failure);
      throw failure;
    }
    span?.end('acquired');
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
    this.calls.closing = true;
    const waits = [...this.calls.waiting.values()].map((acquisition) => {
      acquisition.stop(new LockBackendError(this.backend.name, 'the application is shutting down'));
      return acquisition.finished!;
    });
    const releases = this.leases
      .endAll()
      .map((lease: Lease) => this.calls.releaseAndHandOver(lease.backendKey, lease.token));
    // Stopped waits give back what they may hold once their last call returns.
    await settleWithin([...releases, ...waits], SHUTDOWN_RELEASE_TIMEOUT);
    await this.calls.settleGiveBacks(SHUTDOWN_RELEASE_TIMEOUT);
    await this.backend.close();
  }

  /** A new acquisition of `key` for one call, in a mode the backend keeps. */
  private acquisition(key: string, call: CallOptions, wait: number): Acquisition {
    checkModeSupported(this.backend.name, this.modes, call.mode);
    return new Acquisition(this.calls, key, this.keyPrefix + key, call.ttl, wait, call.mode);
  }

  /** Takes the key for the acquisition's token (see `Acquisition`). */
  private obtain(acquisition: Acquisition, signal: AbortSignal | undefined): Promise<Grant> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return acquisition.run(signal);
  }

  /** Turns a grant into the guard handed to the caller of `tryAcquire` / `acquire`. */
  private issue(
    telemetry: LockTelemetry,
    acquisition: Acquisition,
    key: string,
    call: CallOptions,
    grant: Grant,
  ): Guard {
    const now = monotonicNow();
    // A guard already past its local deadline would tell its holder it holds what may be someone
    // else's; one granted during shutdown would outlive the service.
    const refused = refusedGrant(this.calls, telemetry, acquisition, call, grant, now, this.shuttingDown);
    if (refused) throw refused.error;
    if (telemetry.on) telemetry.waited(call.name, 'acquired', now - acquisition.started);
    return this.leases.issueGuard(telemetry, acquisition.backendKey, key, call, grant);
  }
}
