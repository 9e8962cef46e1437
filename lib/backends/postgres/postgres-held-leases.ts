import { driftMargin } from '../../lock.constants';

/**
 * Leases of this process that are certainly live: granted to one of its tokens, and not past the
 * send time of the statement that granted or extended them plus their ttl (less the drift margin).
 * A plain attempt on such a key by another token is busy without asking the server.
 */
export class PostgresHeldLeases {
  private readonly held = new Map<string, { token: string; until: number }>();

  /**
   * When `key` is certainly held here by a token other than `token` at `now`: the ms left on it.
   * A lease past its end is forgotten.
   */
  busyFor(key: string, token: string, now: number): number | undefined {
    const lease = this.held.get(key);
    if (!lease || lease.token === token) return undefined;
    if (lease.until > now) return Math.ceil(lease.until - now);
    this.held.delete(key);
    return undefined;
  }

  /** `token` holds `key` for `certainFor` ms from `sentAt` (the send time of the statement), out of a ttl of `ttl`. */
  hold(key: string, token: string, sentAt: number, ttl: number, certainFor = ttl): void {
    this.held.set(key, { token, until: sentAt + certainFor - driftMargin(ttl) });
  }

  /**
   * The outcome of an extension of `token`'s lease on `key` sent at `sentAt`: the renewed end, shorter
   * or longer (an extend to end a lease sooner, a minHold must not leave this process answering busy
   * past it), or forgotten when it was not extended.
   */
  extended(key: string, token: string, sentAt: number, ttl: number, extended: boolean): void {
    const lease = this.held.get(key);
    if (lease?.token !== token) return;
    if (extended) lease.until = sentAt + ttl - driftMargin(ttl);
    else this.held.delete(key);
  }

  /** Forgets `key` when `token` holds it here. */
  released(key: string, token: string): void {
    if (this.held.get(key)?.token === token) this.held.delete(key);
  }

  /** Forgets `key`, whoever holds it. */
  forget(key: string): void {
    this.held.delete(key);
  }

  clear(): void {
    this.held.clear();
  }
}
