import { LockBackendError } from '../../lock.errors';

/**
 * Readers of the lock scripts' replies. Redis answers integers, but ioredis hands them over as
 * strings when the client has `stringNumbers: true` (in arrays and pipelines too, and in every
 * `duplicate()` of such a client), so each reader takes both. A reply of any other shape is a
 * `LockBackendError`, never read as "busy" or "not held".
 */

/** Acquire: granted with `fence`; busy for `retryIn` ms; or busy, and the call handed the lock to `waiter`. */
export type AcquireAnswer =
  | { readonly kind: 'granted'; readonly fence: number }
  | { readonly kind: 'busy'; readonly retryIn: number }
  | { readonly kind: 'handed'; readonly waiter: string; readonly fence: number; readonly retryIn: number };

/** Release: the token held nothing; released; or released and handed to `waiter` with `fence`. */
export type ReleaseAnswer = false | true | { readonly waiter: string; readonly fence: number };

function unexpected(what: string, reply: unknown): never {
  let shown: string;
  try {
    shown = JSON.stringify(reply) ?? String(reply);
  } catch {
    shown = String(reply);
  }
  throw new LockBackendError('redis', `${what}: unexpected reply ${shown.slice(0, 200)} from the lock script`);
}

/** An integer reply, as a number or (with `stringNumbers`) a string of digits. */
export function readInteger(what: string, reply: unknown): number {
  if (typeof reply === 'number') {
    if (Number.isSafeInteger(reply)) return reply;
  } else if (typeof reply === 'string' && /^-?\d{1,16}$/.test(reply)) {
    const value = Number(reply);
    if (Number.isSafeInteger(value)) return value;
  }
  return unexpected(what, reply);
}

/** The acquire script's reply: fence (> 0), -retryIn (<= 0), or [waiter, fence, retryIn]. */
export function readAcquireReply(what: string, reply: unknown): AcquireAnswer {
  if (Array.isArray(reply)) {
    const [waiter, fence, retryIn] = reply as unknown[];
    if (reply.length !== 3 || typeof waiter !== 'string') return unexpected(what, reply);
    return { kind: 'handed', waiter, fence: readInteger(what, fence), retryIn: readInteger(what, retryIn) };
  }
  const value = readInteger(what, reply);
  return value > 0 ? { kind: 'granted', fence: value } : { kind: 'busy', retryIn: 0 - value };
}

/** The release script's reply: 0 (held nothing), 1 (released) or [waiter, fence] (handed over). */
export function readReleaseReply(what: string, reply: unknown): ReleaseAnswer {
  if (Array.isArray(reply)) {
    const [waiter, fence] = reply as unknown[];
    if (reply.length !== 2 || typeof waiter !== 'string') return unexpected(what, reply);
    return { waiter, fence: readInteger(what, fence) };
  }
  return readFlag(what, reply);
}

/** A 0/1 reply (extend: renewed or not held). */
export function readFlag(what: string, reply: unknown): boolean {
  if (reply === 1 || reply === '1') return true;
  if (reply === 0 || reply === '0') return false;
  return unexpected(what, reply);
}
