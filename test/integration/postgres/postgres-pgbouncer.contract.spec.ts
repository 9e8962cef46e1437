import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { postgresBackend } from '../../../lib/postgres';
import { describeLockBackendContract } from '../../../lib/testing';
import { PgBouncerServer } from '../../support/pgbouncer-server';
import { jestApi } from '../../support/jest-api';
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
  await dropSchema(direct.toString(), schema);
});

// The pool goes through PgBouncer in transaction mode (2 server connections shared by every
// client); the LISTEN connection goes to PostgreSQL directly.
describeLockBackendContract(jestApi, {
  name: 'postgres through PgBouncer (transaction mode)',
  capabilities: { modes: ['shared', 'limit'] },
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

describe('postgresBackend through PgBouncer without a direct LISTEN connection', () => {
  it('notices that notifications do not arrive and falls back to re-checking, still handing the key over', async () => {
    const through = postgresBackend({
      connection: bouncer!.url(database),
      schema,
      recheckInterval: 100,
      applicationName: 'dl-pgbouncer-deaf',
    });
    const direct = postgresBackend({ connection: sharedDatabaseUrl(), schema, applicationName: 'dl-pgbouncer-direct' });
    try {
      await through.ready();
      await direct.ready();
      expect(through.listening).toBe(false);
      expect(through.recheckInterval).toBe(100);
      const holder = new DistributedLockService({ backend: direct, keyPrefix: 'deaf:', ttl: 10_000, wait: 5_000 });
      const waiter = new DistributedLockService({ backend: through, keyPrefix: 'deaf:', ttl: 10_000, wait: 5_000 });
      const held = (await holder.tryAcquire('k'))!;
      const pending = waiter.acquire('k', { wait: 5_000 });
      await holder.release(held);
      const guard = await pending;
      expect(guard.fence).toBeGreaterThan(held.fence);
      await waiter.release(guard);
    } finally {
      await through.close();
      await direct.close();
    }
  });
});
