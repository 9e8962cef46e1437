import type { Logger } from '@nestjs/common';
import type { ReleaseResult } from './backends/lock-backend';
import type { BackendCalls } from './backend-calls';
import type { LockGuard } from './distributed-lock';
import { Guard, GuardLease, WithLockLease, type Lease, type LeaseHost } from './held-lock';
import { driftMargin, localDeadline } from './lock.constants';
import { InvalidLockOptionsError, LockLostError } from './lock.errors';
import type { CallOptions } from './lock-call-options';
import type { Grant } from './lock-acquisition';
import { epochOffset, monotonicNow, toEpochMs } from './lock-clock';
import { LeaseExpiries } from './lease-expiries';
import type { LockTelemetry, LostReason } from './telemetry/lock-telemetry';
import type { ServiceTelemetry } from './telemetry/service-telemetry';
import { isThenable } from './thenable';
import { Watchdog, type LossReason } from './watchdog';

/** The constructor of a kind of lease (a guard's, or a `withLock` hold's). */
type LeaseKind<L extends Lease> = new (
  owner: LeaseRegistry,
  backendKey: string,
  ttl: number,
  token: string,
  name: string,
  heldSince: number,
  key: string,
  fence: bigint,
  acquiredAt: number,
  expiresAt: number,
) => L;

/**
 * The leases one service handed out and has not released: guards of `tryAcquire`/`acquire`, which
 * are forgotten once their TTL has certainly run out, and holds of `withLock`, under the watchdog.
 * Counts them as held and not held (the held count and hold time), reports the ones lost, and ends
 * each exactly once: released, ended with its work, by its TTL, or at shutdown.
 */
export class LeaseRegistry implements LeaseHost {
  /** Leases not yet released, released at shutdown. */
  private readonly active = new Set<Lease>();
  /** When the leases of `tryAcquire`/`acquire` end by their TTL if nobody releases them: then they are forgotten. */
  private readonly expiries = new LeaseExpiries<Lease>((lease) => this.unhold(lease));
  private readonly watchdog: Watchdog;

  constructor(
    private readonly calls: BackendCalls,
    private readonly telemetry: ServiceTelemetry,
    private readonly logger: Logger,
  ) {
    this.watchdog = new Watchdog((items) => this.calls.extendBatch(items));
  }

  /** Number of leases held and not released. */
  get size(): number {
    return this.active.size;
  }

  /** Turns a grant into the guard handed to the caller of `tryAcquire` / `acquire`. */
  issueGuard(telemetry: LockTelemetry, backendKey: string, key: string, call: CallOptions, grant: Grant): Guard {
    const lease = this.newLease(GuardLease, backendKey, key, call, grant, monotonicNow());
    this.hold(telemetry, lease);
    this.expiries.set(lease, endOf(call.ttl));
    return lease.guard;
  }

  /** Turns a grant into the lease `withLock` holds from `now`, under the watchdog's care. */
  issueHeld(
    telemetry: LockTelemetry,
    backendKey: string,
    key: string,
    call: CallOptions,
    grant: Grant,
    now: number,
  ): WithLockLease {
    const lease = this.newLease(WithLockLease, backendKey, key, call, grant, now);
    this.hold(telemetry, lease);
    lease.watch = this.watchdog.watch(lease, grant.startedAt, grant.validFor);
    return lease;
  }

  /** A lease of `kind` for `grant`, held from `now`; one reading of the wall clock gives both of its guard's times. */
  private newLease<L extends Lease>(
    kind: LeaseKind<L>,
    backendKey: string,
    key: string,
    call: CallOptions,
    grant: Grant,
    now: number,
  ): L {
    const offset = epochOffset();
    const acquiredAt = toEpochMs(now, offset);
    const expiresAt = toEpochMs(localDeadline(grant.startedAt, call.ttl, grant.validFor), offset);
    return new kind(this, backendKey, call.ttl, grant.token, call.name, now, key, grant.fence, acquiredAt, expiresAt);
  }

  /** The lease behind a guard of this service; undefined for a guard-shaped object. */
  leaseOf(guard: LockGuard): Lease | undefined {
    const lease = Guard.leaseOf(guard);
    if (lease && lease.owner !== this) {
      throw new InvalidLockOptionsError(
        `Invalid guard: the guard of "${guard.key}" was issued by another DistributedLock (another module or backend); pass it to the instance that acquired it`,
      );
    }
    return lease;
  }

  /**
   * A guard's lease was renewed for `ttl` by an extension sent at `sentAt`: its guard says until
   * when, and it counts as held until then, even if it had been forgotten as ended by its TTL.
   */
  private renewed(lease: Lease, sentAt: number, ttl: number): void {
    lease.guard.expiresAt = toEpochMs(localDeadline(sentAt, ttl));
    if (!this.active.has(lease)) {
      lease.heldSince = monotonicNow();
      this.hold(this.telemetry.settled, lease);
    }
    this.expiries.set(lease, endOf(ttl));
  }

  /**
   * Extends `token`'s lease on `backendKey` by `ttl`; `lease` is the one behind the guard, when this
   * service issued it. True when the backend renewed it and, for a `withLock` lease, it still counts as held.
   */
  async extend(lease: Lease | undefined, backendKey: string, token: string, ttl: number): Promise<boolean> {
    const held = lease instanceof WithLockLease ? lease : undefined;
    // A lease that withLock no longer counts as held stays that way.
    if (held && !held.live()) return false;
    const sentAt = monotonicNow();
    // The watchdog learns of the extension before it leaves: its ttl is the lease's from now on.
    const settle = held?.watch?.extending(sentAt, ttl);
    let extended: boolean;
    try {
      extended = await this.calls.backend.extend(backendKey, token, ttl);
    } catch (error) {
      settle?.(error as Error);
      throw this.calls.backendFailure(error, 'extend');
    }
    settle?.(extended);
    // The watchdog moved the guard's expiresAt (onConfirmed) when it settled the extension.
    if (held?.watch) return extended && held.live();
    // Released while the extension was on its way: the release came after it, so the lease is over.
    if (extended && lease && !lease.released && !lease.releasedAtShutdown) this.renewed(lease, sentAt, ttl);
    return extended;
  }

  /** `lease` is no longer held (released, or its work ended): no more watching, no more counting. */
  forget(lease: Lease): void {
    if (lease instanceof WithLockLease) lease.watch?.stop();
    else this.expiries.delete(lease);
    this.unhold(lease);
  }

  /**
   * The end of a `withLock` hold after its work settled (`workError` when it threw): the lease is
   * released, or kept until `heldAt + minHold`. Resolves to why it was lost, when it was: lost while
   * the work ran, or found gone by the release.
   */
  endHold(
    lease: WithLockLease,
    minHold: number,
    heldAt: number,
    workError: unknown,
  ): LockLostError | undefined | Promise<LockLostError | undefined> {
    // Was the lease confirmed until the work settled? A deadline passed while the loop was blocked shows here.
    lease.live();
    const releasedByHolder = lease.state === 'released';
    // The hold ends (watchdog stopped, signal aborted) before the release is sent, so no extension
    // can follow the release and no callback that escaped the work counts it as held.
    lease.end('ended');
    this.forget(lease);
    const lost = lease.lost;
    if (releasedByHolder || lease.releasedAtShutdown) return lost;
    const left = minHold === 0 ? 0 : Math.ceil(minHold - (monotonicNow() - heldAt));
    // minHold: the lease stays until start + minHold, then ends by itself; a lost one is released.
    if (!lost && left >= 1) return this.calls.keepFor(lease, left).then((ended) => this.ended(lease, ended, lost));
    const failed = (error: unknown): LockLostError | undefined => {
      this.calls.releaseFailed(lease, error, workError);
      return lost;
    };
    let sent: ReturnType<BackendCalls['release']>;
    try {
      sent = this.calls.release(lease.backendKey, lease.token);
    } catch (error) {
      return failed(error);
    }
    // A backend that released at once (the memory backend) is answered without a turn of the event loop.
    if (!isThenable(sent)) return this.released(lease, sent, lost);
    return sent.then((result) => this.released(lease, result, lost), failed);
  }

  /** What the release at the end of a hold answered. */
  private released(
    lease: WithLockLease,
    result: ReleaseResult,
    lost: LockLostError | undefined,
  ): LockLostError | undefined {
    this.calls.handedOverBy(lease.backendKey, result);
    return this.ended(lease, result.released, lost);
  }

  /** Why a hold was lost, once its end is known: `ended` false means the release found the lease gone. */
  private ended(
    lease: WithLockLease,
    ended: boolean | undefined,
    lost: LockLostError | undefined,
  ): LockLostError | undefined {
    if (ended !== false || lost) return lost;
    const gone = new LockLostError(
      lease.guard.key,
      'the lease was already gone when the work ended: it expired or was removed from the backend while the work ran (evicted, flushed, failed over)',
    );
    this.reportLost(lease, gone.detail, 'release_found_gone');
    return gone;
  }

  /**
   * Shutdown: stops every watchdog and TTL timer, aborts the signals of work still running, and
   * forgets every lease. Returns the leases, for the service to release.
   */
  endAll(): Lease[] {
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
    return leases;
  }

  /** The watchdog found a `withLock` lease lost. */
  leaseLost(lease: WithLockLease, detail: string, reason: LossReason): void {
    this.reportLost(lease, detail, reason);
  }

  /** An extension the watchdog sent for `lease` was refused or failed. */
  extensionFailed(lease: WithLockLease, failure: 'refused' | 'error'): void {
    const telemetry = this.telemetry.settled;
    if (telemetry.on) telemetry.extensionFailed(lease.name, failure);
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
    const telemetry = this.telemetry.settled;
    if (telemetry.on) telemetry.lost(lease.name, reason);
    lease.span?.lost(reason);
  }

  /** Counts `lease` as held from now on. */
  private hold(telemetry: LockTelemetry, lease: Lease): void {
    this.active.add(lease);
    if (telemetry.on) telemetry.holdStarted(lease.name);
  }

  /** `lease` is no longer held: released, ended with its work or by its TTL, or released at shutdown. */
  private unhold(lease: Lease): void {
    if (!this.active.delete(lease)) return;
    const telemetry = this.telemetry.settled;
    if (telemetry.on) telemetry.holdEnded(lease.name, monotonicNow() - lease.heldSince);
    if (lease instanceof WithLockLease) lease.span?.released();
  }
}

/**
 * A monotonic time by which a lease of `ttl` granted or renewed by an answer that just arrived has
 * certainly ended at the backend (the backend started it before it answered), drift included.
 */
function endOf(ttl: number): number {
  return monotonicNow() + ttl + driftMargin(ttl);
}
