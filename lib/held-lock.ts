import type { HeldLock, LockGuard } from './distributed-lock';
import type { LockLostError } from './lock.errors';
import type { Hold } from './lock-context';
import type { LeaseWatch } from './watchdog';

/*
 * The leases the service hands out: a guard of tryAcquire/acquire, and the hold of withLock with
 * its signal, which counts as held only while its lease is confirmed.
 */

/** A guard this service handed out. `expiresAt` moves forward with each confirmed extension. */
export class Guard implements LockGuard {
  constructor(
    readonly key: string,
    readonly token: string,
    readonly fence: bigint,
    readonly acquiredAt: number,
    public expiresAt: number,
  ) {}

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
  constructor(
    key: string,
    token: string,
    fence: bigint,
    acquiredAt: number,
    expiresAt: number,
    readonly signal: AbortSignal,
  ) {
    super(key, token, fence, acquiredAt, expiresAt);
  }
}

/** What the service remembers of each lease it handed out and has not released yet. */
export interface Lease {
  readonly guard: Guard;
  readonly backendKey: string;
  /** The token the lease was granted to (the guard's, kept here so that a release needs no re-check of the guard). */
  readonly token: string;
  readonly ttl: number;
  /** Set once shutdown released it, so the work's own exit does not try again. */
  releasedAtShutdown?: boolean;
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
 * A lease held by `withLock`: watched by the watchdog, with its signal, and the hold that the async
 * call chains started inside the work carry in their context. It counts as held only while the lease
 * is confirmed; once released, lost or past its local deadline, nothing treats it as held any more.
 */
export class WithLockLease implements Lease, Hold {
  readonly guard: Held;
  watch: LeaseWatch | undefined;
  /** 'released': the holder released it inside the work; 'ended': the work is over. */
  state: 'held' | 'released' | 'ended' = 'held';
  /** Why the lease was lost, once it was. */
  lost: LockLostError | undefined;
  releasedAtShutdown?: boolean;
  private readonly controller = new AbortController();

  constructor(
    readonly owner: object,
    readonly backendKey: string,
    readonly ttl: number,
    readonly token: string,
    key: string,
    fence: bigint,
    acquiredAt: number,
    expiresAt: number,
  ) {
    const signal = this.controller.signal as HeldSignal;
    Object.setPrototypeOf(signal, HELD_SIGNAL);
    signal[LEASE] = this;
    this.guard = new Held(key, token, fence, acquiredAt, expiresAt, signal);
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
    this.controller.abort(reason);
  }

  /** The hold is over (released by the holder, or the work ended): the signal aborts, if it has not yet. */
  end(state: 'released' | 'ended'): void {
    if (this.state === 'ended') return;
    this.state = state;
    this.watch?.stop();
    this.controller.abort(RELEASED);
  }
}
