import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { textDigest } from '../../lib/backends/script-text';
import { MAX_IDENTIFIER_BYTES, PostgresLockNames } from '../../lib/backends/postgres/postgres-lock.names';
import { fillPlaceholders, schemaSql, SQL_FUNCTIONS } from '../../lib/backends/postgres/postgres-lock.sql';
import { postgresLockSchemaSql } from '../../lib/postgres';

const sqlDir = join(__dirname, '../../lib/backends/postgres/sql');

describe('the SQL files of the PostgreSQL backend', () => {
  it('are one file per function plus the tables, each opening with a header comment', () => {
    const files = readdirSync(sqlDir).filter((file) => file.endsWith('.sql'));
    expect(files.sort()).toEqual([...Object.keys(SQL_FUNCTIONS), 'tables'].map((name) => `${name}.sql`).sort());
    for (const file of files) expect(readFileSync(join(sqlDir, file), 'utf8')).toMatch(/^-- \S/);
    for (const name of Object.keys(SQL_FUNCTIONS)) {
      const text = readFileSync(join(sqlDir, `${name}.sql`), 'utf8');
      expect(text.startsWith(`-- :${name}(`)).toBe(true);
      expect(text).toMatch(/\n-- Locks: /);
      expect(text).toContain(`CREATE OR REPLACE FUNCTION :${name}(`);
    }
  });

  it('name their functions after a digest of the files, the same for every schema and table', () => {
    const order = ['tables', ...Object.keys(SQL_FUNCTIONS)];
    const digest = textDigest(...order.map((name) => readFileSync(join(sqlDir, `${name}.sql`), 'utf8')));
    const names = new PostgresLockNames();
    expect(names.version).toBe(digest);
    expect(new PostgresLockNames({ schema: 'other', table: 'other_locks' }).version).toBe(digest);
    expect(names.functions.acquire).toBe(`"public"."distributed_locks_acquire_${digest}"`);
    expect(postgresLockSchemaSql()).toContain(`(schema ${digest})`);
  });

  it('keep every name within the 63-byte identifier limit for the longest table name allowed', () => {
    const names = new PostgresLockNames({ schema: 's'.repeat(63), table: 't'.repeat(40) });
    const unqualified = [
      ...Object.values(names.functions),
      names.leases,
      names.queue,
      names.fenceSequence,
      names.fenceReservation,
      names.fenceEpoch,
    ].map((name) => name.slice(name.indexOf('"."') + 3, -1));
    unqualified.push(names.channel, `${names.table}_queue_order`);
    for (const name of unqualified) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(MAX_IDENTIFIER_BYTES);
    expect(Math.max(...unqualified.map((name) => name.length))).toBe(MAX_IDENTIFIER_BYTES);
  });

  it('fill in every placeholder, quoted as an identifier or as a literal, and leave casts and assignments alone', () => {
    const names = new PostgresLockNames({ schema: 'My_Schema', table: 'Locks' });
    const sql = schemaSql(names);
    expect(sql).not.toMatch(/(?<![:\w]):'?[A-Za-z_]/);
    expect(sql).toBe(postgresLockSchemaSql({ schema: 'My_Schema', table: 'Locks' }));
    expect(fillPlaceholders('t', "SELECT nextval(:'fence_seq'), x::integer, :leases; v := 1; -- at 12:30", names)).toBe(
      `SELECT nextval('"My_Schema"."Locks_fence_seq"'), x::integer, "My_Schema"."Locks"; v := 1; -- at 12:30`,
    );
    expect(fillPlaceholders('t', "pg_notify(:'channel', '') WHERE nspname = :'schema_name'", names)).toBe(
      `pg_notify('${names.channel}', '') WHERE nspname = 'My_Schema'`,
    );
  });

  it('refuse a placeholder they do not know, and a text used as an identifier', () => {
    const names = new PostgresLockNames();
    expect(() => fillPlaceholders('t', 'SELECT :nope', names)).toThrow('sql/t.sql: unknown placeholder :nope');
    expect(() => fillPlaceholders('t', 'LISTEN :channel', names)).toThrow('unknown placeholder :channel');
  });
});
