import type { LeaseMode } from './backends/lock-backend';
import type { HeldLock, LockGuard } from './distributed-lock';
import { LockLostError } from './lock.errors';
import { toEpochMs } from './lock-clock';
import type { Hold } from './lock-context';
import type { LockSpan } from './telemetry/lock-telemetry';
import type { LeaseWatch, LossReason, WatchedLease } from './watchdog';

/*
 * The leases the service hands out: a guard of tryAcquire/acquire, and the hold of withLock with
 * its signal, which counts as held only while its lease is confirmed.
 */

/**
 * A guard this service handed out. `expiresAt` moves forward with each confirmed extension. Its lease
 * is kept in a private field, which a copy (`{ ...guard }`) does not carry: a copy is checked as any
 * guard-shaped object is, and can never stand for the lease it was copied from.
 */
export class Guard implements LockGuard {
  readonly #lease: Lease;

  constructor(
    readonly key: string,
    readonly token: string,
    readonly fence: bigint,
    readonly acquiredAt: number,
    public expiresAt: number,
    lease: Lease,
  ) {
    this.#lease = lease;
  }

  /** The lease behind a guard a service handed out; undefined for anything else. */
  static leaseOf(guard: unknown): Lease | undefined {
    return typeof guard === 'object' && guard !== null && #lease in guard ? (guard as Guard).#lease : undefined;
  }

  /** Guards go into logs: fences are bigints, which JSON.stringify cannot write on its own. */
  toJSON(): Record<string, unknown> {
    return {
      key: this.key,
      token: this.token,
      fence: this.fence.toString(),
      acquiredAt: this.acquiredAt,
      expiresAt: this.expiresAt,
    };
  }
}

export class Held extends Guard implements HeldLock {
  /** Made when first read (most work never reads it), already aborted if the hold is over by then. */
  get signal(): AbortSignal {
    return (Guard.leaseOf(this) as WithLockLease).signal;
  }
}

/** What the service remembers of each lease it handed out and has not released yet. */
export interface Lease {
  readonly guard: Guard;
  /** The service that issued it: a guard is released or extended only through its own service. */
  readonly owner: object;
  readonly backendKey: string;
  /** The token the lease was granted to (the guard's, kept here so that a release needs no re-check of the guard). */
  readonly token: string;
  readonly ttl: number;
  /** The `lock.name` its telemetry carries. */
  readonly name: string;
  /** Monotonic time it was granted (or, once ended, renewed) at, for the hold time. */
  heldSince: number;
  /** Set once shutdown released it, so the work's own exit does not try again. */
  releasedAtShutdown?: boolean;
  /** Set once its holder released it: an extension answered after that does not make it held again. */
  released?: boolean;
}

/** The lease of a guard of `tryAcquire` / `acquire`. */
export class GuardLease implements Lease {
  readonly guard: Guard;
  releasedAtShutdown = false;
  released = false;

  constructor(
    readonly owner: object,
    readonly backendKey: string,
    readonly ttl: number,
    readonly token: string,
    readonly name: string,
    public heldSince: number,
    key: string,
    fence: bigint,
    acquiredAt: number,
    expiresAt: number,
  ) {
    this.guard = new Guard(key, token, fence, acquiredAt, expiresAt, this);
  }
}

/** What a `withLock` lease tells the service that issued it. */
export interface LeaseHost {
  /** The lease could not be confirmed (the watchdog found it lost): log it, count it. */
  leaseLost(lease: WithLockLease, detail: string, reason: LossReason): void;
  /** An extension the watchdog sent for it was refused or failed. */
  extensionFailed(lease: WithLockLease, failure: 'refused' | 'error'): void;
}

const LEASE = Symbol('lease');
/** The reason a held lock's signal aborts with once the hold ends normally (one instance: no stack per hold). */
const RELEASED = new DOMException('The lock was released: it is no longer held', 'AbortError');
type HeldSignal = AbortSignal & { [LEASE]?: WithLockLease };
const signalAccessor = (name: 'aborted' | 'reason'): ((this: AbortSignal) => unknown) =>
  Object.getOwnPropertyDescriptor(AbortSignal.prototype, name)!.get!;
const abortedOf = signalAccessor('aborted');
const reasonOf = signalAccessor('reason');
/**
 * The prototype of a held lock's signal: an AbortSignal whose `aborted`, `reason` and
 * `throwIfAborted` confirm the lease first, so a local deadline that passed while the event loop was
 * blocked aborts the signal the moment user code looks at it, before any timer had a chance to.
 */
const HELD_SIGNAL: object = Object.create(AbortSignal.prototype, {
  aborted: {
    get(this: HeldSignal) {
      this[LEASE]?.live();
      return abortedOf.call(this);
    },
  },
  reason: {
    get(this: HeldSignal) {
      this[LEASE]?.live();
      return reasonOf.call(this);
    },
  },
  throwIfAborted: {
    value(this: HeldSignal) {
      this[LEASE]?.live();
      AbortSignal.prototype.throwIfAborted.call(this);
    },
  },
});

/**
 * A lease held by `withLock`: watched by the watchdog (it is the watchdog's `WatchedLease`), with its
 * signal, and the hold that the async call chains started inside the work carry in their context. It
 * counts as held only while the lease is confirmed; once released, lost or past its local deadline,
 * nothing treats it as held any more.
 */
export class WithLockLease implements Lease, Hold, WatchedLease {
  readonly guard: Held;
  // Every field is set in the constructor (undefined until used), so that every lease has one shape.
  watch: LeaseWatch | undefined = undefined;
  /** The span of the `withLock` call, when traces are recorded. */
  span: LockSpan | undefined = undefined;
  /** How it shares its key (undefined: exclusive): what a reentrant call inside it may ask for. */
  mode: LeaseMode | undefined = undefined;
  /** 'released': the holder released it inside the work; 'ended': the work is over. */
  state: 'held' | 'released' | 'ended' = 'held';
  /** Why the lease was lost, once it was. */
  lost: LockLostError | undefined = undefined;
  releasedAtShutdown = false;
  /** Made on the first read of the signal: a hold whose work never reads it costs no controller. */
  private controller: AbortController | undefined = undefined;

  constructor(
    readonly owner: LeaseHost,
    readonly backendKey: string,
    readonly ttl: number,
    readonly token: string,
    readonly name: string,
    public heldSince: number,
    key: string,
    fence: bigint,
    acquiredAt: number,
    expiresAt: number,
  ) {
    this.guard = new Held(key, token, fence, acquiredAt, expiresAt, this);
  }

  /** The watchdog confirmed an extension: the guard's estimate moves to the new local deadline. */
  onConfirmed(deadline: number): void {
    this.guard.expiresAt = toEpochMs(deadline);
  }

  onLost(detail: string, reason: LossReason): void {
    this.lose(new LockLostError(this.guard.key, detail));
    this.owner.leaseLost(this, detail, reason);
  }

  onExtensionFailed(failure: 'refused' | 'error'): void {
    this.owner.extensionFailed(this, failure);
  }

  get signal(): AbortSignal {
    // Reading the signal is a moment user code looks: a deadline that passed unnoticed counts now.
    this.live();
    if (!this.controller) {
      this.controller = new AbortController();
      const signal = this.controller.signal as HeldSignal;
      Object.setPrototypeOf(signal, HELD_SIGNAL);
      signal[LEASE] = this;
      if (this.lost) this.controller.abort(this.lost);
      else if (this.state !== 'held') this.controller.abort(RELEASED);
    }
    return this.controller.signal;
  }

  get held(): Held {
    return this.guard;
  }

  get ended(): boolean {
    return this.state !== 'held';
  }

  live(): boolean {
    if (this.state !== 'held' || this.lost) return false;
    // A deadline that passed unnoticed is reported by confirm() itself (through lose()).
    return this.watch === undefined || this.watch.confirm();
  }

  /** The lease could not be confirmed: the signal aborts with `reason`; the work should stop. */
  lose(reason: LockLostError): void {
    if (this.lost || this.state === 'ended') return;
    this.lost = reason;
    this.watch?.stop();
    this.controller?.abort(reason);
  }

  /** The hold is over (released by the holder, or the work ended): the signal aborts, if it has not yet. */
  end(state: 'released' | 'ended'): void {
    if (this.state === 'ended') return;
    this.state = state;
    this.watch?.stop();
    this.controller?.abort(RELEASED);
  }
}
