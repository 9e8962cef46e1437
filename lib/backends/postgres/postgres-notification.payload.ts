import type { LockEvent } from '../lock-backend';

/**
 * The payloads on a lock table's NOTIFY channel, in one place:
 *
 * - `g <fence> <token>[/<valid for, ms>] <key>`: the key was handed to the waiter `token` with
 *   `fence` (a `granted` event), and `r <fence> <key>`: released with nobody waiting (a `released`
 *   event). Written by the SQL function in `sql/notify.sql`, the only place that writes them;
 *   change both together (the payload test runs that SQL and parses what it sends).
 * - `p <hex>`: a probe of the LISTEN connection (`PostgresNotificationListener`), never an event.
 *
 * The key comes last and is taken whole (it may hold spaces and newlines); fences and tokens hold
 * no space (tokens are hex, see `newLockToken`).
 */

/** Payloads of probes start with this; lock events never do. */
export const PROBE_PREFIX = 'p ';

/** A lock event read from a payload, with the fence it carried. */
export interface LockNotification {
  event: LockEvent;
  /** The fence as sent: of the grant, or of the lease that ended. */
  fence: string;
}

/** The event of a payload written by `sql/notify.sql`; undefined for anything else. */
export function parseLockNotification(payload: string): LockNotification | undefined {
  const type = payload[0];
  const fenceEnd = payload.indexOf(' ', 2);
  if (fenceEnd < 0) return undefined;
  const fence = payload.slice(2, fenceEnd);
  if (type === 'g') {
    const tokenEnd = payload.indexOf(' ', fenceEnd + 1);
    if (tokenEnd < 0) return undefined;
    const key = payload.slice(tokenEnd + 1);
    let token = payload.slice(fenceEnd + 1, tokenEnd);
    const slash = token.indexOf('/');
    const validFor = slash < 0 ? undefined : Number(token.slice(slash + 1));
    if (slash >= 0) token = token.slice(0, slash);
    if (!/^[0-9]+$/.test(fence) || (validFor !== undefined && !Number.isSafeInteger(validFor))) return undefined;
    const event: LockEvent = { type: 'granted', key, token, fence: BigInt(fence) };
    if (validFor !== undefined) event.validFor = validFor;
    return { event, fence };
  }
  if (type === 'r') return { event: { type: 'released', key: payload.slice(fenceEnd + 1) }, fence };
  return undefined;
}

/**
 * What identifies one event on the channel: the same for an event delivered in this process
 * straight from a statement's result and for the notification that statement sent, which is then
 * skipped (see `PostgresLockEvents`).
 */
export function notificationId(event: LockEvent, fence: string): string {
  return `${event.type === 'granted' ? 'g' : 'r'} ${fence} ${event.key}`;
}
