import type { Logger } from '@nestjs/common';
import type { QueryResult } from 'pg';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow, scheduleAt } from '../../lock-clock';
import { PostgresLockNames, type PostgresLockTableOptions } from './postgres-lock.names';
import { schemaSql } from './postgres-lock.sql';
import type { HousekeepRow, PostgresLockStatements } from './postgres-lock.statements';

/** Rows are deleted only when their lease ended at least this long ago (and 10 statement timeouts). */
const HOUSEKEEPING_GRACE = 60_000;
/** Rows one housekeeping statement deletes at most (per table); a run repeats it until a batch comes back short. */
const HOUSEKEEPING_BATCH = 1_000;
/** Bounds of one housekeeping run; a run that hits one is followed by the next one soon. */
const HOUSEKEEPING_MAX_BATCHES = 100;
const HOUSEKEEPING_RUN_TIME = 10_000;
/** Delay before the next run when the last one stopped at a bound with rows left to delete. */
const HOUSEKEEPING_CATCH_UP_DELAY = 1_000;
/** Bound of the schema migration at start (it may wait for another instance's migration). */
const MIGRATION_TIMEOUT = 60_000;

/**
 * The SQL that creates everything the PostgreSQL backend needs, for teams that run their own
 * migrations (`postgresBackend({ migrate: false })`). Every statement is idempotent; run it in one
 * transaction. The backend runs the same SQL at start when `migrate` is true (the default), under a
 * transaction-level advisory lock, so many instances starting at once do not trip over each other.
 */
export function postgresLockSchemaSql(options: PostgresLockTableOptions = {}): string {
  return schemaSql(new PostgresLockNames(options));
}

/** What schema management needs from its backend. */
export interface PostgresLockSchemaOptions {
  names: PostgresLockNames;
  statements: PostgresLockStatements;
  migrate: boolean;
  statementTimeout: number;
  housekeepingInterval: number;
  /** The database, as error messages name it. */
  database: string;
  /** Sends one statement (no start, no retry); `run` sends one after start, retried once on a lost connection. */
  send(text: string, timeout?: number): Promise<QueryResult>;
  run(text: string): Promise<QueryResult>;
  isClosed(): boolean;
  logger: Logger;
}

/**
 * The lease table's schema: checked at start, created or migrated when missing (or refused, with
 * the SQL to run, when `migrate` is false), and kept small by housekeeping, which deletes rows whose
 * lease ended long ago.
 */
export class PostgresLockSchema {
  private housekeepingBehind = false;
  private cancelHousekeeping: (() => void) | undefined;

  constructor(private readonly options: PostgresLockSchemaOptions) {}

  /** Checks that the tables and every function of this version exist; creates them when allowed. */
  async ensure(): Promise<void> {
    const { names, statements } = this.options;
    const found = (await this.options.send(statements.present())).rows[0].present as boolean;
    if (found) return;
    if (!this.options.migrate) {
      throw new LockBackendError(
        'postgres',
        `the lock table ${names.leases} or its functions are missing in database "${this.options.database}" and migrate is false. ` +
          `Create them with this SQL (also returned by postgresLockSchemaSql()):\n${schemaSql(names)}`,
      );
    }
    // One implicit transaction, under an advisory lock held until it commits.
    await this.options.send(statements.migrate(schemaSql(names), MIGRATION_TIMEOUT), MIGRATION_TIMEOUT);
  }

  /**
   * Runs the housekeeping once: deletes every row whose lease ended long ago, in batches (one
   * statement each) until a batch comes back short, at most HOUSEKEEPING_MAX_BATCHES batches or
   * HOUSEKEEPING_RUN_TIME ms; the next run then follows soon. Returns what it deleted.
   */
  async housekeep(): Promise<{ leases: number; waiters: number }> {
    const grace = Math.max(HOUSEKEEPING_GRACE, 10 * this.options.statementTimeout);
    const deleted = { leases: 0, waiters: 0 };
    const started = monotonicNow();
    for (let batch = 0; batch < HOUSEKEEPING_MAX_BATCHES && !this.options.isClosed(); batch++) {
      const text = this.options.statements.housekeep(grace, HOUSEKEEPING_BATCH);
      const row = (await this.options.run(text)).rows[0] as HousekeepRow;
      // The leases of shared and limited holders count as leases.
      deleted.leases += row.leases + row.holders;
      deleted.waiters += row.waiters;
      if (row.leases < HOUSEKEEPING_BATCH && row.waiters < HOUSEKEEPING_BATCH && row.holders < HOUSEKEEPING_BATCH) {
        this.housekeepingBehind = false;
        return deleted;
      }
      if (monotonicNow() - started >= HOUSEKEEPING_RUN_TIME) break;
    }
    this.housekeepingBehind = true;
    return deleted;
  }

  /** Schedules housekeeping runs every `housekeepingInterval` ms (none when it is 0) until `stop()`. */
  startHousekeeping(first = true): void {
    const every = this.options.housekeepingInterval;
    if (every === 0 || this.options.isClosed()) return;
    // Spread the instances' runs apart; a run that stopped with rows left is followed soon.
    const delay = this.housekeepingBehind
      ? Math.min(every, HOUSEKEEPING_CATCH_UP_DELAY)
      : (first ? Math.random() : 0.75 + Math.random() / 2) * every;
    this.cancelHousekeeping = scheduleAt(monotonicNow() + delay, () => {
      this.housekeep().then(
        () => this.startHousekeeping(false),
        (error: Error) => {
          this.options.logger.warn(`Housekeeping of ${this.options.names.leases} failed: ${error.message}`);
          this.startHousekeeping(false);
        },
      );
    });
  }

  stop(): void {
    this.cancelHousekeeping?.();
  }
}
