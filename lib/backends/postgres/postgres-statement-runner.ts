import type { Pool, PoolClient, QueryConfig, QueryResult } from 'pg';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow, scheduleAt } from '../../lock-clock';
import type { PostgresLockNames } from './postgres-lock.schema';

/** Tries of one statement that the server rolled back for a transient reason (deadlock, serialisation, lock or server timeout). */
const MAX_STATEMENT_TRIES = 4;
/** SQLSTATEs after which the whole transaction was rolled back and may simply be sent again. */
const TRANSIENT_CODES = new Set(['40P01', '40001', '55P03']);
/** SQLSTATEs of a connection that was lost (terminated, shut down, or not accepting yet). */
const CONNECTION_LOST_CODES = new Set(['57P01', '57P02', '57P03']);

type Query = QueryConfig & { query_timeout?: number };

/** Where the backend's statements go, as error messages may show it (never a password). */
export interface PostgresTarget {
  host: string;
  port: number;
  database: string;
  user: string;
}

/** Errors of statements that never reached the server: nothing to give back after them. */
const NOT_SENT = new WeakSet<object>();

/** Whether `error` is one of a statement that was never sent (no pool connection in time). */
export function wasNotSent(error: unknown): boolean {
  return typeof error === 'object' && error !== null && NOT_SENT.has(error);
}

/**
 * Sends the backend's statements through the pool, each bounded from the wait for a connection to
 * the server's answer, and turns failures into `LockBackendError`s that say what happened.
 */
export class PostgresStatementRunner {
  constructor(
    private readonly pool: Pool,
    readonly target: PostgresTarget,
    private readonly names: PostgresLockNames,
    private readonly statementTimeout: number,
    private readonly isClosed: () => boolean,
  ) {}

  /**
   * Sends one simple query (statements from `PostgresLockStatements`: one implicit transaction, one
   * round trip) on a pool connection waited for at most `timeout` ms. A statement the server rolled
   * back for a transient reason is sent again on the same connection, a bounded number of times
   * and only while its bound lasts. Failures become `LockBackendError`s that name the server.
   */
  async send(text: string, lockStatement: boolean, timeout = this.statementTimeout): Promise<QueryResult> {
    const client = await this.connect(timeout);
    // A connection that fails while checked out emits 'error' on its client (pool.query listens the
    // same way); the statement in flight fails with it, and the client is then dropped.
    let failed: Error | undefined;
    const onError = (error: Error): void => {
      failed = error;
    };
    client.on('error', onError);
    const query: Query = {
      text,
      // A server that stopped answering: the connection is dropped a little after the server's own bound.
      query_timeout: timeout + 2_000,
    };
    const started = monotonicNow();
    try {
      for (let tries = 1; ; tries++) {
        try {
          const results = (await client.query(query)) as unknown as QueryResult[] | QueryResult;
          return Array.isArray(results) ? results[results.length - 1] : results;
        } catch (error) {
          const elapsed = monotonicNow() - started;
          if (!this.isClosed() && tries < MAX_STATEMENT_TRIES && elapsed < timeout && isTransient(error, elapsed, timeout)) {
            await pause(tries);
            continue;
          }
          failed ??= error instanceof Error ? error : new Error(String(error));
          throw this.failure(error, lockStatement, elapsed, timeout);
        }
      }
    } finally {
      client.off('error', onError);
      // A connection whose statement failed is not reused (as pool.query does).
      client.release(failed);
    }
  }

  /**
   * A client of the pool, waited for at most `timeout` ms: neither pg's pool (whose
   * `connectionTimeoutMillis` is 0, no bound, unless set) nor the server bounds that wait. A client
   * that arrives after the bound goes straight back to the pool.
   */
  private connect(timeout: number): Promise<PoolClient> {
    return new Promise<PoolClient>((resolve, reject) => {
      let done = false;
      const cancel = scheduleAt(monotonicNow() + timeout, () => {
        if (done) return;
        done = true;
        const pool = this.pool as unknown as { options?: { max?: number }; totalCount: number; waitingCount: number };
        const error = new LockBackendError(
          'postgres',
          `no pool connection within ${timeout} ms; pool max ${pool.options?.max ?? 10} (${pool.totalCount} open, ` +
            `${pool.waitingCount} waiting) for ${this.where()}`,
        );
        NOT_SENT.add(error);
        reject(error);
      });
      this.pool.connect().then(
        (client) => {
          cancel();
          if (done) return client.release();
          done = true;
          resolve(client);
        },
        (error: unknown) => {
          cancel();
          if (done) return;
          done = true;
          reject(this.failure(error, false, 0, timeout));
        },
      );
    });
  }

  /** Where the statements go, as messages show it (never a password). */
  where(): string {
    const { host, port, database, user } = this.target;
    return `PostgreSQL at ${host}:${port}, database "${database}", user "${user}"`;
  }

  /** A statement's failure as a `LockBackendError` that names the server and says which bound, if any, ended it. */
  failure(error: unknown, lockStatement: boolean, elapsed: number, timeout: number): LockBackendError {
    if (error instanceof LockBackendError) return error;
    const where = this.where();
    const err = error as Error & { code?: string };
    const message = err?.message ?? String(error);
    const statement = lockStatement ? 'a lock statement' : 'a statement';
    let text: string;
    if (err?.code === '57014' && elapsed >= timeout - 1) text = `${statement} ran past statementTimeout (${timeout} ms) on ${where}`;
    else if (err?.code === '57014') {
      // Not our bound: the server's own statement_timeout (of the role, database or connection),
      // which cuts in before our SET LOCAL takes effect, or a cancel by someone else.
      text = `the server canceled ${statement} after ${Math.round(elapsed)} ms, before our statementTimeout (${timeout} ms), on ${where}: ${message}`;
    } else if (err?.code === '55P03') {
      text = `${statement} gave up waiting for a lock on ${where} (the server's lock_timeout): ${message}`;
    } else if (err?.code === '42P01' || err?.code === '42883') {
      text = `${message} on ${where}: the lock table ${this.names.leases} or its functions are missing (see postgresLockSchemaSql())`;
    } else if (!isSqlState(err?.code) || err.code!.startsWith('08') || CONNECTION_LOST_CODES.has(err.code!)) {
      text = `cannot reach ${where}: ${message}`;
    } else text = `${statement} failed on ${where}: ${message}`;
    return new LockBackendError('postgres', text, { cause: error });
  }
}

/**
 * Whether the server rolled back the whole statement for a reason that a second try may not meet:
 * a deadlock or serialisation failure, a lock_timeout, or a statement timeout that was not ours
 * (a tiny statement_timeout of the role or database cuts in before our SET LOCAL).
 */
function isTransient(error: unknown, elapsed: number, timeout: number): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return false;
  return TRANSIENT_CODES.has(code) || (code === '57014' && elapsed < timeout - 1);
}

/** A short, growing, jittered pause before a statement is sent again. */
function pause(tries: number): Promise<void> {
  return new Promise((resolve) => scheduleAt(monotonicNow() + Math.random() * 5 * tries, resolve));
}

function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

/** Whether a statement failed because its connection was lost (and may be sent again on another). */
export function isConnectionLost(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (!cause) return false;
  if (isSqlState(cause.code)) return cause.code.startsWith('08') || CONNECTION_LOST_CODES.has(cause.code);
  if (cause.message === 'Query read timeout') return false;
  return true;
}
