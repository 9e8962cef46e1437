import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { LockBackendError } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { postgresBackend, type PostgresLockBackend } from '../../../lib/postgres';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { eventually, sleep } from '../../support/time';

const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_settings');
const appName = `dl-settings-${randomBytes(3).toString('hex')}`;
const backends: PostgresLockBackend[] = [];

/** A backend whose connections start with `options` (`-c name=value`), as a role or database default would set them. */
function backend(options: string | undefined, extra: { statementTimeout?: number } = {}): PostgresLockBackend {
  const made = postgresBackend({
    connection: { connectionString: url, options },
    schema,
    applicationName: appName,
    ...extra,
  });
  backends.push(made);
  return made;
}

function service(on: PostgresLockBackend): DistributedLockService {
  return new DistributedLockService({ backend: on, keyPrefix: 'set:', ttl: 60_000, wait: 20_000 });
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

afterAll(() => dropSchema(url, schema));

describe.each([
  ['default_transaction_isolation = serializable', '-c default_transaction_isolation=serializable'],
  ['default_transaction_isolation = repeatable read', '-c default_transaction_isolation=repeatable\\ read'],
  ['lock_timeout = 1ms', '-c lock_timeout=1'],
  ['statement_timeout = 1ms', '-c statement_timeout=1'],
])('postgresBackend on sessions with %s', (_setting, options) => {
  it('runs 8 workers on 2 keys without a failure and leaves no key locked', async () => {
    // Two instances of the app, four workers each.
    const instances = [service(backend(options)), service(backend(options))];
    const keys = [`k1-${randomBytes(3).toString('hex')}`, `k2-${randomBytes(3).toString('hex')}`];
    const failures: string[] = [];
    let holds = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, worker) => {
        const locks = instances[worker % 2];
        for (let i = 0; i < 12; i++) {
          try {
            const guard = await locks.acquire(keys[(worker + i) % 2]);
            holds++;
            await sleep(1);
            await locks.release(guard);
          } catch (error) {
            failures.push(String(error));
          }
        }
      }),
    );
    expect({ failures, holds }).toEqual({ failures: [], holds: 96 });
    // No release failed silently: a fresh caller on a plain session gets both keys at once.
    const plain = service(backend(undefined));
    for (const key of keys) {
      const guard = await plain.tryAcquire(key);
      expect(guard).not.toBeNull();
      await plain.release(guard!);
    }
  });
});

describe('postgresBackend as a role with only the rights the README lists and hostile defaults', () => {
  const role = `dl_role_${randomBytes(4).toString('hex')}`;

  afterAll(async () => {
    await runSql(url, `DROP OWNED BY ${role}`).catch(() => undefined);
    await runSql(url, `DROP ROLE IF EXISTS ${role}`);
  });

  it('locks, hands off, extends, releases and cleans up (serializable, lock_timeout 1ms, statement_timeout 1ms)', async () => {
    const admin = backend(undefined);
    await admin.ready();
    const t = `"${schema}".distributed_locks`;
    await runSql(
      url,
      `CREATE ROLE ${role} LOGIN;
       ALTER ROLE ${role} SET default_transaction_isolation = 'serializable';
       ALTER ROLE ${role} SET lock_timeout = '1ms';
       ALTER ROLE ${role} SET statement_timeout = '1ms';
       GRANT USAGE ON SCHEMA "${schema}" TO ${role};
       GRANT SELECT, INSERT, UPDATE, DELETE ON ${t}, "${schema}".distributed_locks_queue, "${schema}".distributed_locks_holders,
         "${schema}".distributed_locks_fence_reservation, "${schema}".distributed_locks_fence_epoch TO ${role};
       GRANT USAGE, SELECT, UPDATE ON SEQUENCE "${schema}".distributed_locks_fence_seq TO ${role};
       GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "${schema}" TO ${role};`,
    );
    const roleUrl = new URL(url);
    roleUrl.username = role;
    const made = postgresBackend({ connection: roleUrl.toString(), schema, migrate: false, applicationName: appName });
    backends.push(made);
    const [a, b] = [service(made), service(made)];
    const held = (await a.tryAcquire('role'))!;
    const next = b.acquire('role');
    await sleep(50);
    await a.release(held);
    const guard = await next;
    expect(guard.fence).toBeGreaterThan(held.fence);
    expect(await b.extend(guard, 30_000)).toBe(true);
    await b.release(guard);
    // Shared leases too: held together, extended, released, and handed to a queued writer.
    const readers = [
      (await a.tryAcquire('role-rw', { mode: 'shared' }))!,
      (await b.tryAcquire('role-rw', { mode: 'shared' }))!,
    ];
    expect(readers[0]).not.toBeNull();
    expect(readers[1]).not.toBeNull();
    const writer = a.acquire('role-rw');
    await sleep(50);
    expect(await a.extend(readers[0], 30_000)).toBe(true);
    await a.release(readers[0]);
    await b.release(readers[1]);
    const written = await writer;
    expect(written.fence).toBeGreaterThan(readers[1].fence);
    await a.release(written);
    expect(await made.housekeep()).toEqual({ leases: 0, waiters: 0 });
    const again = await a.tryAcquire('role');
    expect(again).not.toBeNull();
    await a.release(again!);
  });
});

describe('postgresBackend error messages tell the bounds apart', () => {
  async function blockKey(key: string): Promise<Client> {
    const locks = service(backend(undefined));
    await locks.release((await locks.tryAcquire(key))!);
    const blocker = new Client({ connectionString: url, application_name: 'dl-settings-blocker' });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query(`SELECT * FROM "${schema}".distributed_locks WHERE key = 'set:${key}' FOR UPDATE`);
    return blocker;
  }

  it('says "ran past statementTimeout" when our own bound ended the statement', async () => {
    const blocker = await blockKey('ours');
    try {
      const error = await service(backend(undefined, { statementTimeout: 300 }))
        .tryAcquire('ours')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockBackendError);
      expect((error as Error).message).toContain('ran past statementTimeout (300 ms)');
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
  });

  it('says the server canceled the statement when something else did, before our bound', async () => {
    const blocker = await blockKey('theirs');
    try {
      const pending = service(backend(undefined, { statementTimeout: 20_000 }))
        .tryAcquire('theirs')
        .catch((e: unknown) => e);
      let settled: unknown;
      void pending.then((value) => (settled = value ?? 'resolved'));
      // Cancel the waiting statement each time it is sent again, until it gives up (bounded).
      await eventually(
        async () => {
          await runSql(
            url,
            `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
            [appName],
          );
          return settled !== undefined;
        },
        { within: 15_000, every: 50, what: 'the canceled statement to fail' },
      );
      const error = await pending;
      expect(error).toBeInstanceOf(LockBackendError);
      const message = (error as Error).message;
      expect(message).toMatch(
        /the server canceled a lock statement after \d+ ms, before our statementTimeout \(20000 ms\)/,
      );
      expect(message).toContain('canceling statement due to user request');
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
  });
});
