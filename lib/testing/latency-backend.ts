import type {
  AcquireResult,
  ExtendItem,
  LockBackend,
  LockEvent,
  QueueOptions,
  LeaseMode,
} from '../backends/lock-backend';

/** A backend call the wrapper has let through and not answered yet. */
export interface CallInFlight {
  method: 'tryAcquire' | 'extend' | 'extendMany' | 'release' | 'subscribe';
  key: string;
  tokens: string[];
}

/**
 * Wraps a real backend and delays every call by a random 0..`maxDelay` ms on the way in and again
 * on the way out, as a busy network or a pool with several connections would: calls of one client
 * can overtake each other. `maxDelay` can be changed at any time. Records the calls in flight and
 * the token of every attempt, so a test can tell which attempt a token belongs to and wait until no
 * call of a given token is under way.
 */
export class LatencyBackend implements LockBackend {
  maxDelay = 0;
  /**
   * Whether calls may overtake each other on the way in (true, as across a pool's connections), or
   * reach the backend in the order they were made (false, as on one connection).
   */
  reorder = true;
  private lastDispatch: Promise<void> = Promise.resolve();
  readonly inFlight = new Set<CallInFlight>();
  /** Tokens in the order their first attempt was made. */
  readonly tokens: string[] = [];

  /**
   * `onAttempt` is called with the token of every attempt, synchronously, in the async context of
   * the call that made it (a test can tell from there which of its acquires the token belongs to).
   */
  constructor(
    readonly inner: LockBackend,
    private readonly random: () => number = Math.random,
    private readonly onAttempt?: (token: string) => void,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get recheckInterval(): number | undefined {
    return this.inner.recheckInterval;
  }

  get capabilities(): LockBackend['capabilities'] {
    return this.inner.capabilities;
  }

  /** Whether a call carrying one of `tokens` is under way. */
  busyWith(tokens: ReadonlySet<string>): boolean {
    for (const call of this.inFlight) if (call.tokens.some((t) => tokens.has(t))) return true;
    return false;
  }

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions, mode?: LeaseMode): Promise<AcquireResult> {
    if (!this.tokens.includes(token)) this.tokens.push(token);
    this.onAttempt?.(token);
    return this.delayed({ method: 'tryAcquire', key, tokens: [token] }, () =>
      this.inner.tryAcquire(key, token, ttl, queue, mode),
    );
  }

  extend(key: string, token: string, ttl: number): Promise<boolean> {
    return this.delayed({ method: 'extend', key, tokens: [token] }, () => this.inner.extend(key, token, ttl));
  }

  get extendMany(): LockBackend['extendMany'] {
    const inner = this.inner.extendMany?.bind(this.inner);
    if (!inner) return undefined;
    return (items: readonly ExtendItem[]) =>
      this.delayed({ method: 'extendMany', key: items[0]?.key ?? '', tokens: items.map((i) => i.token) }, () =>
        inner(items),
      );
  }

  release(key: string, token: string): Promise<boolean> {
    return this.delayed({ method: 'release', key, tokens: [token] }, () => this.inner.release(key, token));
  }

  get releaseWithHandOff(): LockBackend['releaseWithHandOff'] {
    const inner = this.inner.releaseWithHandOff?.bind(this.inner);
    if (!inner) return undefined;
    return (key: string, token: string) =>
      this.delayed({ method: 'release', key, tokens: [token] }, () => inner(key, token));
  }

  subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    return this.delayed({ method: 'subscribe', key, tokens: [] }, () => this.inner.subscribe(key, listener));
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private pause(): Promise<void> {
    const ms = Math.floor(this.random() * (this.maxDelay + 1));
    return ms === 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
  }

  private async delayed<T>(call: CallInFlight, run: () => T | Promise<T>): Promise<T> {
    this.inFlight.add(call);
    try {
      if (this.reorder) await this.pause();
      else await (this.lastDispatch = this.lastDispatch.then(() => this.pause()));
      const result = await run();
      await this.pause();
      return result;
    } finally {
      this.inFlight.delete(call);
    }
  }
}
