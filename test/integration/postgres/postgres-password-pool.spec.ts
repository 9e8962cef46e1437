import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { postgresBackend, type PostgresLockBackend } from '../../../lib/postgres';
import { runSql } from '../../support/postgres-database';
import { PrivatePostgres } from '../../support/postgres-server';
import { eventually } from '../../support/time';

/**
 * A pool of the user's on a server that asks for a password (scram-sha-256), and no `listen`
 * option: the LISTEN connection is made from the pool's own settings, password included (pg-pool
 * keeps the password in `pool.options` as a non-enumerable property, which a plain copy drops).
 */
describe('postgresBackend with a user Pool on a server that requires a password', () => {
  let server: PrivatePostgres;
  let pool: Pool | undefined;
  let backend: PostgresLockBackend | undefined;

  beforeAll(async () => {
    server = await PrivatePostgres.start();
    await runSql(server.url(), `CREATE ROLE locker LOGIN PASSWORD 'correct horse'`);
    await runSql(server.url(), `GRANT CREATE ON DATABASE postgres TO locker`);
    // The locker role must give its password over TCP; the test's own superuser stays on trust.
    const hba = join(server.dataDir, 'pg_hba.conf');
    writeFileSync(hba, `host all locker 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
    await runSql(server.url(), 'SELECT pg_reload_conf()');
  }, 60_000);

  afterAll(async () => {
    await backend?.close();
    await pool?.end();
    await server?.stop();
  });

  it('listens for lock events, so waiters are woken by the release, not by polling', async () => {
    pool = new Pool({
      host: '127.0.0.1',
      port: server.port,
      user: 'locker',
      password: 'correct horse',
      database: 'postgres',
      max: 2,
    });
    backend = postgresBackend({ pool, schema: 'locks_of_locker' });
    await backend.ready();
    await eventually(() => backend!.listening, { within: 5_000, what: 'the LISTEN connection to come up' });
    expect(backend.listening).toBe(true);
  });
});
