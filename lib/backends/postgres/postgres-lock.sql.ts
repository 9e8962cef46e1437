import { readScriptFile, textDigest } from '../script-text';
import { loadPg } from './pg.loader';
import type { PostgresLockNames } from './postgres-lock.names';

/**
 * The SQL functions of the schema, each in `sql/<name>.sql`, in the order the schema creates them,
 * with the argument types `to_regprocedure` takes. Their names are `<table>_<name>_<version>`.
 */
export const SQL_FUNCTIONS = {
  flush: '()',
  durable: '(boolean)',
  notify: '(text,bigint,text,integer)',
  fence: '()',
  hand_off: '(text,boolean,text[],text)',
  take: '(text,text,integer,integer,boolean,text)',
  give_back: '(text,text,boolean,text[])',
  acquire: '(text,text,integer,integer,boolean,text)',
  extend: '(text[],text[],integer[],boolean)',
  release: '(text,text,boolean,text[])',
  housekeep: '(integer,integer)',
} as const;

export type SqlFunctionName = keyof typeof SQL_FUNCTIONS;

/** The tables, sequence and index, created before the functions. */
const TABLES_FILE = 'tables';

const FILES = [TABLES_FILE, ...(Object.keys(SQL_FUNCTIONS) as SqlFunctionName[])];

let texts: Map<string, string> | undefined;

/** The files as written (placeholders and all), read once. */
function sqlFiles(): Map<string, string> {
  texts ??= new Map(FILES.map((name) => [name, readScriptFile(__dirname, `sql/${name}.sql`)]));
  return texts;
}

/**
 * Version of the SQL objects: a digest of the files as written. Function names carry it, so two
 * versions of the library running side by side during a deploy never call each other's functions,
 * and any change to a file (comments included) gives new names.
 */
export function schemaVersion(): string {
  return textDigest(...FILES.map((name) => sqlFiles().get(name)!));
}

/**
 * Placeholders of the SQL files. A placeholder is a colon and a name, never preceded by a colon or
 * a word character (so `::integer` casts and `:=` assignments are left alone):
 *
 * - `:name` stands for an identifier, replaced by its quoted (and, for tables, sequences and
 *   functions, schema-qualified) name: `:leases` → `"public"."distributed_locks"`.
 * - `:'name'` stands for the same value as a string literal: `:'fence_seq'` →
 *   `'"public"."distributed_locks_fence_seq"'`, as `nextval` takes it. Values that are not
 *   identifiers (`channel`, `schema_name`, `fence_lock`) exist only in this form.
 *
 * Identifiers: `schema`, `leases`, `queue`, `holders`, `queue_order` (the queue's index, unqualified),
 * `fence_seq`, `fence_reservation`, `fence_epoch`, and one per function of `SQL_FUNCTIONS`.
 * Text: `schema_name` (the schema as written), `channel` (the NOTIFY channel), `fence_lock` (the key
 * of the advisory lock of the fence function's restart after a crash).
 *
 * Every value is quoted or escaped here; a name that is not in the list, or a text value used as an
 * identifier, is an error.
 */
function placeholders(n: PostgresLockNames): { identifiers: Map<string, string>; texts: Map<string, string> } {
  const { escapeIdentifier } = loadPg();
  const identifiers = new Map<string, string>([
    ['schema', escapeIdentifier(n.schema)],
    ['leases', n.leases],
    ['queue', n.queue],
    ['holders', n.holders],
    ['queue_order', escapeIdentifier(`${n.table}_queue_order`)],
    ['fence_seq', n.fenceSequence],
    ['fence_reservation', n.fenceReservation],
    ['fence_epoch', n.fenceEpoch],
    ...(Object.entries(n.functions) as Array<[string, string]>),
  ]);
  const texts = new Map<string, string>([
    ['schema_name', n.schema],
    ['channel', n.channel],
    ['fence_lock', `${n.migrationLockKey}:fence`],
  ]);
  return { identifiers, texts };
}

const PLACEHOLDER = /(?<![:\w]):(?:'(\w+)'|([A-Za-z_]\w*))/g;

/** The text of `sql/<file>.sql` with its placeholders filled in for the table of `n`. */
export function fillPlaceholders(file: string, text: string, n: PostgresLockNames): string {
  const { escapeLiteral } = loadPg();
  const { identifiers, texts } = placeholders(n);
  return text.replace(PLACEHOLDER, (match, literal: string | undefined, identifier: string | undefined) => {
    if (literal !== undefined) {
      const value = identifiers.get(literal) ?? texts.get(literal);
      if (value !== undefined) return escapeLiteral(value);
    } else {
      const value = identifiers.get(identifier!);
      if (value !== undefined) return value;
    }
    throw new Error(`sql/${file}.sql: unknown placeholder ${match}`);
  });
}

/** The SQL that creates (or updates) everything the backend needs for the table of `n`: what it runs at start. */
export function schemaSql(n: PostgresLockNames): string {
  const files = sqlFiles();
  const parts = FILES.map((name) => `-- sql/${name}.sql\n${fillPlaceholders(name, files.get(name)!, n).trimEnd()}\n`);
  return `-- nestjs-distributed-lock: lease table ${n.leases} (schema ${n.version})\n\n${parts.join('\n')}`;
}
