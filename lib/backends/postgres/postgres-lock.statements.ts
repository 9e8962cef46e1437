import type { ExtendItem, LeaseMode } from '../lock-backend';
import { LockBackendError } from '../../lock.errors';
import { loadPg } from './pg.loader';
import type { PostgresLockNames } from './postgres-lock.names';

/** An integer for SQL text; anything else is refused rather than spliced in. */
function sqlInteger(value: number): string {
  if (!Number.isSafeInteger(value)) throw new LockBackendError('postgres', `expected an integer, got ${String(value)}`);
  return String(value);
}

/**
 * The session settings every statement overrides for its own transaction, whatever the role, the
 * database or the connection set as defaults: the lock functions rely on read committed (a fresh
 * snapshot per statement, row locks that wait and then re-check) and on `statement_timeout` as
 * their only bound (a `lock_timeout` would fail ordinary contention).
 */
const TRANSACTION_SETTINGS = `SET LOCAL transaction_isolation = 'read committed'; SET LOCAL lock_timeout = 0;`;

/** The row of `acquire` (fences are bigints, as text). */
export interface AcquireRow {
  fence: string | null;
  retry_in: number | null;
  granted_token: string | null;
  granted_fence: string | null;
  /** Busy because the key is held in a way the attempt's mode cannot share: `'exclusive'`, `'shared'` or `'limit:<n>'`. */
  held_with: string | null;
  /** The hand-offs after the first, of a key handed to several waiters at once (rule 7). */
  also_tokens: string[] | null;
  also_fences: string[] | null;
}

/** The row of `release`. */
export interface ReleaseRow {
  released: boolean;
  ended_fence: string | null;
  granted_token: string | null;
  granted_fence: string | null;
  granted_valid_for: number | null;
  also_tokens: string[] | null;
  also_fences: string[] | null;
}

/** The row of `housekeep`: rows deleted. */
export interface HousekeepRow {
  leases: number;
  waiters: number;
  /** Leases of shared or limited holders. */
  holders: number;
}

/** A lease mode as the SQL functions take it: NULL (exclusive), `'shared'` or `'limit:<n>'`. */
function sqlMode(mode: LeaseMode | undefined): string {
  if (!mode) return 'NULL';
  return mode.kind === 'shared' ? `'shared'` : `'limit:${sqlInteger(mode.limit)}'`;
}

/**
 * The text of every statement the backend sends. Each is one simple query: the `SET LOCAL`s of
 * `TRANSACTION_SETTINGS` and `statement_timeout`, then one call of a lock function, in one implicit
 * transaction and one round trip. Values are escaped literals (no bind parameters, so no prepared
 * statement of any kind): PgBouncer in transaction mode carries them, and nothing outlives the
 * transaction.
 */
export class PostgresLockStatements {
  constructor(
    private readonly names: PostgresLockNames,
    private readonly statementTimeout: number,
    private readonly relaxed: boolean,
  ) {}

  /** Runs `text` read committed, without `lock_timeout`, bounded by `statement_timeout` (all transaction-local). */
  bounded(text: string, timeout = this.statementTimeout): string {
    return `${TRANSACTION_SETTINGS} SET LOCAL statement_timeout = ${sqlInteger(timeout)}; ${text}`;
  }

  /**
   * Columns (`AcquireRow`): fence (NULL = busy), retry_in, granted_token, granted_fence, held_with,
   * also_tokens, also_fences. `mode`: rule 7 of the SPI; undefined: exclusive.
   */
  acquire(key: string, token: string, ttl: number, queueLease?: number, mode?: LeaseMode): string {
    const { escapeLiteral } = loadPg();
    const queue = queueLease === undefined ? 'NULL' : sqlInteger(Math.max(1, Math.ceil(queueLease)));
    return this.bounded(
      `SELECT fence, retry_in, granted_token, granted_fence, held_with, also_tokens, also_fences FROM ${this.names.functions.acquire}(${escapeLiteral(key)}, ${escapeLiteral(token)}, ${sqlInteger(ttl)}, ${queue}, ${this.relaxed}, ${sqlMode(mode)})`,
    );
  }

  /** Column: extended (boolean[], one per item). */
  extend(items: readonly ExtendItem[]): string {
    const { escapeLiteral } = loadPg();
    const keys = items.map((item) => escapeLiteral(item.key)).join(',');
    const tokens = items.map((item) => escapeLiteral(item.token)).join(',');
    const ttls = items.map((item) => sqlInteger(item.ttl)).join(',');
    return this.bounded(
      `SELECT ${this.names.functions.extend}(ARRAY[${keys}]::text[], ARRAY[${tokens}]::text[], ARRAY[${ttls}]::integer[], ${this.relaxed}) AS extended`,
    );
  }

  /**
   * Columns (`ReleaseRow`): released, ended_fence, granted_token, granted_fence, granted_valid_for,
   * also_tokens, also_fences. `localWaiters`: tokens waiting on
   * `key` in the calling process; a hand-off to one of them sends no notification.
   */
  release(key: string, token: string, localWaiters: Iterable<string> = []): string {
    const { escapeLiteral } = loadPg();
    const local = [...localWaiters].map((waiter) => escapeLiteral(waiter)).join(',');
    return this.bounded(
      `SELECT released, ended_fence, granted_token, granted_fence, granted_valid_for, also_tokens, also_fences FROM ${this.names.functions.release}(${escapeLiteral(key)}, ${escapeLiteral(token)}, ${this.relaxed}, ${local ? `ARRAY[${local}]` : 'NULL'})`,
    );
  }

  /** Sends `payload` on the table's channel, the way the lock functions notify (a listener's probe). */
  probe(payload: string): string {
    const { escapeLiteral } = loadPg();
    return this.bounded(`SELECT pg_notify(${escapeLiteral(this.names.channel)}, ${escapeLiteral(payload)})`);
  }

  /**
   * Whether the tables and every function of this schema version exist. Column: present.
   */
  present(): string {
    const { escapeLiteral } = loadPg();
    const checks = [
      ...this.names.tables.map((table) => `to_regclass(${escapeLiteral(table)}) IS NOT NULL`),
      ...this.names.functionSignatures.map((signature) => `to_regprocedure(${escapeLiteral(signature)}) IS NOT NULL`),
    ];
    return this.bounded(`SELECT ${checks.join(' AND ')} AS present`);
  }

  /** The schema SQL, under a transaction-level advisory lock that serialises concurrent migrations. */
  migrate(schemaSql: string, timeout: number): string {
    const { escapeLiteral } = loadPg();
    return this.bounded(
      `SELECT pg_advisory_xact_lock(hashtext(${escapeLiteral(this.names.migrationLockKey)}));\n${schemaSql}`,
      timeout,
    );
  }

  /** Columns (`HousekeepRow`): leases, waiters, holders (rows deleted). */
  housekeep(grace: number, limit: number): string {
    return this.bounded(
      `SELECT leases, waiters, holders FROM ${this.names.functions.housekeep}(${sqlInteger(grace)}, ${sqlInteger(limit)})`,
    );
  }
}
