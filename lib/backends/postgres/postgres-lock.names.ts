import { createHash } from 'node:crypto';
import { InvalidLockOptionsError } from '../../lock.errors';
import { describeValue } from '../../lock.validation';
import { loadPg } from './pg.loader';
import { schemaVersion, SQL_FUNCTIONS, type SqlFunctionName } from './postgres-lock.sql';

/** Default schema of the lease table. */
export const DEFAULT_POSTGRES_SCHEMA = 'public';
/** Default name of the lease table. */
export const DEFAULT_POSTGRES_TABLE = 'distributed_locks';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** PostgreSQL's limit on identifiers (NAMEDATALEN - 1); longer names are silently truncated. */
export const MAX_IDENTIFIER_BYTES = 63;
/**
 * The table name leaves room for the suffixes of the objects derived from it: the longest is a
 * function's, `_housekeep_` and the 12 characters of the schema version (40 + 11 + 12 = 63).
 */
const MAX_TABLE_BYTES = 40;

/** Where the lease table lives. */
export interface PostgresLockTableOptions {
  /** Schema of the lease table. Default `'public'`. */
  schema?: string;
  /** Name of the lease table; the queue table, sequence and functions are named after it. Default `'distributed_locks'`. */
  table?: string;
}

function checkIdentifier(what: string, value: unknown, maxBytes: number): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value) || value.length > maxBytes) {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend ${what}: expected an identifier of 1 to ${maxBytes} characters made of ASCII letters, ` +
        `digits and underscores, not starting with a digit, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * The names of every object the backend uses, quoted and qualified, derived from the schema and the
 * table name. Identifiers are validated first, then always quoted, so their case is kept as given.
 */
export class PostgresLockNames {
  readonly schema: string;
  readonly table: string;
  /** The version of the SQL functions, the suffix of their names (see `schemaVersion`). */
  readonly version: string;
  /** `"schema"."table"`: one row per key with its token, fence and expiry. */
  readonly leases: string;
  /** The waiters' FIFO queues, an UNLOGGED table: no WAL, emptied by a crash and rebuilt by the waiters. */
  readonly queue: string;
  /** The shared and limited holders of keys (rule 7 of the SPI), one row per holder with its own fence and lease. */
  readonly holders: string;
  /** The sequence that fences come from. */
  readonly fenceSequence: string;
  /** One durable row: every fence ever returned without its own disk flush is below `upto`. */
  readonly fenceReservation: string;
  /** One UNLOGGED row, present since the server last started cleanly: its absence means a crash. */
  readonly fenceEpoch: string;
  /** The SQL functions (`sql/<name>.sql`), by name: `"schema"."<table>_<name>_<version>"`. */
  readonly functions: Readonly<Record<SqlFunctionName, string>>;
  /** The NOTIFY channel of this table (one per schema and table, so tables never wake each other). */
  readonly channel: string;
  /** Key of the transaction-level advisory lock that serialises concurrent migrations of this table. */
  readonly migrationLockKey: string;

  constructor(options: PostgresLockTableOptions = {}) {
    const { escapeIdentifier } = loadPg();
    this.schema = checkIdentifier('schema', options.schema ?? DEFAULT_POSTGRES_SCHEMA, MAX_IDENTIFIER_BYTES);
    this.table = checkIdentifier('table', options.table ?? DEFAULT_POSTGRES_TABLE, MAX_TABLE_BYTES);
    this.version = schemaVersion();
    const qualified = (name: string): string => `${escapeIdentifier(this.schema)}.${escapeIdentifier(name)}`;
    this.leases = qualified(this.table);
    this.queue = qualified(`${this.table}_queue`);
    this.holders = qualified(`${this.table}_holders`);
    this.fenceSequence = qualified(`${this.table}_fence_seq`);
    this.fenceReservation = qualified(`${this.table}_fence_reservation`);
    this.fenceEpoch = qualified(`${this.table}_fence_epoch`);
    const functions = {} as Record<SqlFunctionName, string>;
    for (const name of Object.keys(SQL_FUNCTIONS) as SqlFunctionName[]) {
      functions[name] = qualified(`${this.table}_${name}_${this.version}`);
    }
    this.functions = functions;
    const digest = createHash('sha256').update(`${this.schema}.${this.table}`).digest('hex').slice(0, 12);
    this.channel = `${this.table}_${digest}`;
    this.migrationLockKey = `nestjs-distributed-lock:${this.schema}.${this.table}`;
  }

  /** The function signatures, as `to_regprocedure` takes them. */
  get functionSignatures(): string[] {
    return (Object.keys(SQL_FUNCTIONS) as SqlFunctionName[]).map(
      (name) => `${this.functions[name]}${SQL_FUNCTIONS[name]}`,
    );
  }

  /** The tables, as `to_regclass` takes them. */
  get tables(): string[] {
    return [this.leases, this.queue, this.holders, this.fenceReservation, this.fenceEpoch];
  }
}
