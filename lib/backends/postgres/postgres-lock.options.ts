import type { ClientConfig, Pool, PoolConfig } from 'pg';
import { MAX_TIMER_DELAY } from '../../lock.constants';
import { InvalidLockOptionsError } from '../../lock.errors';
import { describeValue, validateOptionsObject } from '../../lock.validation';
import { PostgresLockNames, type PostgresLockTableOptions } from './postgres-lock.names';

/** Options of `postgresBackend(...)`. Give either `pool` or `connection`. */
export interface PostgresBackendOptions extends PostgresLockTableOptions {
  /**
   * A `pg` Pool of yours. The backend sends its statements through it and never ends it; give it an
   * `'error'` listener, as every pg Pool needs one (idle connections can be terminated by the server).
   * It may point at PgBouncer in transaction pooling mode: then set `listen` to PostgreSQL itself.
   */
  pool?: Pool;
  /**
   * A connection string or pg Pool settings: the backend opens a pool of its own and ends it in
   * `close()`. Default pool size 10 and connection timeout 5000 ms unless given.
   */
  connection?: string | PoolConfig;
  /**
   * Where the one LISTEN connection goes: a connection string or pg Client settings. Defaults to the
   * pool's own settings. Set it to PostgreSQL directly when the pool goes through PgBouncer in
   * transaction mode (LISTEN needs a session of its own).
   */
  listen?: string | ClientConfig;
  /** Create the schema, tables, sequence and functions at start when missing. Default true. */
  migrate?: boolean;
  /** Bound of every lock statement on the server (`statement_timeout`), in ms. Default 5000. */
  statementTimeout?: number;
  /**
   * How often a waiter re-checks a busy key while the LISTEN connection is down, in ms. Default 500.
   * While it is up, waiters are woken by notifications and re-check only every 30 s as a safety net.
   */
  recheckInterval?: number;
  /** How often expired rows are cleaned up, in ms; 0 turns housekeeping off. Default 60000. */
  housekeepingInterval?: number;
  /**
   * `'full'` (default): every grant, hand-off, extension and release commits durably (it waits for
   * the WAL flush), so leases survive a PostgreSQL crash. `'relaxed'`: lock statements commit
   * without waiting for the flush, saving one disk flush per statement; after a PostgreSQL crash
   * (not a clean restart) the last moments of lock changes may be undone, so a holder may lose its
   * lease silently and another may acquire before the holder's watchdog notices: mutual exclusion
   * across a crash then rests on fencing. Fences stay safe in both modes.
   */
  durability?: PostgresDurability;
  /** `application_name` of the connections the backend opens itself. Default `'nestjs-distributed-lock'`. */
  applicationName?: string;
}

/** See `PostgresBackendOptions.durability`. */
export type PostgresDurability = 'full' | 'relaxed';

export interface ResolvedPostgresOptions {
  names: PostgresLockNames;
  pool?: Pool;
  connection?: PoolConfig;
  listen?: ClientConfig;
  migrate: boolean;
  statementTimeout: number;
  recheckInterval: number;
  housekeepingInterval: number;
  durability: PostgresDurability;
  applicationName: string;
}

const OPTION_NAMES = [
  'pool',
  'connection',
  'listen',
  'schema',
  'table',
  'migrate',
  'statementTimeout',
  'recheckInterval',
  'housekeepingInterval',
  'durability',
  'applicationName',
] as const;

export const DEFAULT_APPLICATION_NAME = 'nestjs-distributed-lock';

function isPool(value: unknown): value is Pool {
  const candidate = value as Partial<Pool> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.query === 'function' &&
    typeof candidate.connect === 'function' &&
    typeof candidate.end === 'function' &&
    typeof candidate.options === 'object'
  );
}

function checkMs(
  name: string,
  value: unknown,
  fallback: number,
  { min, allowZero = false }: { min: number; allowZero?: boolean },
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value > MAX_TIMER_DELAY ||
    (value < min && !(allowZero && value === 0))
  ) {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend ${name}: expected an integer number of milliseconds from ${min} to ${MAX_TIMER_DELAY}` +
        `${allowZero ? ' (or 0 to turn it off)' : ''}, got ${describeValue(value)}`,
    );
  }
  return value;
}

function checkConnection(name: string, value: unknown): PoolConfig | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && value.length > 0) return { connectionString: value };
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && !isPool(value))
    return { ...(value as PoolConfig) };
  throw new InvalidLockOptionsError(
    `Invalid postgresBackend ${name}: expected a connection string such as 'postgres://user@host:5432/db' or pg connection settings, got ${describeValue(value)}`,
  );
}

/**
 * Checks the options of `postgresBackend`. Also accepts a Pool or a connection string alone.
 * Throws `InvalidLockOptionsError` saying what was wrong and what is allowed.
 */
export function resolvePostgresOptions(input: unknown): ResolvedPostgresOptions {
  const options = validateOptionsObject(
    'postgresBackend options',
    typeof input === 'string' ? { connection: input } : isPool(input) ? { pool: input } : input,
    OPTION_NAMES,
    "an object such as { pool } or { connection: 'postgres://…' }",
  );
  if ((options.pool === undefined) === (options.connection === undefined)) {
    throw new InvalidLockOptionsError(
      'Invalid postgresBackend options: give exactly one of `pool` (a pg Pool of yours) or `connection` (a connection string or pg settings)',
    );
  }
  if (options.pool !== undefined && !isPool(options.pool)) {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend pool: expected a pg Pool, got ${describeValue(options.pool)}`,
    );
  }
  if (options.migrate !== undefined && typeof options.migrate !== 'boolean') {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend migrate: expected a boolean, got ${describeValue(options.migrate)}`,
    );
  }
  if (options.durability !== undefined && options.durability !== 'full' && options.durability !== 'relaxed') {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend durability: expected 'full' or 'relaxed', got ${describeValue(options.durability)}`,
    );
  }
  const applicationName = options.applicationName ?? DEFAULT_APPLICATION_NAME;
  if (
    typeof applicationName !== 'string' ||
    applicationName.length === 0 ||
    applicationName.length > 50 ||
    !/^[\x20-\x7e]+$/.test(applicationName)
  ) {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend applicationName: expected 1 to 50 printable ASCII characters, got ${describeValue(applicationName)}`,
    );
  }
  return {
    names: new PostgresLockNames({
      schema: options.schema as string | undefined,
      table: options.table as string | undefined,
    }),
    pool: options.pool as Pool | undefined,
    connection: checkConnection('connection', options.connection),
    listen: checkConnection('listen', options.listen),
    migrate: (options.migrate as boolean | undefined) ?? true,
    statementTimeout: checkMs('statementTimeout', options.statementTimeout, 5_000, { min: 1 }),
    recheckInterval: checkMs('recheckInterval', options.recheckInterval, 500, { min: 10 }),
    housekeepingInterval: checkMs('housekeepingInterval', options.housekeepingInterval, 60_000, {
      min: 1_000,
      allowZero: true,
    }),
    durability: (options.durability as PostgresDurability | undefined) ?? 'full',
    applicationName,
  };
}
