import type { HandOff, LockEvent } from '../lock-backend';
import type { PostgresHeldLeases } from './postgres-held-leases';
import type { PostgresLocalWaiters } from './postgres-local-waiters';
import type { PostgresLockEvents } from './postgres-lock.events';

/**
 * The hand-offs that statements of this process made, delivered here: the new holder's lease is
 * known held (or forgotten), and a waiter of this process is woken at once.
 */
export class PostgresHandOffs {
  constructor(
    private readonly waiters: PostgresLocalWaiters,
    private readonly held: PostgresHeldLeases,
    private readonly events: PostgresLockEvents,
  ) {}

  /**
   * A statement of this process handed `key` to `token`: wake it here if it waits here; returns the
   * hand-off for the caller. `validFor`: set when the hand-off was committed without waiting for its
   * flush (see `sql/release.sql`).
   */
  handedOver(
    key: string,
    token: string,
    fence: string,
    sentAt: number,
    notified: boolean,
    validFor: number | null,
  ): HandOff {
    const ttl = this.waiters.ttl(key, token);
    const exclusive = this.waiters.exclusive(key, token);
    this.waiters.forget(key, token);
    // Only an exclusive lease of this process makes a plain attempt busy here (see PostgresHeldLeases).
    if (ttl === undefined || !exclusive) this.held.forget(key);
    else this.held.hold(key, token, sentAt, ttl, Math.min(ttl, validFor ?? ttl));
    const event: LockEvent = { type: 'granted', key, token, fence: BigInt(fence) };
    if (validFor !== null) event.validFor = validFor;
    this.events.deliver(event, notified ? fence : undefined);
    return validFor === null ? { token, fence: event.fence } : { token, fence: event.fence, validFor };
  }
}
