import type { Pool, PoolClient, QueryConfig, QueryResult } from 'pg';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow, scheduleAt } from '../../lock-clock';
import { describeWhere, type PostgresTarget } from './postgres-connections';
import { describeFailure, isTransient, markNotSent } from './postgres-error.classifier';
import type { PostgresLockNames } from './postgres-lock.names';

/** Tries of one statement that the server rolled back for a transient reason (deadlock, serialisation, lock or server timeout). */
const MAX_STATEMENT_TRIES = 4;

type Query = QueryConfig & { query_timeout?: number };

/**
 * Sends the backend's statements through the pool, each bounded from the wait for a connection to
 * the server's answer, and turns failures into `LockBackendError`s that say what happened (see
 * `postgres-error.classifier.ts`).
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
          if (
            !this.isClosed() &&
            tries < MAX_STATEMENT_TRIES &&
            elapsed < timeout &&
            isTransient(error, elapsed, timeout)
          ) {
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
        const pool = this.pool;
        const error = new LockBackendError(
          'postgres',
          `no pool connection within ${timeout} ms; pool max ${pool.options?.max ?? 10} (${pool.totalCount} open, ` +
            `${pool.waitingCount} waiting) for ${this.where()}`,
        );
        reject(markNotSent(error));
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
    return describeWhere(this.target);
  }

  private failure(error: unknown, lockStatement: boolean, elapsed: number, timeout: number): LockBackendError {
    return describeFailure(error, { lockStatement, elapsed, timeout, where: this.where(), leases: this.names.leases });
  }
}

/** A short, growing, jittered pause before a statement is sent again. */
function pause(tries: number): Promise<void> {
  return new Promise((resolve) => scheduleAt(monotonicNow() + Math.random() * 5 * tries, resolve));
}
