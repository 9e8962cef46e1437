import { LeaseExpiries } from '../../lease-expiries';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow } from '../../lock-clock';
import type { AcquireResult, HandOff, LockBackend, LockEvent, QueueOptions, ReleaseResult } from '../lock-backend';

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
}

interface KeyState {
  lease?: Lease;
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
  readonly capabilities = { fifo: true, fencing: 'strict' } as const;
  private readonly keys = new Map<string, KeyState>();
  /** When each leased key's lease ends; the lease is settled then (one timer for every key). */
  private readonly leaseEnds = new LeaseExpiries<string>((key) => this.leaseEnded(key));
  private lastFence = 0n;
  private closed = false;

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions): AcquireResult | Promise<AcquireResult> {
    if (this.closed) return this.closedError();
    try {
      return this.acquireNow(key, token, ttl, queue);
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
    if (!state.lease) {
      const lease = this.grant(key, state, token, ttl, now);
      this.removeWaiter(state, token);
      return { fence: lease.fence };
    }
    const handedTo = handed && { handedTo: handed };
    if (queue) {
      const place = state.queue.find((w) => w.token === token);
      if (place) {
        place.until = now + queue.lease;
        place.ttl = ttl;
      } else {
        state.queue.push({ token, ttl, until: now + queue.lease });
      }
    }
    return { fence: null, retryIn: Math.max(0, Math.ceil(state.lease.endsAt - now)), ...handedTo };
  }

  private extendNow(key: string, token: string, ttl: number): boolean {
    const now = monotonicNow();
    const state = this.keys.get(key);
    if (!state) return false;
    this.settle(key, state, now);
    if (state.lease?.token !== token) return false;
    state.lease.endsAt = now + ttl;
    this.armTimer(key, state);
    return true;
  }

  private releaseNow(key: string, token: string): ReleaseResult {
    const now = monotonicNow();
    const state = this.keys.get(key);
    if (!state) return { released: false };
    this.removeWaiter(state, token);
    this.settle(key, state, now);
    let result: ReleaseResult = { released: false };
    if (state.lease?.token === token) {
      state.lease = undefined;
      const handedTo = this.handOff(key, state, now);
      result = handedTo ? { released: true, handedTo } : { released: true };
    }
    this.forgetIfIdle(key, state);
    return result;
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

  /** Ends an expired lease and hands the key to the next live waiter; returns the hand-off, if any. */
  private settle(key: string, state: KeyState, now: number): HandOff | undefined {
    if (state.lease && state.lease.endsAt <= now) {
      state.lease = undefined;
      return this.handOff(key, state, now);
    }
    if (!state.lease && state.queue.length > 0) return this.handOff(key, state, now);
    return undefined;
  }

  /** Hands the free key to the oldest live waiter (or announces it free); returns the hand-off, if any. */
  private handOff(key: string, state: KeyState, now: number): HandOff | undefined {
    while (state.queue.length > 0 && state.queue[0].until <= now) state.queue.shift();
    const next = state.queue.shift();
    if (!next) {
      if (state.listeners?.size) this.emit(state, { type: 'released', key });
      return undefined;
    }
    const lease = this.grant(key, state, next.token, next.ttl, now);
    this.emit(state, { type: 'granted', key, token: next.token, fence: lease.fence });
    return { token: next.token, fence: lease.fence };
  }

  private grant(key: string, state: KeyState, token: string, ttl: number, now: number): Lease {
    this.lastFence += 1n;
    const lease: Lease = { token, fence: this.lastFence, endsAt: now + ttl };
    state.lease = lease;
    this.armTimer(key, state);
    return lease;
  }

  /** Has the lease of `key`, when it has one, settled when it ends (an extension moves that time). */
  private armTimer(key: string, state: KeyState): void {
    if (state.lease) this.leaseEnds.set(key, state.lease.endsAt);
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
    if (!state.lease && state.queue.length === 0 && !state.listeners?.size) {
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
