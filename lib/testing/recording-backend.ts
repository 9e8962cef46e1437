import type {
  AcquireResult,
  ExtendItem,
  LockBackend,
  LockEvent,
  QueueOptions,
  LeaseMode,
} from '../backends/lock-backend';

export interface RecordedCall {
  method: 'tryAcquire' | 'extend' | 'extendMany' | 'release' | 'subscribe';
  key: string;
  token?: string;
  queued?: boolean;
  result?: unknown;
  settled: boolean;
}

/**
 * Wraps a real backend and records every call, so tests can assert what the service asked the
 * backend for (no polling while waiting, one batch per watchdog tick) instead of timing it.
 * `fail` makes chosen methods throw, as a backend that is down would; `gate` holds chosen calls
 * back before they reach the backend, as a slow network or a busy pool would. `holdEvents` holds
 * back what subscriptions deliver, as a slow or lost notification would, until `releaseEvents`.
 * A release through `releaseWithHandOff` is recorded as a 'release' (its result: what it answered).
 */
export class RecordingBackend implements LockBackend {
  readonly calls: RecordedCall[] = [];
  readonly fail = new Set<RecordedCall['method'] | 'ping'>();
  /** When it returns a promise for a call, the call waits for it before it reaches the backend. */
  gate: ((call: RecordedCall) => Promise<void> | undefined) | undefined;
  private waiters: Array<{ test: (c: RecordedCall) => boolean; resolve: (c: RecordedCall) => void }> = [];
  /** Events held back while `holdEvents` is on, with the listener each was for. */
  private heldEvents: Array<{ listener: (event: LockEvent) => void; event: LockEvent }> | undefined;

  constructor(readonly inner: LockBackend) {}

  get name(): string {
    return this.inner.name;
  }

  get recheckInterval(): number | undefined {
    return this.inner.recheckInterval;
  }

  get capabilities(): LockBackend['capabilities'] {
    return this.inner.capabilities;
  }

  /** Calls to `method` for `token` so far. */
  count(method: RecordedCall['method'], token?: string): number {
    return this.calls.filter((c) => c.method === method && (token === undefined || c.token === token)).length;
  }

  /** Resolves with the first settled call (past or future) that matches. */
  whenSettled(test: (c: RecordedCall) => boolean): Promise<RecordedCall> {
    const seen = this.calls.find((c) => c.settled && test(c));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }

  /** Resolves when a queued attempt on `key` came back busy: a waiter has joined the queue. */
  whenQueued(key: string, nth = 1): Promise<RecordedCall> {
    let seen = 0;
    return this.whenSettled(
      (c) =>
        c.method === 'tryAcquire' &&
        c.key === key &&
        c.queued === true &&
        (c.result as AcquireResult)?.fence === null &&
        ++seen >= nth,
    );
  }

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions, mode?: LeaseMode): Promise<AcquireResult> {
    return this.record({ method: 'tryAcquire', key, token, queued: queue !== undefined, settled: false }, () =>
      this.inner.tryAcquire(key, token, ttl, queue, mode),
    );
  }

  extend(key: string, token: string, ttl: number): Promise<boolean> {
    return this.record({ method: 'extend', key, token, settled: false }, () => this.inner.extend(key, token, ttl));
  }

  get extendMany(): LockBackend['extendMany'] {
    const inner = this.inner.extendMany?.bind(this.inner);
    if (!inner) return undefined;
    return (items: readonly ExtendItem[]) =>
      this.record({ method: 'extendMany', key: items[0]?.key ?? '', result: items.length, settled: false }, () =>
        inner(items),
      );
  }

  release(key: string, token: string): Promise<boolean> {
    return this.record({ method: 'release', key, token, settled: false }, () => this.inner.release(key, token));
  }

  get releaseWithHandOff(): LockBackend['releaseWithHandOff'] {
    const inner = this.inner.releaseWithHandOff?.bind(this.inner);
    if (!inner) return undefined;
    return (key: string, token: string) =>
      this.record({ method: 'release', key, token, settled: false }, () => inner(key, token));
  }

  subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    const deliver = (event: LockEvent): void => {
      if (this.heldEvents) this.heldEvents.push({ listener, event });
      else listener(event);
    };
    return this.record({ method: 'subscribe', key, settled: false }, () => this.inner.subscribe(key, deliver));
  }

  /** From now on, events that subscriptions deliver are held back (in order) until `releaseEvents`. */
  holdEvents(): void {
    this.heldEvents ??= [];
  }

  /** Delivers the events held back, in order, and stops holding them; returns how many there were. */
  releaseEvents(): number {
    const held = this.heldEvents ?? [];
    this.heldEvents = undefined;
    for (const { listener, event } of held) listener(event);
    return held.length;
  }

  ping(): Promise<void> {
    if (this.fail.has('ping')) return Promise.reject(new Error('injected failure: ping'));
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async record<T>(call: RecordedCall, run: () => T | Promise<T>): Promise<T> {
    this.calls.push(call);
    try {
      if (this.fail.has(call.method)) throw new Error(`injected failure: ${call.method}`);
      const held = this.gate?.(call);
      if (held) await held;
      const result = await run();
      if (call.method !== 'extendMany') call.result = result;
      return result;
    } finally {
      call.settled = true;
      this.waiters = this.waiters.filter((w) => {
        if (!w.test(call)) return true;
        w.resolve(call);
        return false;
      });
    }
  }
}
