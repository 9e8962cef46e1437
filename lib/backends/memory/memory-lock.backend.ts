import { LeaseExpiries } from '../../lease-expiries';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow } from '../../lock-clock';
import {
  handOffFields,
  type AcquireResult,
  type HandOff,
  type HeldWith,
  type LeaseMode,
  type LockBackend,
  type LockEvent,
  type QueueOptions,
  type ReleaseResult,
} from '../lock-backend';

interface Lease {
  token: string;
  fence: bigint;
  /** Monotonic time at which the lease ends. */
  endsAt: number;
}

interface Waiter {
  token: string;
  ttl: number;
  /** Monotonic time at which the waiter's place in the queue lapses unless refreshed. */
  until: number;
  /** Undefined: exclusive. */
  mode: LeaseMode | undefined;
}

interface KeyState {
  /** The exclusive holder. */
  lease?: Lease;
  /** The shared or limited holders, by token (rule 7 of the SPI); never together with `lease`. */
  holders?: Map<string, Lease>;
  /** How `holders` hold the key while there are any: `'shared'` or `'limit:<n>'`. */
  sharing?: HeldWith;
  queue: Waiter[];
  /** Made on the first subscription: most keys are taken and released without anyone listening. */
  listeners?: Set<(event: LockEvent) => void>;
}

/**
 * Locks for one process, kept in a Map and timed on the monotonic clock.
 *
 * Every operation takes effect synchronously, at the moment it is called (the returned promise only
 * reports the outcome), so an operation issued after another always sees its effect. Fences come
 * from one counter for the whole backend, so they increase per key without remembering every key
 * ever locked. One unref'd timer ends the leases that run out (handing their key on), so nothing
 * waits for a call to notice; a held lock never keeps the process alive.
 */
export class MemoryLockBackend implements LockBackend {
  readonly name = 'memory';
  readonly capabilities = { fifo: true, fencing: 'strict', modes: ['shared', 'limit'] } as const;
  private readonly keys = new Map<string, KeyState>();
  /** When each leased key's lease ends; the lease is settled then (one timer for every key). */
  private readonly leaseEnds = new LeaseExpiries<string>((key) => this.leaseEnded(key));
  private lastFence = 0n;
  private closed = false;

  tryAcquire(
    key: string,
    token: string,
    ttl: number,
    queue?: QueueOptions,
    mode?: LeaseMode,
  ): AcquireResult | Promise<AcquireResult> {
    if (this.closed) return this.closedError();
    try {
      return mode ? this.acquireSharedNow(key, token, ttl, queue, mode) : this.acquireNow(key, token, ttl, queue);
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  extend(key: string, token: string, ttl: number): Promise<boolean> {
    if (this.closed) return this.closedError();
    try {
      return Promise.resolve(this.extendNow(key, token, ttl));
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  async release(key: string, token: string): Promise<boolean> {
    return (await this.releaseWithHandOff(key, token)).released;
  }

  releaseWithHandOff(key: string, token: string): ReleaseResult | Promise<ReleaseResult> {
    if (this.closed) return this.closedError();
    try {
      return this.releaseNow(key, token);
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  /** The operations, each in effect at once: the public methods only turn their outcome into a promise. */
  private acquireNow(key: string, token: string, ttl: number, queue: QueueOptions | undefined): AcquireResult {
    const now = monotonicNow();
    const state = this.stateOf(key);
    const handed = this.settle(key, state, now);
    if (state.lease?.token === token) {
      state.lease.endsAt = now + ttl;
      this.removeWaiter(state, token);
      this.armTimer(key, state);
      return { fence: state.lease.fence };
    }
    if (!state.lease && !state.holders) {
      const lease = this.grant(key, state, token, ttl, now);
      this.removeWaiter(state, token);
      return { fence: lease.fence };
    }
    if (state.holders?.has(token)) return this.renewHolder(key, state, token, ttl, now);
    const handedTo = handOffFields(handed);
    if (state.sharing !== undefined && state.sharing !== 'shared') {
      return { fence: null, retryIn: this.retryIn(state, now), heldWith: state.sharing, ...handedTo };
    }
    if (queue) this.joinQueue(state, token, ttl, now + queue.lease, undefined);
    return { fence: null, retryIn: this.retryIn(state, now), ...handedTo };
  }

  /** `tryAcquire` in a shared or limited mode (rule 7). */
  private acquireSharedNow(
    key: string,
    token: string,
    ttl: number,
    queue: QueueOptions | undefined,
    mode: LeaseMode,
  ): AcquireResult {
    const now = monotonicNow();
    const state = this.stateOf(key);
    const handed = this.settle(key, state, now);
    if (state.holders?.has(token)) return this.renewHolder(key, state, token, ttl, now);
    if (state.lease?.token === token) {
      // Handed over as an exclusive lease: cannot happen for a token that only asked in a mode.
      throw new Error(`token ${token} holds ${key} exclusively`);
    }
    const handedTo = handOffFields(handed);
    const heldWith = this.conflict(state, mode);
    if (heldWith !== undefined) {
      return { fence: null, retryIn: this.retryIn(state, now), heldWith, ...handedTo };
    }
    // Free enough for this mode, and nobody queued ahead (the queue's head would have been handed it).
    if (this.fits(state, mode) && !this.waitersAhead(state, token, now)) {
      const lease = this.grantShared(key, state, token, ttl, now, mode);
      this.removeWaiter(state, token);
      return { fence: lease.fence, ...handedTo };
    }
    if (queue) this.joinQueue(state, token, ttl, now + queue.lease, mode);
    else this.forgetIfIdle(key, state);
    return { fence: null, retryIn: this.retryIn(state, now), ...handedTo };
  }

  /** Whether a live waiter is queued ahead of `token` (ahead of everyone, when it is not queued). */
  private waitersAhead(state: KeyState, token: string, now: number): boolean {
    for (const waiter of state.queue) {
      if (waiter.token === token) return false;
      if (waiter.until > now) return true;
    }
    return false;
  }

  private joinQueue(state: KeyState, token: string, ttl: number, until: number, mode: LeaseMode | undefined): void {
    const place = state.queue.find((w) => w.token === token);
    if (place) {
      place.until = until;
      place.ttl = ttl;
      place.mode = mode;
    } else {
      state.queue.push({ token, ttl, until, mode });
    }
  }

  private renewHolder(key: string, state: KeyState, token: string, ttl: number, now: number): AcquireResult {
    const holder = state.holders!.get(token)!;
    holder.endsAt = now + ttl;
    this.removeWaiter(state, token);
    this.armTimer(key, state);
    return { fence: holder.fence };
  }

  /** The time left until the first lease of the key ends (when a place may come free). */
  private retryIn(state: KeyState, now: number): number {
    const ends = state.lease ? state.lease.endsAt : this.firstEnd(state);
    return ends === undefined ? 0 : Math.max(0, Math.ceil(ends - now));
  }

  private firstEnd(state: KeyState): number | undefined {
    let first: number | undefined;
    if (state.holders)
      for (const holder of state.holders.values())
        if (first === undefined || holder.endsAt < first) first = holder.endsAt;
    return first;
  }

  /** How the key is held when that rules out `mode` whatever the holders do (a limit conflict). */
  private conflict(state: KeyState, mode: LeaseMode | undefined): HeldWith | undefined {
    const wanted: HeldWith | undefined = mode?.kind === 'limit' ? `limit:${mode.limit}` : undefined;
    if (state.lease) return wanted === undefined ? undefined : 'exclusive';
    if (state.sharing === undefined || state.sharing === wanted) return undefined;
    if (wanted !== undefined || state.sharing !== 'shared') return state.sharing;
    return undefined;
  }

  /** Whether a holder in `mode` may hold the key together with its holders now. */
  private fits(state: KeyState, mode: LeaseMode | undefined): boolean {
    if (state.lease) return false;
    if (!state.holders) return true;
    if (!mode) return false;
    if (mode.kind === 'shared') return state.sharing === 'shared';
    return state.sharing === `limit:${mode.limit}` && state.holders.size < mode.limit;
  }

  private extendNow(key: string, token: string, ttl: number): boolean {
    const now = monotonicNow();
    const state = this.keys.get(key);
    if (!state) return false;
    this.settle(key, state, now);
    const lease = state.lease?.token === token ? state.lease : state.holders?.get(token);
    if (!lease) return false;
    lease.endsAt = now + ttl;
    this.armTimer(key, state);
    return true;
  }

  private releaseNow(key: string, token: string): ReleaseResult {
    const now = monotonicNow();
    const state = this.keys.get(key);
    if (!state) return { released: false };
    this.removeWaiter(state, token);
    // Expired leases end, and the waiters behind one that left may now take the key.
    let handed = this.settle(key, state, now);
    let released = false;
    if (state.lease?.token === token) {
      state.lease = undefined;
      released = true;
      handed = this.handOff(key, state, now);
    } else if (state.holders?.delete(token)) {
      this.dropHoldersIfNone(state);
      released = true;
      const more = this.handOff(key, state, now);
      if (more) handed = handed ? [...handed, ...more] : more;
      this.armTimer(key, state);
    }
    this.forgetIfIdle(key, state);
    return handed ? { released, ...handOffFields(handed) } : { released };
  }

  subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    return this.run(() => {
      const state = this.stateOf(key);
      (state.listeners ??= new Set()).add(listener);
      return () => {
        state.listeners!.delete(listener);
        if (this.keys.get(key) === state) this.forgetIfIdle(key, state);
      };
    });
  }

  ping(): Promise<void> {
    return this.run(() => undefined);
  }

  close(): Promise<void> {
    this.closed = true;
    this.leaseEnds.clear();
    this.keys.clear();
    return Promise.resolve();
  }

  /** Number of keys with a lease, a waiter or a listener: zero once everything was released. */
  get size(): number {
    return this.keys.size;
  }

  private closedError(): Promise<never> {
    return Promise.reject(new LockBackendError(this.name, 'the backend was closed'));
  }

  private run<T>(operation: () => T): Promise<T> {
    if (this.closed) return this.closedError();
    try {
      return Promise.resolve(operation());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private stateOf(key: string): KeyState {
    let state = this.keys.get(key);
    if (!state) {
      state = { queue: [] };
      this.keys.set(key, state);
    }
    return state;
  }

  /** Ends expired leases and hands the key to the next live waiters; returns the hand-offs, if any. */
  private settle(key: string, state: KeyState, now: number): HandOff[] | undefined {
    if (state.lease) {
      if (state.lease.endsAt > now) return undefined;
      state.lease = undefined;
      return this.handOff(key, state, now);
    }
    if (state.holders) {
      let ended = false;
      for (const [token, holder] of state.holders) {
        if (holder.endsAt <= now) {
          state.holders.delete(token);
          ended = true;
        }
      }
      this.dropHoldersIfNone(state);
      // A waiter that left the queue may have been what held back those behind it (a writer ahead of readers).
      if (!ended && state.holders && state.queue.length === 0) return undefined;
      return this.handOff(key, state, now);
    }
    if (state.queue.length > 0) return this.handOff(key, state, now);
    return undefined;
  }

  private dropHoldersIfNone(state: KeyState): void {
    if (state.holders?.size === 0) {
      state.holders = undefined;
      state.sharing = undefined;
    }
  }

  /**
   * Hands the key to the oldest live waiters, as many as may hold it together, stopping at the first
   * that may not (or announces it free); returns the hand-offs, if any.
   */
  private handOff(key: string, state: KeyState, now: number): HandOff[] | undefined {
    let handed: HandOff[] | undefined;
    for (;;) {
      while (state.queue.length > 0 && state.queue[0].until <= now) state.queue.shift();
      const next = state.queue[0];
      if (!next || !this.fits(state, next.mode)) break;
      state.queue.shift();
      const lease = next.mode
        ? this.grantShared(key, state, next.token, next.ttl, now, next.mode)
        : this.grant(key, state, next.token, next.ttl, now);
      this.emit(state, { type: 'granted', key, token: next.token, fence: lease.fence });
      (handed ??= []).push({ token: next.token, fence: lease.fence });
      if (!next.mode) break;
    }
    if (!handed && state.queue.length === 0 && state.listeners?.size) this.emit(state, { type: 'released', key });
    return handed;
  }

  private grant(key: string, state: KeyState, token: string, ttl: number, now: number): Lease {
    this.lastFence += 1n;
    const lease: Lease = { token, fence: this.lastFence, endsAt: now + ttl };
    state.lease = lease;
    this.armTimer(key, state);
    return lease;
  }

  private grantShared(key: string, state: KeyState, token: string, ttl: number, now: number, mode: LeaseMode): Lease {
    this.lastFence += 1n;
    const lease: Lease = { token, fence: this.lastFence, endsAt: now + ttl };
    if (!state.holders) {
      state.holders = new Map();
      state.sharing = mode.kind === 'shared' ? 'shared' : `limit:${mode.limit}`;
    }
    state.holders.set(token, lease);
    this.armTimer(key, state);
    return lease;
  }

  /** Has the lease of `key`, when it has one, settled when it ends (an extension moves that time). */
  private armTimer(key: string, state: KeyState): void {
    if (state.lease) this.leaseEnds.set(key, state.lease.endsAt);
    else if (state.holders) this.leaseEnds.set(key, this.firstEnd(state)!);
  }

  /** The lease of `key` ran out with nobody calling: the key goes to the next waiter, or is forgotten. */
  private leaseEnded(key: string): void {
    const state = this.keys.get(key);
    if (!state) return;
    this.settle(key, state, monotonicNow());
    this.armTimer(key, state);
    this.forgetIfIdle(key, state);
  }

  private removeWaiter(state: KeyState, token: string): void {
    const index = state.queue.findIndex((w) => w.token === token);
    if (index >= 0) state.queue.splice(index, 1);
  }

  private forgetIfIdle(key: string, state: KeyState): void {
    if (!state.lease && !state.holders && state.queue.length === 0 && !state.listeners?.size) {
      this.leaseEnds.delete(key);
      this.keys.delete(key);
    }
  }

  private emit(state: KeyState, event: LockEvent): void {
    if (!state.listeners?.size) return;
    for (const listener of [...state.listeners]) listener(event);
  }
}

/** The embedded backend: locks for one process. The default when `LockModule` is given no backend. */
export function memoryBackend(): MemoryLockBackend {
  return new MemoryLockBackend();
}
