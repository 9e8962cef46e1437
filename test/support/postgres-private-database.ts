import { randomBytes } from 'node:crypto';
import { runSql, sharedDatabaseUrl } from './postgres-database';

/** Session settings as `ALTER DATABASE/ROLE ... SET name = value` takes them (values are literals). */
export type SessionSettings = Record<string, string>;

/**
 * A database and a login role of their own on the shared PostgreSQL, for a test that needs
 * server-side defaults the shared databases must not get (`default_transaction_isolation`,
 * `lock_timeout`, ...): the settings go on the private database and role only, and `drop` removes
 * both (closing whatever is still connected).
 */
export class PrivateDatabase {
  private constructor(
    readonly name: string,
    readonly role: string,
    private readonly adminUrl: string,
  ) {}

  static async create(
    options: { database?: SessionSettings; role?: SessionSettings } = {},
    adminUrl = sharedDatabaseUrl(),
  ): Promise<PrivateDatabase> {
    const suffix = randomBytes(4).toString('hex');
    const db = new PrivateDatabase(`dl_private_${suffix}`, `dl_private_${suffix}`, adminUrl);
    await runSql(adminUrl, `CREATE ROLE "${db.role}" LOGIN`);
    try {
      await runSql(adminUrl, `CREATE DATABASE "${db.name}" OWNER "${db.role}"`);
      for (const [name, value] of Object.entries(options.database ?? {})) {
        await runSql(adminUrl, `ALTER DATABASE "${db.name}" SET ${assertName(name)} = ${literal(value)}`);
      }
      for (const [name, value] of Object.entries(options.role ?? {})) {
        await runSql(adminUrl, `ALTER ROLE "${db.role}" SET ${assertName(name)} = ${literal(value)}`);
      }
    } catch (error) {
      await db.drop();
      throw error;
    }
    return db;
  }

  /** A connection string to the private database as the private role (trust authentication on loopback). */
  get url(): string {
    const url = new URL(this.adminUrl);
    url.username = this.role;
    url.password = '';
    url.pathname = `/${this.name}`;
    return url.toString();
  }

  async drop(): Promise<void> {
    await runSql(this.adminUrl, `DROP DATABASE IF EXISTS "${this.name}" WITH (FORCE)`);
    await runSql(this.adminUrl, `DROP ROLE IF EXISTS "${this.role}"`);
  }
}

function assertName(name: string): string {
  if (!/^[a-z_]+$/.test(name)) throw new Error(`not a setting name: ${name}`);
  return name;
}

function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
