import { LockBackendError } from '../../lock.errors';

/**
 * What a PostgreSQL failure means for the backend, in one place: which ones a statement may simply
 * be sent again after, which ones lost the connection, which statements never reached the server,
 * and the `LockBackendError` message that says what happened.
 */

/** SQLSTATEs after which the whole transaction was rolled back and may simply be sent again. */
const TRANSIENT_CODES = new Set(['40P01', '40001', '55P03']);
/** SQLSTATEs of a connection that was lost (terminated, shut down, or not accepting yet). */
const CONNECTION_LOST_CODES = new Set(['57P01', '57P02', '57P03']);
/** query_canceled: a statement_timeout, ours or the server's, or a cancel by someone else. */
const CANCELED = '57014';
const LOCK_NOT_AVAILABLE = '55P03';
/** undefined_table, undefined_function: the schema is missing (or of another version). */
const MISSING_OBJECT_CODES = new Set(['42P01', '42883']);

/** Errors of statements that never reached the server: nothing to give back after them. */
const NOT_SENT = new WeakSet<object>();

/** Marks `error` as the failure of a statement that was never sent (no pool connection in time). */
export function markNotSent<E extends object>(error: E): E {
  NOT_SENT.add(error);
  return error;
}

/** Whether `error` is one of a statement that was never sent (no pool connection in time). */
export function wasNotSent(error: unknown): boolean {
  return typeof error === 'object' && error !== null && NOT_SENT.has(error);
}

function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

function isConnectionLostCode(code: string): boolean {
  return code.startsWith('08') || CONNECTION_LOST_CODES.has(code);
}

/**
 * Whether the server rolled back the whole statement for a reason that a second try may not meet:
 * a deadlock or serialisation failure, a lock_timeout, or a statement timeout that was not ours
 * (a tiny statement_timeout of the role or database cuts in before our SET LOCAL).
 */
export function isTransient(error: unknown, elapsed: number, timeout: number): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return false;
  return TRANSIENT_CODES.has(code) || (code === CANCELED && elapsed < timeout - 1);
}

/** Whether a statement failed (as a `LockBackendError`) because its connection was lost, and may be sent again on another. */
export function isConnectionLost(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (!cause) return false;
  if (isSqlState(cause.code)) return isConnectionLostCode(cause.code);
  if (cause.message === 'Query read timeout') return false;
  return true;
}

/** What a failure message says about the statement and the server. */
export interface FailureContext {
  /** A lock statement (acquire, extend, release) or another one. */
  lockStatement: boolean;
  /** Time from the first send to the failure, and the statement's bound, in ms. */
  elapsed: number;
  timeout: number;
  /** Where the statement went, never with a password (`PostgreSQL at host:port, database …`). */
  where: string;
  /** The lease table, named when the schema is missing. */
  leases: string;
}

/** A statement's failure as a `LockBackendError` that names the server and says which bound, if any, ended it. */
export function describeFailure(error: unknown, context: FailureContext): LockBackendError {
  if (error instanceof LockBackendError) return error;
  const { where, elapsed, timeout } = context;
  const err = error as Error & { code?: string };
  const message = err?.message ?? String(error);
  const statement = context.lockStatement ? 'a lock statement' : 'a statement';
  const code = err?.code;
  let text: string;
  if (code === CANCELED && elapsed >= timeout - 1)
    text = `${statement} ran past statementTimeout (${timeout} ms) on ${where}`;
  else if (code === CANCELED) {
    // Not our bound: the server's own statement_timeout (of the role, database or connection),
    // which cuts in before our SET LOCAL takes effect, or a cancel by someone else.
    text = `the server canceled ${statement} after ${Math.round(elapsed)} ms, before our statementTimeout (${timeout} ms), on ${where}: ${message}`;
  } else if (code === LOCK_NOT_AVAILABLE) {
    text = `${statement} gave up waiting for a lock on ${where} (the server's lock_timeout): ${message}`;
  } else if (code !== undefined && MISSING_OBJECT_CODES.has(code)) {
    text = `${message} on ${where}: the lock table ${context.leases} or its functions are missing (see postgresLockSchemaSql())`;
  } else if (!isSqlState(code) || isConnectionLostCode(code)) {
    text = `cannot reach ${where}: ${message}`;
  } else text = `${statement} failed on ${where}: ${message}`;
  return new LockBackendError('postgres', text, { cause: error });
}
