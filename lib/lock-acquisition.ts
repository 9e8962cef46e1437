import type { AcquireResult, HandOff, HeldWith, LeaseMode, LockBackend, LockEvent } from './backends/lock-backend';
import { MAX_TIMER_DELAY } from './lock.constants';
import { InvalidLockOptionsError, LockBackendError, LockTimeoutError, type LockError } from './lock.errors';
import { monotonicNow, scheduleAt } from './lock-clock';
import { newLockToken } from './lock-token';
import type { BackendOperation } from './telemetry/lock-telemetry';

/** A granted lease, before it becomes a guard. */
export interface Grant {
  token: string;
  fence: bigint;
  /** Monotonic lower bound of the moment the backend started the lease. */
  startedAt: number;
  /** Set when the backend vouches for less than the ttl until the first extension (ms from startedAt). */
  validFor?: number;
}

/** What an acquisition needs from the service that runs it. */
export interface AcquisitionHost {
  readonly backend: LockBackend;
  /** A backend's failure in `operation`, as the service reports (and counts) it. */
  backendFailure(error: unknown, operation: BackendOperation): LockError;
  /** Releases `token` on `key` in the background, tracked until shutdown. */
  giveBack(backendKey: string, token: string): void;
  /** A call of this service handed `backendKey` over (see `HandOff`): wakes the waiter when it is its own. */
  handedOver(backendKey: string, handOff: HandOff): void;
  /** Waits in progress, by token: shutdown ends them, a hand-off wakes them. */
  readonly waiting: Map<string, Acquisition>;
  /** Set once the service began to shut down: a wait that starts after that ends at once. */
  readonly closing: boolean;
}

/** How long past its next re-check a waiter's place in a backend queue lasts. */
const QUEUE_GRACE = 1_000;

/** Thrown inside the loop once the caller was already answered (cancelled); never reaches a caller. */
const STOPPED = new Error('acquisition stopped');

/**
 * One attempt to take a key for a new token, waiting up to `wait` ms: the first try, then (busy) a
 * place in the backend's queue, woken by the release itself or a re-check.
 *
 * The caller is answered at once when the signal aborts or the deadline passes, even while a call
 * to the backend is in flight. The give-back (`release` of the token, which also leaves the queue)
 * is sent only after that call came back, so it can never overtake an attempt that would then leave
 * a place or a lease behind for a waiter that is gone. Any outcome other than a grant handed to the
 * caller gives back whatever the token may have got.
 */
export class Acquisition {
  readonly token = newLockToken();
  /** Monotonic time the wait began: the first attempt leaves now. */
  readonly started = monotonicNow();
  private readonly deadline: number;
  /** Set once the caller was answered with an error (abort, deadline, shutdown). */
  private stopped: { reason: unknown } | undefined = undefined;
  /** Wakes the loop from its wait for an event. */
  wake: (() => void) | undefined = undefined;
  private answer: ((reason: unknown) => void) | undefined = undefined;
  /** A queued attempt was sent, or an attempt failed: the token may hold or wait for the key. */
  private mayHold = false;
  /** The time left on the holder's lease by the last busy answer, and when that answer came (monotonic). */
  private holderLeft: { retryIn: number; at: number } | undefined = undefined;
  /** Settles once the wait is over and any give-back was handed to the host (set while it waits). */
  finished: Promise<void> | undefined = undefined;
  /** The events of the key while it waits for them. */
  private inbox: Inbox | undefined = undefined;

  constructor(
    private readonly host: AcquisitionHost,
    readonly key: string,
    readonly backendKey: string,
    private readonly ttl: number,
    private readonly wait: number,
    /** Undefined: exclusive. */
    readonly mode: LeaseMode | undefined = undefined,
  ) {
    this.deadline = this.started + wait;
  }

  /**
   * Runs it. Without a signal the uncontended path takes no timer, listener or promise of its own:
   * the first attempt is the backend's promise, and `answered` reads its answer.
   */
  async run(signal: AbortSignal | undefined): Promise<Grant> {
    if (signal) return this.cancellable(undefined, signal);
    let first: AcquireResult;
    try {
      first = await this.firstAttempt();
    } catch (error) {
      throw this.failed(error);
    }
    return this.answered(first);
  }

  /** The first attempt, without a signal: the backend's own promise. A failure goes through `failed`. */
  firstAttempt(): Promise<AcquireResult> | AcquireResult {
    return this.host.backend.tryAcquire(this.backendKey, this.token, this.ttl, undefined, this.mode);
  }

  /** What the first attempt's answer means: the grant, `LockTimeoutError` (wait 0), or the wait that follows. */
  answered(first: AcquireResult): Grant | Promise<Grant> {
    this.took(first);
    if (first.fence !== null) return { token: this.token, fence: first.fence, startedAt: this.started };
    if (this.wait === 0) throw this.timeout();
    return this.cancellable(first, undefined);
  }

  /**
   * The first attempt failed: the error as the caller gets it. The attempt may have taken effect
   * before it failed (a lost reply), so it is given back, as a wait that fails gives back.
   */
  failed(error: unknown): LockError {
    this.mayHold = true;
    this.host.giveBack(this.backendKey, this.token);
    return this.host.backendFailure(error, 'acquire');
  }

  /** Ends the wait now: the caller gets `reason`, the loop stops at its next step and gives back. */
  stop(reason: unknown): void {
    if (this.stopped || !this.answer) return;
    this.stopped = { reason };
    this.answer(reason);
    this.wake?.();
  }

  private cancellable(first: AcquireResult | undefined, signal: AbortSignal | undefined): Promise<Grant> {
    return new Promise<Grant>((resolve, reject) => {
      this.answer = reject;
      const onAbort = (): void => this.stop(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      // A pending wait with a deadline keeps the process alive until it is answered.
      const cancelDeadline = Number.isFinite(this.wait)
        ? scheduleAt(this.deadline, () => this.stop(this.timeout()), true)
        : undefined;
      this.host.waiting.set(this.token, this);
      // Its first attempt was in flight when shutdown ended the waits: this one ends too.
      if (this.host.closing)
        this.stop(new LockBackendError(this.host.backend.name, 'the application is shutting down'));
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        cancelDeadline?.();
        this.host.waiting.delete(this.token);
        this.answer = undefined;
      };
      this.finished = this.loop(first).then(
        (grant) => {
          done();
          if (this.stopped) this.host.giveBack(this.backendKey, this.token);
          else resolve(grant);
        },
        (error: unknown) => {
          done();
          if (this.mayHold) this.host.giveBack(this.backendKey, this.token);
          if (!this.stopped) reject(error);
        },
      );
    });
  }

  /**
   * The key was handed to this waiter by a call this process made (its answer said so): woken now,
   * as the `granted` event would, which may still come (the inbox takes one grant however often told).
   */
  handedOver(backendKey: string, handOff: HandOff): void {
    if (backendKey !== this.backendKey || handOff.token !== this.token) return;
    const event: LockEvent = { type: 'granted', key: backendKey, token: handOff.token, fence: handOff.fence };
    if (handOff.validFor !== undefined) event.validFor = handOff.validFor;
    this.inbox?.push(event);
  }

  private timeout(): LockTimeoutError {
    const now = monotonicNow();
    const retryIn = this.holderLeft && Math.max(0, Math.ceil(this.holderLeft.retryIn - (now - this.holderLeft.at)));
    return new LockTimeoutError(this.key, now - this.started, retryIn, this.wait);
  }

  private async attempt(queueLease: number | undefined): Promise<AcquireResult> {
    if (queueLease !== undefined) this.mayHold = true;
    let result: AcquireResult;
    try {
      result = await this.host.backend.tryAcquire(
        this.backendKey,
        this.token,
        this.ttl,
        queueLease === undefined ? undefined : { lease: queueLease },
        this.mode,
      );
    } catch (error) {
      throw this.failed(error);
    }
    this.took(result);
    return result;
  }

  /**
   * Notes what an answer says besides the grant: the time left on the holder's lease, hand-offs it
   * made. A key held in a mode this call cannot share it in ends the call (nothing to wait for).
   */
  private took(result: AcquireResult): void {
    if (result.handedTo) this.host.handedOver(this.backendKey, result.handedTo);
    if (result.alsoHandedTo) for (const handOff of result.alsoHandedTo) this.host.handedOver(this.backendKey, handOff);
    if (result.fence !== null) return;
    if (result.retryIn !== undefined) this.holderLeft = { retryIn: result.retryIn, at: monotonicNow() };
    if (result.heldWith !== undefined) throw modeConflict(this.key, result.heldWith, this.mode);
  }

  private async loop(first: AcquireResult | undefined): Promise<Grant> {
    if (first === undefined) {
      first = await this.attempt(undefined);
      if (first.fence !== null) return { token: this.token, fence: first.fence, startedAt: this.started };
      if (this.wait === 0) throw this.timeout();
    }
    if (this.stopped) throw STOPPED;
    // Listen first, then join the queue, so no release after this point goes unseen.
    const inbox = new Inbox(this.token);
    let unsubscribe: () => void;
    try {
      unsubscribe = await this.host.backend.subscribe(this.backendKey, (event) => inbox.push(event));
    } catch (error) {
      throw this.host.backendFailure(error, 'subscribe');
    }
    this.inbox = inbox;
    try {
      let retryIn = first.fence === null ? first.retryIn : undefined;
      for (;;) {
        if (this.stopped) throw STOPPED;
        const now = monotonicNow();
        if (now >= this.deadline) throw this.timeout();
        const recheckAt = Math.min(this.deadline, now + this.recheckDelay(retryIn));
        const queueLease = Math.min(MAX_TIMER_DELAY, Math.ceil(recheckAt - now) + QUEUE_GRACE);
        const sentAt = now;
        const attempt = await this.attempt(queueLease);
        if (attempt.fence !== null) return { token: this.token, fence: attempt.fence, startedAt: sentAt };
        if (this.stopped) throw STOPPED;
        retryIn = attempt.retryIn;

        const wake = await inbox.next(Math.min(this.deadline, monotonicNow() + this.recheckDelay(retryIn)), this);
        if (wake.type === 'granted') {
          // The lease began after our last busy answer was sent. When that bound is too old to
          // leave a useful estimate, one more attempt renews the lease and gives a fresh bound.
          if (monotonicNow() - sentAt <= Math.min(this.ttl, wake.validFor ?? this.ttl) / 3) {
            return { token: this.token, fence: wake.fence, startedAt: sentAt, validFor: wake.validFor };
          }
          retryIn = 0;
        }
      }
    } finally {
      this.inbox = undefined;
      unsubscribe();
    }
  }

  /** Delay before a waiter re-checks on its own: at the end of the holder's lease, or the backend's interval. */
  private recheckDelay(retryIn: number | undefined): number {
    const interval = this.host.backend.recheckInterval ?? Infinity;
    return Math.min(interval, retryIn === undefined ? Infinity : retryIn + 1);
  }

  /** Whether the loop must stop waiting for events. */
  get cancelled(): boolean {
    return this.stopped !== undefined;
  }
}

/** How a lease mode reads in messages. */
export function describeMode(mode: LeaseMode | undefined): string {
  if (!mode) return 'exclusive';
  return mode.kind === 'shared' ? 'shared' : `limit ${mode.limit}`;
}

/** A key held with a limit asked for in another mode or limit, or the other way round. */
function modeConflict(key: string, heldWith: HeldWith, mode: LeaseMode | undefined): InvalidLockOptionsError {
  const held = heldWith.startsWith('limit:') ? `limit ${heldWith.slice('limit:'.length)}` : heldWith;
  return new InvalidLockOptionsError(
    `Lock "${key}" is held with ${held}, and this call asked for ${describeMode(mode)}: every caller of a limited key ` +
      'must give the same limit, and a limited key is never taken exclusive or shared (use another key for those)',
  );
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

  async next(until: number, acquisition: Acquisition): Promise<Wake> {
    if (this.granted === undefined && !this.released && !acquisition.cancelled && until > monotonicNow()) {
      await new Promise<void>((resolve) => {
        const cancelTimer = Number.isFinite(until) ? scheduleAt(until, () => wake()) : () => undefined;
        const wake = (): void => {
          cancelTimer();
          this.waker = undefined;
          acquisition.wake = undefined;
          resolve();
        };
        this.waker = wake;
        acquisition.wake = wake;
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
