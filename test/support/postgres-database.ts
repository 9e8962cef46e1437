import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The shared PostgreSQL of this machine (or CI), from DATABASE_URL when set. Never restarted by tests. */
export function sharedDatabaseUrl(): string {
  return process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
}

/** A schema name of its own for one test run, so runs never see each other's rows. */
export function uniqueSchemaName(prefix = 'dl_test'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Runs one statement on a short-lived connection of its own. */
export async function runSql<T = Record<string, unknown>>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<T[]> {
  const client = new Client({ connectionString: url, application_name: 'dl-test-admin' });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Drops a schema made for a test run, with everything in it. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  await runSql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}
