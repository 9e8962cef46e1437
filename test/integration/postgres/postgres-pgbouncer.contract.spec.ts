import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { postgresBackend } from '../../../lib';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { PgBouncerServer } from '../../support/pgbouncer-server';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';

const direct = new URL(sharedDatabaseUrl());
const database = direct.pathname.slice(1) || 'postgres';
const schema = uniqueSchemaName('dl_pgbouncer');
let bouncer: PgBouncerServer | undefined;

beforeAll(async () => {
  bouncer = await PgBouncerServer.start({
    upstream: { host: direct.hostname, port: Number(direct.port || 5432) },
    databases: [database],
    poolMode: 'transaction',
    poolSize: 2,
  });
}, 30_000);

afterAll(async () => {
  await bouncer?.stop();
});

// The pool goes through PgBouncer in transaction mode (2 server connections shared by every
// client); the LISTEN connection goes to PostgreSQL directly.
describeLockBackendContract('postgres through PgBouncer (transaction mode)', {
  create: async () => {
    const backend = postgresBackend({
      connection: bouncer!.url(database),
      listen: direct.toString(),
      schema,
      applicationName: `dl-pgbouncer-${randomBytes(3).toString('hex')}`,
    });
    await backend.ready();
    return backend;
  },
  teardown: () => dropSchema(direct.toString(), schema),
});

describe('PgBouncer', () => {
  it('carried the lock statements in transaction pooling mode', async () => {
    const admin = new Client({ connectionString: bouncer!.url('pgbouncer') });
    await admin.connect();
    try {
      const stats = (await admin.query('SHOW STATS')).rows as Array<{ database: string; total_xact_count: string }>;
      expect(Number(stats.find((s) => s.database === database)!.total_xact_count)).toBeGreaterThan(100);
      const config = (await admin.query('SHOW CONFIG')).rows as Array<{ key: string; value: string }>;
      expect(config.find((c) => c.key === 'pool_mode')?.value).toBe('transaction');
    } finally {
      await admin.end();
    }
  });
});
