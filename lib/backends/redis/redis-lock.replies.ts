import { LockBackendError } from '../../lock.errors';
import type { HeldWith } from '../lock-backend';

/**
 * Readers of the lock scripts' replies. Redis answers integers, but ioredis hands them over as
 * strings when the client has `stringNumbers: true` (in arrays and pipelines too, and in every
 * `duplicate()` of such a client), so each reader takes both. A reply of any other shape is a
 * `LockBackendError`, never read as "busy" or "not held".
 */

/** A hand-off a script made: the lock (or a place) went to the queued waiter `waiter` with `fence`. */
export interface HandedAnswer {
  readonly waiter: string;
  readonly fence: number;
}

/**
 * Acquire: granted with `fence`; or busy for `retryIn` ms, with `heldWith` when the key is held in a
 * mode the attempt cannot share it with (rule 7). `handed`: the waiters the call handed the lock to.
 */
export type AcquireAnswer =
  | { readonly kind: 'granted'; readonly fence: number; readonly handed?: readonly HandedAnswer[] }
  | {
      readonly kind: 'busy';
      readonly retryIn: number;
      readonly heldWith?: HeldWith;
      readonly handed?: readonly HandedAnswer[];
    };

/** Release: the token held nothing; released; or released and handed to these waiters (at least one). */
export type ReleaseAnswer = false | true | readonly HandedAnswer[];

/** How a key is held, as the acquire script reports a conflict of modes ('' for none). */
const HELD_WITH = /^(?:|exclusive|shared|limit:[1-9]\d{0,15})$/;

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

/**
 * The acquire script's reply: fence (> 0), -retryIn (<= 0), or
 * [heldWith, fence or -retryIn, waiter, fence, waiter, fence, ...] (heldWith '' for none).
 */
export function readAcquireReply(what: string, reply: unknown): AcquireAnswer {
  if (!Array.isArray(reply)) {
    const value = readInteger(what, reply);
    return value > 0 ? { kind: 'granted', fence: value } : { kind: 'busy', retryIn: 0 - value };
  }
  const [heldWith, result] = reply as unknown[];
  if (reply.length < 2 || reply.length % 2 !== 0 || typeof heldWith !== 'string' || !HELD_WITH.test(heldWith)) {
    return unexpected(what, reply);
  }
  const value = readInteger(what, result);
  const handed = readHandOffs(what, reply, 2);
  if (value > 0) {
    if (heldWith !== '') return unexpected(what, reply);
    return handed.length > 0 ? { kind: 'granted', fence: value, handed } : { kind: 'granted', fence: value };
  }
  return {
    kind: 'busy',
    retryIn: 0 - value,
    ...(heldWith !== '' && { heldWith: heldWith as HeldWith }),
    ...(handed.length > 0 && { handed }),
  };
}

/** The release script's reply: 0 (held nothing), 1 (released) or [waiter, fence, ...] (handed over). */
export function readReleaseReply(what: string, reply: unknown): ReleaseAnswer {
  if (Array.isArray(reply)) {
    if (reply.length < 2 || reply.length % 2 !== 0) return unexpected(what, reply);
    return readHandOffs(what, reply, 0);
  }
  return readFlag(what, reply);
}

/** The pairs waiter, fence of `reply` from index `from` on. */
function readHandOffs(what: string, reply: readonly unknown[], from: number): HandedAnswer[] {
  const handed: HandedAnswer[] = [];
  for (let i = from; i < reply.length; i += 2) {
    const waiter = reply[i];
    if (typeof waiter !== 'string') return unexpected(what, reply);
    handed.push({ waiter, fence: readInteger(what, reply[i + 1]) });
  }
  return handed;
}

/** A 0/1 reply (extend: renewed or not held). */
export function readFlag(what: string, reply: unknown): boolean {
  if (reply === 1 || reply === '1') return true;
  if (reply === 0 || reply === '0') return false;
  return unexpected(what, reply);
}
