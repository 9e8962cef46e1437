import { monotonicNow } from '../../lock-clock';

/** How often the map of local waiters is swept of places that lapsed (it is also pruned per key on use). */
const WAITER_SWEEP_INTERVAL = 1_000;

/**
 * Tokens of this process waiting in a key's queue, with the ttl they asked for, whether they asked
 * for an exclusive lease, and the monotonic time their place lapses (counted from the send time of
 * the attempt that joined or refreshed it, so never later than on the server). Lapsed places are
 * dropped: the list sent with each release stays the live waiters.
 */
export class PostgresLocalWaiters {
  private readonly waiting = new Map<string, Map<string, { ttl: number; until: number; exclusive: boolean }>>();
  private nextSweep = 0;

  remember(key: string, token: string, ttl: number, until: number, exclusive = true): void {
    let tokens = this.waiting.get(key);
    if (!tokens) {
      tokens = new Map();
      this.waiting.set(key, tokens);
    }
    tokens.set(token, { ttl, until, exclusive });
    this.sweep(monotonicNow());
  }

  /** The ttl `token` asked for while waiting on `key` here; undefined when it does not wait here. */
  ttl(key: string, token: string): number | undefined {
    return this.waiting.get(key)?.get(token)?.ttl;
  }

  /** Whether `token` waits on `key` here for an exclusive lease (not a shared or limited one). */
  exclusive(key: string, token: string): boolean {
    return this.waiting.get(key)?.get(token)?.exclusive ?? false;
  }

  /** The tokens waiting on `key` here whose place has not lapsed; lapsed ones are forgotten. */
  live(key: string, now: number): string[] {
    this.sweep(now);
    const tokens = this.waiting.get(key);
    if (!tokens) return [];
    for (const [token, place] of tokens) if (place.until <= now) tokens.delete(token);
    if (tokens.size === 0) this.waiting.delete(key);
    return [...tokens.keys()];
  }

  forget(key: string, token: string): void {
    const tokens = this.waiting.get(key);
    if (tokens?.delete(token) && tokens.size === 0) this.waiting.delete(key);
  }

  /** Tokens remembered, over all keys (lapsed ones included until they are swept). */
  get size(): number {
    let n = 0;
    for (const tokens of this.waiting.values()) n += tokens.size;
    return n;
  }

  clear(): void {
    this.waiting.clear();
  }

  /** Drops lapsed places of every key, at most once per WAITER_SWEEP_INTERVAL. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + WAITER_SWEEP_INTERVAL;
    for (const [key, tokens] of this.waiting) {
      for (const [token, place] of tokens) if (place.until <= now) tokens.delete(token);
      if (tokens.size === 0) this.waiting.delete(key);
    }
  }
}
