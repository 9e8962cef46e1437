import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import {
  releaseOn,
  type AcquireResult,
  type HandOff,
  type LockBackend,
  type ReleaseResult,
} from './backends/lock-backend';
import { BackgroundWork } from './background-work';
import type { AcquireOptions, HeldLock, LockGuard, TryAcquireOptions, WithLockOptions } from './distributed-lock';
import { DistributedLock } from './distributed-lock';
import { driftMargin, SHUTDOWN_RELEASE_TIMEOUT, SKIP_WHEN_BUSY } from './lock.constants';
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
import { Guard, GuardLease, WithLockLease, type Lease, type LeaseHost } from './held-lock';
import { LeaseExpiries } from './lease-expiries';
import {
  describeValue,
  validateGuardShape,
  validateKey,
  validateMetricName,
  validateMinHold,
  validateOptionsObject,
  validateSignal,
  validateTtl,
  validateWait,
} from './lock.validation';
import {
  resolveTelemetry,
  TELEMETRY_OFF,
  telemetrySetting,
  UNNAMED,
  type AcquireOutcome,
  type BackendOperation,
  type LockSpan,
  type LockTelemetry,
  type LostReason,
  type TelemetrySetting,
} from './telemetry/lock-telemetry';
import { loadOtelApi, type OtelApi } from './telemetry/otel-api.loader';
import { Watchdog, type LossReason } from './watchdog';

/** Settings the service runs with, after the module's defaults were applied and checked. */
export interface DistributedLockSettings {
  backend: LockBackend;
  keyPrefix: string;
  ttl: number;
  wait: number;
  /** What telemetry to record; left out, as the module's default (on where `@opentelemetry/api` is installed). */
  telemetry?: TelemetrySetting;
}

/** How long `ping()` waits for the backend by default. */
const DEFAULT_PING_TIMEOUT = 1_000;

const TRY_ACQUIRE_OPTIONS = ['ttl', 'metricName'] as const;
const ACQUIRE_OPTIONS = ['ttl', 'wait', 'signal', 'metricName'] as const;
const WITH_LOCK_OPTIONS = [...ACQUIRE_OPTIONS, 'minHold'] as const;

/** A call's options, checked, with the service's defaults applied. */
interface CallOptions {
  ttl: number;
  wait: number;
  signal: AbortSignal | undefined;
  minHold: number;
  /** The `lock.name` of its telemetry. */
  name: string;
  /** `@WithLock({ onBusy: 'skip' })`: a busy key is a skipped run, not a failure. */
  skip: boolean;
}

/**
 * `DistributedLock` over any `LockBackend`: validation, defaults, waiting with deadline and signal,
 * the watchdog, reentrancy, error mapping and telemetry are all here, once for every backend.
 */
export class DistributedLockService extends DistributedLock implements OnApplicationShutdown, LeaseHost {
  private readonly logger = new Logger('DistributedLock');
  private readonly backend: LockBackend;
  private readonly keyPrefix: string;
  private readonly defaultTtl: number;
  private readonly defaultWait: number;
  private readonly watchdog: Watchdog;
  /** Leases not yet released, released at shutdown. */
  private readonly active = new Set<Lease>();
  /** When the leases of `tryAcquire`/`acquire` end by their TTL if nobody releases them: then they are forgotten. */
  private readonly expiries = new LeaseExpiries<Lease>((lease) => this.unhold(lease));
  /** Releases still running in the background (abandoned waits), awaited at shutdown. */
  private readonly cleanups = new BackgroundWork();
  /** What acquisitions need from the service; its `waiting` set holds the waits in progress. */
  private readonly host: AcquisitionHost;
  /** The API and what to record, when telemetry is on. */
  private readonly otel: { api: OtelApi; setting: Exclude<TelemetrySetting, false> } | undefined;
  /** What this service records, looked up at its first call (the SDK is registered by then). */
  private telemetry: LockTelemetry | undefined = undefined;
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
      backendFailure: (error, operation) => this.backendFailure(error, operation),
      giveBack: (backendKey, token) => this.giveBack(backendKey, token),
      handedOver: (backendKey, handOff) => this.handedOver(backendKey, handOff),
      waiting: new Map(),
    };
    this.otel = openTelemetry(settings.telemetry ?? telemetrySetting(undefined));
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
      throw this.backendFailure(error, 'ping');
    } finally {
      cancel?.();
    }
  }

  async tryAcquire(key: string, options?: TryAcquireOptions): Promise<LockGuard | null> {
    const call = this.callOptions('tryAcquire', key, options, TRY_ACQUIRE_OPTIONS);
    const telemetry = this.telemetry ?? this.startTelemetry();
    const acquisition = new Acquisition(this.host, key, this.keyPrefix + key, call.ttl, 0);
    let grant: Grant;
    try {
      grant = await this.obtain(acquisition, undefined);
    } catch (error) {
      this.waitFailed(telemetry, acquisition, call, error);
      if (error instanceof LockTimeoutError) return null;
      throw error;
    }
    return this.issue(telemetry, acquisition, key, call, grant);
  }

  async acquire(key: string, options?: AcquireOptions): Promise<LockGuard> {
    const call = this.callOptions('acquire', key, options, ACQUIRE_OPTIONS);
    const telemetry = this.telemetry ?? this.startTelemetry();
    const acquisition = new Acquisition(this.host, key, this.keyPrefix + key, call.ttl, call.wait);
    let grant: Grant;
    try {
      grant = await this.obtain(acquisition, call.signal);
    } catch (error) {
      this.waitFailed(telemetry, acquisition, call, error);
      throw error;
    }
    return this.issue(telemetry, acquisition, key, call, grant);
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
      throw this.backendFailure(error, 'extend');
    }
    settle?.(extended);
    if (held?.watch) {
      if (extended) held.guard.expiresAt = toEpochMs(held.watch.deadline);
      return extended && held.live();
    }
    if (extended && lease) {
      lease.guard.expiresAt = toEpochMs(sentAt + leaseTtl - driftMargin(leaseTtl));
      // Renewed: held again until the new end, even if it had been forgotten as ended.
      this.holdAgain(lease);
      this.expiries.set(lease, this.endOf(leaseTtl));
    }
    return extended;
  }

  async release(guard: LockGuard): Promise<void> {
    // A guard this service issued was checked when it was made: its lease says what to release.
    let lease = Guard.leaseOf(guard);
    let backendKey: string;
    let token: string;
    if (lease && lease.owner === this) {
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
    let result: ReleaseResult;
    try {
      result = await this.releaseCall(backendKey, token);
    } catch (error) {
      throw this.backendFailure(error, 'release');
    }
    if (result.handedTo) this.handedOver(backendKey, result.handedTo);
  }

  async withLock<T>(key: string, fn: (lock: HeldLock) => T | Promise<T>, options?: WithLockOptions): Promise<T> {
    const call = this.callOptions('withLock', key, options, WITH_LOCK_OPTIONS);
    if (typeof fn !== 'function') {
      throw new InvalidLockOptionsError(`Invalid withLock work: expected a function, got ${describeValue(fn)}`);
    }
    const telemetry = this.telemetry ?? this.startTelemetry();
    const outer = findHold(this, key) as WithLockLease | undefined;
    if (outer)
      return this.runReentrant(outer, fn, telemetry.tracing ? telemetry.startSpan(call.name, key, true) : undefined);

    const span = telemetry.tracing ? telemetry.startSpan(call.name, key, false) : undefined;
    const acquisition = new Acquisition(this.host, key, this.keyPrefix + key, call.ttl, call.wait);
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
      const outcome = this.waitFailed(telemetry, acquisition, call, error);
      span?.end(outcome, outcome === 'skipped' ? undefined : error);
      throw error;
    }
    const now = monotonicNow();
    if (localDeadlineOf(call.ttl, grant) <= now) {
      // The grant came back after its own local deadline (a stalled network or backend): the lease
      // may already have ended and gone to someone else, so the work must not run under it.
      this.giveBack(acquisition.backendKey, grant.token);
      const error = new LockBackendError(
        this.backend.name,
        `the grant of "${key}" came back after its local deadline (ttl ${call.ttl} ms): the backend or the network ` +
          'was too slow for this ttl, so the work was not run',
      );
      if (telemetry.on) telemetry.waited(call.name, 'error', now - acquisition.started);
      span?.end('error', error);
      throw error;
    }
    if (telemetry.on) telemetry.waited(call.name, 'acquired', now - acquisition.started);
    span?.acquired(grant.fence);
    const lease = this.issueHeld(telemetry, key, call, grant, now);
    lease.span = span;

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
    // Was the lease confirmed until the work settled? A deadline passed while the loop was blocked shows here.
    lease.live();
    const releasedByHolder = lease.state === 'released';
    // The hold ends (watchdog stopped, signal aborted) before the release is sent, so no extension
    // can follow the release and no callback that escaped the work counts it as held.
    lease.end('ended');
    this.forget(lease);
    let lost = lease.lost;
    if (!releasedByHolder && !lease.releasedAtShutdown) {
      const left = call.minHold === 0 ? 0 : Math.ceil(call.minHold - (monotonicNow() - now));
      // minHold: the lease stays until start + minHold, then ends by itself; a lost one is released.
      let ended: boolean | undefined;
      if (!lost && left >= 1) ended = await this.keepFor(lease, left);
      else {
        try {
          const sent = this.releaseCall(lease.backendKey, lease.token);
          const result = isThenable(sent) ? await sent : sent;
          if (result.handedTo) this.handedOver(lease.backendKey, result.handedTo);
          ended = result.released;
        } catch (error) {
          this.releaseFailed(lease, error, failure);
        }
      }
      if (ended === false && !lost) {
        lost = new LockLostError(
          key,
          'the lease was already gone when the work ended: it expired or was removed from the backend while the work ran (evicted, flushed, failed over)',
        );
        this.reportLost(lease, lost.detail, 'release_found_gone');
      }
    }
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
      if (lease instanceof WithLockLease) {
        const lostBefore = lease.lost;
        lease.lose(new LockLostError(lease.guard.key, 'the application is shutting down'));
        if (!lostBefore && lease.lost) this.countLost(lease, 'shutdown');
      }
    }
    const releases = leases.map((lease) => this.releaseOnBackend(lease.backendKey, lease.token));
    // Stopped waits give back what they may hold once their last call returns.
    await settleWithin([...releases, ...waits], SHUTDOWN_RELEASE_TIMEOUT);
    await this.cleanups.settle(SHUTDOWN_RELEASE_TIMEOUT);
    await this.backend.close();
  }

  /** The watchdog found a `withLock` lease lost. */
  leaseLost(lease: WithLockLease, detail: string, reason: LossReason): void {
    this.reportLost(lease, detail, reason);
  }

  /** An extension the watchdog sent for `lease` was refused or failed. */
  extensionFailed(lease: WithLockLease, failure: 'refused' | 'error'): void {
    const telemetry = this.telemetry ?? TELEMETRY_OFF;
    if (telemetry.on) telemetry.extensionFailed(lease.name, failure);
  }

  private async runReentrant<T>(
    outer: WithLockLease,
    fn: (lock: HeldLock) => T | Promise<T>,
    span: LockSpan | undefined,
  ): Promise<T> {
    let value: T;
    try {
      // A surrounding hold whose lease was lost: the work should stop, not run as if it held the key.
      if (!outer.live()) throw outer.lost!;
      try {
        value = await (span
          ? span.run((guard) => runHolding(outer, fn, guard), outer.guard)
          : runHolding(outer, fn, outer.guard));
      } catch (error) {
        if (outer.lost)
          throw new LockLostError(outer.guard.key, outer.lost.detail, { workSucceeded: false, cause: error });
        throw error;
      }
      if (!outer.live() && outer.lost)
        throw new LockLostError(outer.guard.key, outer.lost.detail, { workSucceeded: true });
    } catch (error) {
      span?.end(undefined, error);
      throw error;
    }
    span?.end(undefined);
    return value;
  }

  /** A call's key and options, checked, with the defaults applied. */
  private callOptions(
    method: 'tryAcquire' | 'acquire' | 'withLock',
    key: unknown,
    options: unknown,
    allowed: readonly string[],
  ): CallOptions {
    validateKey(key);
    const call: CallOptions = {
      ttl: this.defaultTtl,
      wait: this.defaultWait,
      signal: undefined,
      minHold: 0,
      name: UNNAMED,
      skip: false,
    };
    if (options === undefined) return call;
    const opts = validateOptionsObject(`${method} options`, options, allowed);
    if (opts.ttl !== undefined) call.ttl = validateTtl(opts.ttl);
    if (opts.wait !== undefined) call.wait = validateWait(opts.wait);
    call.signal = validateSignal(opts.signal);
    if (opts.minHold !== undefined) call.minHold = validateMinHold(opts.minHold, `${method} minHold`);
    if (opts.metricName !== undefined) call.name = validateMetricName(opts.metricName, `${method} metricName`);
    call.skip = (options as { [SKIP_WHEN_BUSY]?: boolean })[SKIP_WHEN_BUSY] === true;
    return call;
  }

  /** Looks up the registered OpenTelemetry providers, once: from then on the calls record into them, or not at all. */
  private startTelemetry(): LockTelemetry {
    this.telemetry = this.otel ? resolveTelemetry(this.otel.api, this.otel.setting, this.backend.name) : TELEMETRY_OFF;
    return this.telemetry;
  }

  /** Takes the key for the acquisition's token (see `Acquisition`). */
  private obtain(acquisition: Acquisition, signal: AbortSignal | undefined): Promise<Grant> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return acquisition.run(signal);
  }

  /** Records a wait that ended without a grant; returns its outcome. */
  private waitFailed(
    telemetry: LockTelemetry,
    acquisition: Acquisition,
    call: CallOptions,
    error: unknown,
  ): AcquireOutcome {
    let outcome: AcquireOutcome;
    if (error instanceof LockTimeoutError) outcome = call.skip ? 'skipped' : 'busy';
    else if ((call.signal?.aborted && error === call.signal.reason) || this.shuttingDown) outcome = 'aborted';
    else outcome = 'error';
    if (telemetry.on) telemetry.waited(call.name, outcome, monotonicNow() - acquisition.started);
    return outcome;
  }

  private expiresAtOf(ttl: number, grant: Grant): number {
    return toEpochMs(localDeadlineOf(ttl, grant));
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
    if (telemetry.on) telemetry.waited(call.name, 'acquired', now - acquisition.started);
    const lease = new GuardLease(
      this,
      acquisition.backendKey,
      call.ttl,
      grant.token,
      call.name,
      now,
      key,
      grant.fence,
      this.expiresAtOf(call.ttl, grant),
    );
    this.hold(telemetry, lease);
    this.expiries.set(lease, this.endOf(call.ttl));
    return lease.guard;
  }

  /**
   * A monotonic time by which a lease of `ttl` granted or renewed by an answer that just arrived has
   * certainly ended at the backend (the backend started it before it answered), drift included.
   */
  private endOf(ttl: number): number {
    return monotonicNow() + ttl + driftMargin(ttl);
  }

  /** Logs a lost lease the moment it is found lost (the work should stop), and counts it. */
  private reportLost(lease: WithLockLease, detail: string, reason: LostReason): void {
    this.logger.warn(
      `Lock "${lease.guard.key}" (fence ${lease.guard.fence}) was lost: ${detail}. ` +
        'The work under it no longer runs exclusively and should stop; its signal is aborted.',
    );
    this.countLost(lease, reason);
  }

  private countLost(lease: WithLockLease, reason: LostReason): void {
    const telemetry = this.telemetry ?? TELEMETRY_OFF;
    if (telemetry.on) telemetry.lost(lease.name, reason);
    lease.span?.lost(reason);
  }

  /** Turns a grant into the lease `withLock` holds, under the watchdog's care. */
  private issueHeld(
    telemetry: LockTelemetry,
    key: string,
    call: CallOptions,
    grant: Grant,
    now: number,
  ): WithLockLease {
    const lease = new WithLockLease(
      this,
      this.keyPrefix + key,
      call.ttl,
      grant.token,
      call.name,
      now,
      key,
      grant.fence,
      this.expiresAtOf(call.ttl, grant),
    );
    this.hold(telemetry, lease);
    lease.watch = this.watchdog.watch(lease, grant.startedAt, grant.validFor);
    return lease;
  }

  /** The lease behind a guard of this service; undefined for a guard-shaped object. */
  private leaseOf(guard: LockGuard): Lease | undefined {
    const lease = Guard.leaseOf(guard);
    if (lease && lease.owner !== this) {
      throw new InvalidLockOptionsError(
        `Invalid guard: the guard of "${guard.key}" was issued by another DistributedLock (another module or backend); pass it to the instance that acquired it`,
      );
    }
    return lease;
  }

  /** Counts `lease` as held from `now` on. */
  private hold(telemetry: LockTelemetry, lease: Lease): void {
    this.active.add(lease);
    if (telemetry.on) telemetry.holdStarted(lease.name);
  }

  /** A guard's lease renewed after it was forgotten as ended by its TTL: held again from now on. */
  private holdAgain(lease: Lease): void {
    if (this.active.has(lease)) return;
    lease.heldSince = monotonicNow();
    this.hold(this.telemetry ?? TELEMETRY_OFF, lease);
  }

  /** `lease` is no longer held: released, ended with its work or by its TTL, or released at shutdown. */
  private unhold(lease: Lease): void {
    if (!this.active.delete(lease)) return;
    const telemetry = this.telemetry ?? TELEMETRY_OFF;
    if (telemetry.on) telemetry.holdEnded(lease.name, monotonicNow() - lease.heldSince);
    if (lease instanceof WithLockLease) lease.span?.released();
  }

  private forget(lease: Lease): void {
    if (lease instanceof WithLockLease) lease.watch?.stop();
    else this.expiries.delete(lease);
    this.unhold(lease);
  }

  /**
   * Sets the lease to end `ms` from now (minHold) and leaves it to expire. True/false as the backend
   * answered; undefined when it failed (logged: the lease then ends by its TTL).
   */
  private async keepFor(lease: Lease, ms: number): Promise<boolean | undefined> {
    try {
      return await this.backend.extend(lease.backendKey, lease.token, ms);
    } catch (error) {
      this.backendFailure(error, 'extend');
      this.logger.warn(
        `Keeping lock "${lease.guard.key}" for its minHold failed (it ends by its TTL instead): ${errorText(error)}`,
      );
      return undefined;
    }
  }

  /** Releasing the lease after its work failed: logged, counted; the lease runs out by its TTL. */
  private releaseFailed(lease: Lease, error: unknown, workError: unknown): void {
    this.backendFailure(error, 'release');
    // The work's own outcome is what the caller gets.
    this.logger.warn(
      `Releasing lock "${lease.guard.key}" failed (it will expire within its TTL): ${errorText(error)}` +
        (workError === undefined ? '' : ' (the work had failed too; its error is the one thrown)'),
    );
  }

  /**
   * A backend's failure in `operation` as the service reports it, counted: a LockError as it is,
   * anything else as LockBackendError.
   */
  private backendFailure(error: unknown, operation: BackendOperation): LockError {
    // A ping may be the service's first call (the module pings at start, a health check any time).
    const telemetry = this.telemetry ?? this.startTelemetry();
    if (telemetry.on && !(error instanceof InvalidLockOptionsError)) telemetry.backendError(operation);
    return error instanceof LockError
      ? error
      : new LockBackendError(this.backend.name, errorText(error), { cause: error });
  }

  private async extendBatch(items: { key: string; token: string; ttl: number }[]): Promise<Array<boolean | Error>> {
    if (this.backend.extendMany) {
      try {
        return this.countFailedExtensions(await this.backend.extendMany(items));
      } catch (error) {
        this.backendFailure(error, 'extend');
        return items.map(() => error as Error);
      }
    }
    return this.countFailedExtensions(
      await Promise.all(
        items.map((item) =>
          this.backend.extend(item.key, item.token, item.ttl).catch((error: unknown) => error as Error),
        ),
      ),
    );
  }

  private countFailedExtensions(results: Array<boolean | Error>): Array<boolean | Error> {
    for (const result of results) if (result instanceof Error) this.backendFailure(result, 'extend');
    return results;
  }

  /** Releases `token` on `key` in the background: the wait was abandoned, nothing may stay held or queued. */
  private giveBack(backendKey: string, token: string): void {
    this.cleanups.run(this.releaseOnBackend(backendKey, token), (error) => {
      this.backendFailure(error, 'release');
      this.logger.warn(`Cleaning up an abandoned wait on "${backendKey}" failed: ${errorText(error)}`);
    });
  }

  /** The backend's release of `token` on `backendKey`, with the hand-off it made, if it says. */
  private releaseCall(backendKey: string, token: string): Promise<ReleaseResult> | ReleaseResult {
    return this.backend.releaseWithHandOff
      ? this.backend.releaseWithHandOff(backendKey, token)
      : releaseOn(this.backend, backendKey, token);
  }

  /**
   * Releases `token` on `backendKey`; when the backend says it handed the key to a waiter of this
   * service, that waiter is woken now rather than by the event that follows. True when a lease was ended.
   */
  private async releaseOnBackend(backendKey: string, token: string): Promise<boolean> {
    const { released, handedTo } = await this.releaseCall(backendKey, token);
    if (handedTo) this.handedOver(backendKey, handedTo);
    return released;
  }

  /** A call of this service handed `backendKey` to `handOff.token`: its waiter, if it is ours, is woken. */
  private handedOver(backendKey: string, handOff: HandOff): void {
    this.host.waiting.get(handOff.token)?.handedOver(backendKey, handOff);
  }
}

/** The local deadline (monotonic) of a lease of `ttl` from `grant`: counted from its attempt's start, drift taken off. */
function localDeadlineOf(ttl: number, grant: Grant): number {
  return grant.startedAt + Math.min(ttl, grant.validFor ?? ttl) - driftMargin(ttl);
}

/** Whether `value` is a promise or another thenable, which `await` would wait for. */
function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * The API for a service's telemetry, when it is on: `undefined` when turned off, or when
 * `@opentelemetry/api` is not installed and telemetry was not asked for (asked for, that throws).
 */
function openTelemetry(
  setting: TelemetrySetting,
): { api: OtelApi; setting: Exclude<TelemetrySetting, false> } | undefined {
  if (setting === false) return undefined;
  try {
    return { api: loadOtelApi(), setting };
  } catch (error) {
    if (setting.required) throw error;
    return undefined;
  }
}
