import type { Pool } from 'pg';
import { PostgresLockBackend } from './postgres-lock.backend';
import { resolvePostgresOptions, type PostgresBackendOptions } from './postgres-lock.options';

/**
 * The PostgreSQL backend: leases in a table on the database clock, fences from a sequence, fair
 * FIFO hand-off with LISTEN/NOTIFY wake-ups, safe behind PgBouncer in transaction mode.
 *
 * ```ts
 * LockModule.forRoot({ backend: postgresBackend({ connection: process.env.DATABASE_URL }) })
 * LockModule.forRoot({ backend: postgresBackend({ pool, listen: directUrl }) }) // pool through PgBouncer
 * ```
 */
export function postgresBackend(options: PostgresBackendOptions | Pool | string): PostgresLockBackend {
  return new PostgresLockBackend(resolvePostgresOptions(options));
}
