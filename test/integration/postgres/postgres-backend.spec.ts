import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Client, Pool } from 'pg';
import { InvalidLockOptionsError, LockBackendError, LockTimeoutError, type LockGuard } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { postgresBackend, postgresLockSchemaSql, type PostgresLockBackend } from '../../../lib/postgres';
import { RecordingBackend } from '../../support/recording-backend';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { driftMargin } from '../../../lib/lock.constants';
import { toEpochMs } from '../../../lib/lock-clock';
import { newLockToken } from '../../../lib/lock-token';
import { PostgresLockNames } from '../../../lib/backends/postgres/postgres-lock.names';
import { fillPlaceholders } from '../../../lib/backends/postgres/postgres-lock.sql';
import { freePort } from '../../support/free-port';
import { eventually, sleep } from '../../support/time';

const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_backend');
const backends: PostgresLockBackend[] = [];
const appName = `dl-backend-${randomBytes(3).toString('hex')}`;

function backend(options: Partial<Parameters<typeof postgresBackend>[0] & object> = {}): PostgresLockBackend {
  const made = postgresBackend({ connection: url, schema, applicationName: appName, ...options });
  backends.push(made);
  return made;
}

function service(on: PostgresLockBackend | RecordingBackend, ttl = 10_000): DistributedLockService {
  return new DistributedLockService({ backend: on, keyPrefix: 'pg:', ttl, wait: 5_000 });
}

async function count(sql: string): Promise<number> {
  const [row] = await runSql<{ n: string }>(url, sql);
  return Number(row.n);
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

afterAll(() => dropSchema(url, schema));

describe('postgresBackend: schema', () => {
  it('creates its schema once when many instances start at the same moment', async () => {
    const fresh = uniqueSchemaName('dl_migrate');
    try {
      const many = Array.from({ length: 8 }, () => backend({ schema: fresh }));
      await Promise.all(many.map((b) => b.ready()));
      const guard = await service(many[3]).tryAcquire('after-migration');
      expect(guard).not.toBeNull();
      expect(await count(`SELECT count(*) AS n FROM "${fresh}".distributed_locks`)).toBe(1);
    } finally {
      await Promise.all(backends.splice(0).map((b) => b.close()));
      await dropSchema(url, fresh);
    }
  });

  it('with migrate: false and no table, fails with an error that shows the SQL to run, then works once it ran', async () => {
    const fresh = uniqueSchemaName('dl_nomigrate');
    try {
      const b = backend({ schema: fresh, table: 'app_locks', migrate: false });
      const error = await b.ready().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockBackendError);
      const sql = postgresLockSchemaSql({ schema: fresh, table: 'app_locks' });
      expect((error as Error).message).toContain('migrate is false');
      expect((error as Error).message).toContain(sql);
      expect(sql).toContain(`CREATE TABLE IF NOT EXISTS "${fresh}"."app_locks"`);
      await expect(service(b).tryAcquire('k')).rejects.toBeInstanceOf(LockBackendError);

      await runSql(url, sql);
      const guard = await service(b).tryAcquire('k');
      expect(guard).not.toBeNull();
    } finally {
      await Promise.all(backends.splice(0).map((b) => b.close()));
      await dropSchema(url, fresh);
    }
  });

  it('upgrades the schema of the version before shared and limited locks in place, and stays safe beside that version', async () => {
    // The SQL files as they were before rule 7 (fixtures/sql-before-modes), their functions named
    // with the suffix "_v0": the old version, side by side with this one on the same tables.
    const fresh = uniqueSchemaName('dl_upgrade');
    const dir = join(__dirname, 'fixtures/sql-before-modes');
    const names = new PostgresLockNames({ schema: fresh });
    const files = ['flush', 'durable', 'notify', 'fence', 'acquire', 'extend', 'release', 'housekeep'];
    const old = Object.fromEntries(files.map((f) => [f, `"${fresh}"."distributed_locks_${f}_v0"`]));
    const oldNames = { ...names, functions: old } as unknown as PostgresLockNames;
    const oldSql = ['tables', ...files]
      .map((f) => fillPlaceholders(f, readFileSync(join(dir, `${f}.sql`), 'utf8'), oldNames))
      .join('\n');
    const oldAcquire = async (key: string, token: string, queue: number | null = null) =>
      (
        await runSql<{ fence: string | null }>(url, `SELECT fence FROM ${old.acquire}($1, $2, 10000, $3, false)`, [
          key,
          token,
          queue,
        ])
      )[0].fence;
    try {
      await runSql(url, oldSql);
      expect(await count(`SELECT count(*) AS n FROM pg_tables WHERE schemaname = '${fresh}'`)).toBe(4);
      // The old version holds a key and has a waiter queued on it.
      const [oldHolder, oldWaiter] = [newLockToken(), newLockToken()];
      expect(await oldAcquire('pg:up', oldHolder)).not.toBeNull();
      expect(await oldAcquire('pg:up', oldWaiter, 10_000)).toBeNull();

      const b = backend({ schema: fresh });
      await b.ready();
      expect(await count(`SELECT count(*) AS n FROM pg_tables WHERE schemaname = '${fresh}'`)).toBe(5);
      const columns = await runSql<{ column_name: string }>(
        url,
        `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'distributed_locks_queue'`,
        [fresh],
      );
      expect(columns.map((c) => c.column_name)).toContain('sharing');
      const locks = service(b);
      // What the old version left is kept: the lease, and the waiter it hands the key to.
      expect(await locks.tryAcquire('up')).toBeNull();
      expect(await locks.tryAcquire('up', { mode: 'shared' })).toBeNull();
      expect(await b.releaseWithHandOff('pg:up', oldHolder)).toMatchObject({
        released: true,
        handedTo: { token: oldWaiter },
      });
      expect(await b.release('pg:up', oldWaiter)).toBe(true);

      // New locks on the upgraded tables, in every mode; the old version sees a shared key held.
      const exclusive = (await locks.tryAcquire('up'))!;
      expect(exclusive).not.toBeNull();
      await locks.release(exclusive);
      const readers = [
        (await locks.tryAcquire('up', { mode: 'shared' }))!,
        (await locks.tryAcquire('up', { mode: 'shared' }))!,
      ];
      expect(readers[1].fence).toBeGreaterThan(readers[0].fence);
      expect(await oldAcquire('pg:up', newLockToken())).toBeNull();
      for (const reader of readers) await locks.release(reader);
      const limited = (await locks.tryAcquire('up', { limit: 2 }))!;
      expect(await oldAcquire('pg:up', newLockToken())).toBeNull();
      await locks.release(limited);
      const oldFence = await oldAcquire('pg:up', newLockToken());
      expect(BigInt(oldFence!)).toBeGreaterThan(limited.fence);
    } finally {
      await Promise.all(backends.splice(0).map((made) => made.close()));
      await dropSchema(url, fresh);
    }
  });

  it('quotes identifiers, keeping their case', async () => {
    const b = backend({ table: 'Mixed_Case_Locks' });
    const guard = await service(b).tryAcquire('k');
    expect(guard).not.toBeNull();
    expect(await count(`SELECT count(*) AS n FROM "${schema}"."Mixed_Case_Locks"`)).toBe(1);
  });

  it.each([
    [{ schema: 'bad-name' }, /schema: expected an identifier/],
    [{ table: 'x; DROP TABLE y' }, /table: expected an identifier/],
    [{ table: 'a'.repeat(41) }, /table: expected an identifier of 1 to 40/],
    [{ statementTimeout: 0 }, /statementTimeout: expected an integer/],
    [{ recheckInterval: 1.5 }, /recheckInterval/],
    [{ durability: 'fast' }, /durability: expected 'full' or 'relaxed'/],
    [{ nope: 1 }, /unknown option "nope"/],
    [{ connection: undefined }, /exactly one of `pool`/],
  ])('refuses bad options %p before opening anything', (options, message) => {
    const before = backends.length;
    expect(() => postgresBackend({ connection: url, ...options } as never)).toThrow(InvalidLockOptionsError);
    expect(() => postgresBackend({ connection: url, ...options } as never)).toThrow(message);
    expect(backends.length).toBe(before);
  });
});

describe('postgresBackend: connections and errors', () => {
  it('reports a database that is down at start as LockBackendError naming host and database, never the password', async () => {
    const port = await freePort();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const b = backend({ connection: `postgres://locker:s3cret-Pa55@127.0.0.1:${port}/inventory` });
      const error = await b.ready().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockBackendError);
      const message = (error as Error).message;
      expect(message).toContain(`127.0.0.1:${port}`);
      expect(message).toContain('"inventory"');
      expect(message).not.toContain('s3cret-Pa55');
      // Down is a failure, never "busy".
      const locks = service(b);
      await expect(locks.tryAcquire('down')).rejects.toBeInstanceOf(LockBackendError);
      await expect(locks.acquire('down', { wait: 200 })).rejects.toBeInstanceOf(LockBackendError);
      await expect(b.ping()).rejects.toBeInstanceOf(LockBackendError);
      await sleep(50);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('bounds every lock statement by statementTimeout and reports it as a failure, not as busy', async () => {
    const b = backend({ statementTimeout: 300 });
    const locks = service(b);
    const guard = (await locks.tryAcquire('blocked'))!;
    await locks.release(guard);
    // Another session holds the row lock of that key in an open transaction.
    const blocker = new Client({ connectionString: url, application_name: appName });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT * FROM "${schema}".distributed_locks WHERE key = 'pg:blocked' FOR UPDATE`);
      const error = await locks.tryAcquire('blocked').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockBackendError);
      expect((error as Error).message).toContain('statementTimeout (300 ms)');
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    expect(await locks.tryAcquire('blocked')).not.toBeNull();
  });

  it("bounds the wait for a pool connection: with the app holding a pool's only connection, calls fail in time and leave nothing", async () => {
    const pool = new Pool({
      connectionString: url.replace('postgres://postgres@', 'postgres://postgres:s3cret-Pa55@'),
      max: 1,
      application_name: appName,
    });
    pool.on('error', () => undefined);
    const b = backend({ connection: undefined, pool, statementTimeout: 1_000 });
    await b.ready();
    const locks = service(b);
    const app = await pool.connect();
    // The bound's timer is cancelled once the call settles: a pending one would keep the test process alive.
    const settle = (call: Promise<unknown>): Promise<unknown> => {
      const bound = new AbortController();
      return Promise.race([
        call.then(
          () => 'resolved',
          (e: unknown) => e,
        ),
        delay(15_000, 'still pending after 15 s', { signal: bound.signal }).catch(() => 'cancelled'),
      ]).finally(() => bound.abort());
    };
    try {
      await app.query('BEGIN');
      await app.query('SELECT 1');
      const [tried, waited] = await Promise.all([
        settle(locks.tryAcquire('starved')),
        settle(locks.acquire('starved', { wait: 200 })),
      ]);
      expect(tried).toBeInstanceOf(LockBackendError);
      expect((tried as Error).message).toContain('no pool connection within 1000 ms; pool max 1');
      expect((tried as Error).message).not.toContain('s3cret-Pa55');
      expect(waited instanceof LockBackendError || waited instanceof LockTimeoutError).toBe(true);
    } finally {
      await app.query('COMMIT');
      app.release();
    }
    // Nothing was left held or queued: the key is free at once.
    const guard = await locks.tryAcquire('starved');
    expect(guard).not.toBeNull();
    await locks.release(guard!);
    expect(await count(`SELECT count(*) AS n FROM "${schema}".distributed_locks_queue WHERE key = 'pg:starved'`)).toBe(
      0,
    );
    await b.close();
    await pool.end();
  });

  it('never ends a pool it was given, and ends its own at close', async () => {
    const pool = new Pool({ connectionString: url, max: 2, application_name: appName });
    pool.on('error', () => undefined);
    try {
      const given = backend({ connection: undefined, pool });
      expect(await service(given).tryAcquire('given')).not.toBeNull();
      await given.close();
      expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await expect(given.tryAcquire('pg:given', randomBytes(16).toString('hex'), 1000)).rejects.toThrow('closed');
    } finally {
      await pool.end();
    }
    const owned = backend();
    await owned.ready();
    const open = async (): Promise<number> =>
      count(
        `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE '${appName}%' AND pid <> pg_backend_pid()`,
      );
    expect(await open()).toBeGreaterThan(0);
    await Promise.all(backends.splice(0).map((b) => b.close()));
    expect(await open()).toBe(0);
  });

  it('has closed every connection it opened once close() resolves', async () => {
    const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const before = sockets();
    const b = backend();
    const locks = service(b);
    // Several pool connections at once, and the LISTEN connection.
    const guards = await Promise.all(Array.from({ length: 5 }, (_, i) => locks.tryAcquire(`sockets-${i}`)));
    await Promise.all(guards.map((g) => locks.release(g!)));
    expect(sockets()).toBeGreaterThan(before + 1);
    // pg-pool's end() resolves before the server has closed the connections it asked to end.
    await b.close();
    expect(sockets()).toBeLessThanOrEqual(before);
  });

  it('keeps keys with quotes and backslashes apart', async () => {
    const locks = service(backend());
    const keys = [`it's`, `it''s`, 'back\\slash', 'back\\\\slash', `"quoted"`, '$fn$ DROP'];
    const guards = await Promise.all(keys.map((k) => locks.tryAcquire(k)));
    guards.forEach((g, i) => expect(g?.key).toBe(keys[i]));
    for (const k of keys) expect(await locks.tryAcquire(k)).toBeNull();
    await Promise.all(guards.map((g) => locks.release(g!)));
  });
});

describe('postgresBackend: hand-off across instances', () => {
  it('hands the key to a waiter of another instance on release, woken by NOTIFY', async () => {
    const a = backend();
    const recorded = new RecordingBackend(backend());
    const holder = service(a);
    const waiter = service(recorded);
    const held = (await holder.tryAcquire('handoff'))!;
    const pending = waiter.acquire('handoff', { wait: 10_000 });
    const queued = await recorded.whenQueued('pg:handoff');
    const attempts = recorded.count('tryAcquire', queued.token);
    await holder.release(held);
    const guard = await pending;
    expect(guard.token).toBe(queued.token);
    expect(guard.fence).toBeGreaterThan(held.fence);
    // The grant came by notification: no further attempt was needed.
    expect(recorded.count('tryAcquire', queued.token)).toBe(attempts);
    expect(await holder.tryAcquire('handoff')).toBeNull();
    await waiter.release(guard);
  });

  it('serves waiters of three instances in the order they queued', async () => {
    const instances = [backend(), backend(), backend()].map((b) => new RecordingBackend(b));
    const services = instances.map((b) => service(b));
    const first = (await services[0].tryAcquire('fair'))!;
    const order: number[] = [];
    const waiters: Promise<void>[] = [];
    for (let i = 0; i < 6; i++) {
      const at = i % 3;
      waiters.push(
        services[at].acquire('fair', { wait: 20_000 }).then(async (guard) => {
          order.push(i);
          await sleep(5);
          await services[at].release(guard);
        }),
      );
      await instances[at].whenQueued('pg:fair', Math.floor(i / 3) + 1);
    }
    await services[0].release(first);
    await Promise.all(waiters);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('hands an expired lease to the oldest waiter', async () => {
    const a = service(backend());
    const b = service(backend());
    const stale = (await a.tryAcquire('expiring', { ttl: 200 }))!;
    const pending = b.acquire('expiring', { wait: 10_000 });
    const guard = await pending;
    expect(guard.fence).toBeGreaterThan(stale.fence);
    expect(await a.extend(stale)).toBe(false);
  });
});

describe('postgresBackend: housekeeping', () => {
  it('deletes rows whose lease ended long ago, and fences keep increasing after', async () => {
    const b = backend();
    const locks = service(b);
    const fences: bigint[] = [];
    for (const key of ['old-1', 'old-2']) {
      const g = (await locks.tryAcquire(key)) as LockGuard;
      fences.push(g.fence);
      await locks.release(g);
    }
    const live = (await locks.tryAcquire('live'))!;
    await runSql(
      url,
      `UPDATE "${schema}".distributed_locks SET expires_at = now() - interval '1 hour' WHERE key IN ('pg:old-1', 'pg:old-2')`,
    );
    const deleted = await b.housekeep();
    expect(deleted.leases).toBe(2);
    expect(await count(`SELECT count(*) AS n FROM "${schema}".distributed_locks WHERE key LIKE 'pg:old-%'`)).toBe(0);
    // A released row is kept until its grace has passed.
    const recent = (await locks.tryAcquire('recent'))!;
    await locks.release(recent);
    expect((await b.housekeep()).leases).toBe(0);
    expect(await locks.tryAcquire('live')).toBeNull();

    const again = (await locks.tryAcquire('old-1'))!;
    expect(again.fence).toBeGreaterThan(fences[1]);
    expect(again.fence).toBeGreaterThan(live.fence);
  });
});

describe('postgresBackend: housekeeping that keeps up', () => {
  it('deletes every eligible row in one run, in batches, and leaves live rows alone', async () => {
    const fresh = uniqueSchemaName('dl_housekeep');
    try {
      const b = backend({ schema: fresh });
      const locks = service(b);
      const live = (await locks.tryAcquire('live'))!;
      const released = (await locks.tryAcquire('just-released'))!;
      await locks.release(released);
      const waiter = locks.acquire('live', { wait: 20_000 }).catch((e: unknown) => e);
      await eventually(async () => (await count(`SELECT count(*) AS n FROM "${fresh}".distributed_locks_queue`)) === 1);
      await runSql(
        url,
        `INSERT INTO "${fresh}".distributed_locks (key, token, fence, expires_at)
           SELECT 'old:' || i, NULL, i, now() - interval '2 hours' FROM generate_series(1, 5000) AS i`,
      );
      await runSql(
        url,
        `INSERT INTO "${fresh}".distributed_locks_queue (key, token, ttl, joined_at, expires_at)
           SELECT 'old:' || (i % 7), md5(i::text), 1000, now() - interval '3 hours', now() - interval '2 hours' FROM generate_series(1, 2500) AS i`,
      );
      expect(await b.housekeep()).toEqual({ leases: 5_000, waiters: 2_500 });
      expect(await count(`SELECT count(*) AS n FROM "${fresh}".distributed_locks`)).toBe(2);
      expect(await count(`SELECT count(*) AS n FROM "${fresh}".distributed_locks_queue`)).toBe(1);
      expect(await locks.tryAcquire('live')).toBeNull();
      await locks.release(live);
      const next = await waiter;
      expect((next as LockGuard).fence).toBeGreaterThan(live.fence);
      await locks.release(next as LockGuard);
    } finally {
      await Promise.all(backends.splice(0).map((b) => b.close()));
      await dropSchema(url, fresh);
    }
  });
});

describe('postgresBackend: shared and limited leases', () => {
  const shared = { kind: 'shared' } as const;
  const queue = { lease: 10_000 };

  it('hands a released key to the whole run of shared waiters in one release, and the last reader hands it to the writer behind them', async () => {
    const b = backend();
    const key = 'pg:run';
    const [writer, r1, r2, r3, writer2] = Array.from({ length: 5 }, () => newLockToken());
    const held = await b.tryAcquire(key, writer, 10_000);
    expect(held.fence).not.toBeNull();
    for (const reader of [r1, r2, r3])
      expect((await b.tryAcquire(key, reader, 10_000, queue, shared)).fence).toBeNull();
    expect((await b.tryAcquire(key, writer2, 10_000, queue)).fence).toBeNull();
    const released = await b.releaseWithHandOff(key, writer);
    expect(released.released).toBe(true);
    const handOffs = [released.handedTo!, ...(released.alsoHandedTo ?? [])];
    expect(handOffs.map((h) => h.token)).toEqual([r1, r2, r3]);
    for (const [i, h] of handOffs.entries()) {
      expect(h.fence).toBeGreaterThan(i === 0 ? held.fence! : handOffs[i - 1].fence);
    }
    // Each reader holds its own lease: renewed by its own attempt, extended and released alone.
    expect((await b.tryAcquire(key, r2, 10_000, undefined, shared)).fence).toBe(handOffs[1].fence);
    expect(
      await b.extendMany([
        { key, token: r1, ttl: 10_000 },
        { key, token: r3, ttl: 10_000 },
      ]),
    ).toEqual([true, true]);
    expect(await b.releaseWithHandOff(key, r1)).toEqual({ released: true });
    expect(await b.releaseWithHandOff(key, r2)).toEqual({ released: true });
    const last = await b.releaseWithHandOff(key, r3);
    expect(last).toMatchObject({ released: true, handedTo: { token: writer2 } });
    expect(last.alsoHandedTo).toBeUndefined();
    expect(last.handedTo!.fence).toBeGreaterThan(handOffs[2].fence);
    expect(await b.release(key, writer2)).toBe(true);
  });

  it('tells the readers behind a writer that gives up to try again when the lease row is busy, instead of leaving them to a 30 s re-check', async () => {
    const b = backend();
    const locks = service(b);
    const reader = (await locks.tryAcquire('busy-row', { mode: 'shared', ttl: 30_000 }))!;
    const controller = new AbortController();
    const writer = locks
      .acquire('busy-row', { wait: 20_000, signal: controller.signal })
      .catch((error: unknown) => error);
    await eventually(
      async () =>
        (await count(`SELECT count(*) AS n FROM "${schema}".distributed_locks_queue WHERE key = 'pg:busy-row'`)) === 1,
    );
    const late = locks.acquire('busy-row', { mode: 'shared', wait: 8_000 });
    await eventually(
      async () =>
        (await count(`SELECT count(*) AS n FROM "${schema}".distributed_locks_queue WHERE key = 'pg:busy-row'`)) === 2,
    );
    // Another call holds the lease row (as the watchdog's extension of a reader does) while the writer gives up.
    const blocker = new Client({ connectionString: url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM "${schema}".distributed_locks WHERE key = 'pg:busy-row' FOR UPDATE`);
      controller.abort(new Error('the writer gave up'));
      expect(await writer).toMatchObject({ message: 'the writer gave up' });
      await sleep(300);
      await blocker.query('COMMIT');
    } finally {
      await blocker.end();
    }
    // The first reader's lease runs 30 s, and so does the re-check: the late reader got the key beside it.
    const lateReader = await late;
    expect(await locks.extend(reader)).toBe(true);
    await locks.release(lateReader);
    await locks.release(reader);
    await locks.shutdown();
  });

  it('hands an expired exclusive lease to the queued shared waiters at the next attempt, all of them at once', async () => {
    const b = backend();
    const key = 'pg:expired-run';
    const [crashed, r1, r2, r3] = Array.from({ length: 4 }, () => newLockToken());
    const held = await b.tryAcquire(key, crashed, 300);
    for (const reader of [r1, r2, r3])
      expect((await b.tryAcquire(key, reader, 10_000, queue, shared)).fence).toBeNull();
    await sleep(400);
    const first = await b.tryAcquire(key, r2, 10_000, queue, shared);
    expect(first.fence).toBeGreaterThan(held.fence!);
    // r2 took its place in the run; the others were handed the key by the same call.
    expect([first.handedTo?.token, ...(first.alsoHandedTo ?? []).map((h) => h.token)]).toEqual([r1, r3]);
    for (const reader of [r1, r2, r3]) expect(await b.release(key, reader)).toBe(true);
    expect(await b.release(key, crashed)).toBe(false);
  });

  it("keeps the lease row's end no earlier than any holder's, and housekeeping deletes holder rows that ended long ago", async () => {
    const b = backend();
    const key = 'pg:bound';
    const [a, c] = [newLockToken(), newLockToken()];
    expect((await b.tryAcquire(key, a, 1_000, undefined, { kind: 'limit', limit: 2 })).fence).not.toBeNull();
    expect((await b.tryAcquire(key, c, 1_000, undefined, { kind: 'limit', limit: 2 })).fence).not.toBeNull();
    expect(await b.extend(key, c, 60_000)).toBe(true);
    const [row] = await runSql<{ token: string; ahead: boolean }>(
      url,
      `SELECT l.token, l.expires_at >= (SELECT max(h.expires_at) FROM "${schema}".distributed_locks_holders h WHERE h.key = l.key) AS ahead
         FROM "${schema}".distributed_locks l WHERE l.key = $1`,
      [key],
    );
    expect(row).toEqual({ token: 'limit:2', ahead: true });
    await b.release(key, c);
    await runSql(
      url,
      `UPDATE "${schema}".distributed_locks_holders SET expires_at = now() - interval '1 hour' WHERE key = $1`,
      [key],
    );
    expect((await b.housekeep()).leases).toBeGreaterThanOrEqual(1);
    expect(await count(`SELECT count(*) AS n FROM "${schema}".distributed_locks_holders WHERE key = '${key}'`)).toBe(0);
    // The key is free again, for any mode.
    expect((await b.tryAcquire(key, newLockToken(), 1_000)).fence).not.toBeNull();
  });
});

describe("postgresBackend: durability 'relaxed'", () => {
  it('locks, hands off, extends and releases the same way', async () => {
    const locks = service(backend({ durability: 'relaxed' }));
    const held = (await locks.tryAcquire('async'))!;
    const pending = locks.acquire('async', { wait: 5_000 });
    await sleep(50);
    await locks.release(held);
    const next = await pending;
    expect(next.fence).toBeGreaterThan(held.fence);
    expect(await locks.extend(next, 20_000)).toBe(true);
    await locks.release(next);
    expect(await locks.tryAcquire('async')).not.toBeNull();
  });
});

describe("postgresBackend: hand-offs that do not wait for the flush (durability 'full')", () => {
  const row = async (key: string) => {
    const [r] = await runSql<{ token: string | null; expires_at: Date; durable_until: Date | null }>(
      url,
      `SELECT token, expires_at, durable_until FROM "${schema}".distributed_locks WHERE key = 'pg:${key}'`,
    );
    return r;
  };

  // Both columns come from clock_timestamp() calls of one statement: microseconds apart.
  const expectSameMoment = (a: Date, b: Date) => expect(Math.abs(a.getTime() - b.getTime())).toBeLessThanOrEqual(1);

  it('happen only while the state a crash could bring back covers the new holder, whose deadline says so', async () => {
    const [a, b, c] = [backend(), backend(), backend()].map((made) => new RecordingBackend(made));
    const [first, second, third] = [a, b, c].map((made) => service(made, 3_000));
    const held = (await first.tryAcquire('unflushed'))!;
    const flushed = await row('unflushed');
    // A lease taken by a flushed commit is durable until it ends.
    expectSameMoment(flushed.durable_until!, flushed.expires_at);

    // The waiters come later than the holder by more than the drift margin, so deadlines counted
    // from their own attempts would outlast the first lease.
    await sleep(400);
    // A deadline counted from a waiter's own attempt would end no earlier than this.
    const ownB = toEpochMs(performance.now()) + 3_000 - driftMargin(3_000);
    const pendingB = second.acquire('unflushed', { wait: 10_000 });
    await b.whenQueued('pg:unflushed');
    await first.release(held);
    const guardB = await pendingB;
    const afterB = await row('unflushed');
    expect(afterB.token).toBe(guardB.token);
    // The hand-off carried the bound of the state before it: a crash that loses it brings that
    // state back, whose lease lasts until then; the new holder's deadline ends no later.
    expectSameMoment(afterB.durable_until!, flushed.expires_at);
    expect(afterB.expires_at.getTime()).toBeGreaterThan(afterB.durable_until!.getTime());
    // It ends before the first lease ends at the server, by the drift margin, which covers the
    // difference of the two clocks (not before the holder's own deadline: the holder counted from
    // when it sent its attempt, which may have reached the server much later on a busy machine).
    expect(guardB.expiresAt).toBeLessThanOrEqual(flushed.expires_at.getTime());
    expect(guardB.expiresAt).toBeLessThan(ownB);

    // A second hand-off in a row keeps the same bound.
    const ownC = toEpochMs(performance.now()) + 3_000 - driftMargin(3_000);
    const pendingC = third.acquire('unflushed', { wait: 10_000 });
    await c.whenQueued('pg:unflushed');
    await second.release(guardB);
    const guardC = await pendingC;
    expectSameMoment((await row('unflushed')).durable_until!, flushed.expires_at);
    expect(guardC.expiresAt).toBeLessThanOrEqual(flushed.expires_at.getTime());
    expect(guardC.expiresAt).toBeLessThan(ownC);

    // A flushed extension makes the lease durable again, and the deadline whole.
    const extendedAt = Date.now();
    expect(await third.extend(guardC)).toBe(true);
    const extended = await row('unflushed');
    expectSameMoment(extended.durable_until!, extended.expires_at);
    expect(guardC.expiresAt).toBeGreaterThanOrEqual(extendedAt + 3_000 - 33);

    // A waiter whose ttl the bound does not cover gets a flushed hand-off and its whole ttl.
    const long = service(a, 60_000);
    const pendingD = long.acquire('unflushed', { wait: 10_000 });
    await a.whenQueued('pg:unflushed');
    await third.release(guardC);
    const guardD = await pendingD;
    const afterD = await row('unflushed');
    expect(afterD.token).toBe(guardD.token);
    expectSameMoment(afterD.durable_until!, afterD.expires_at);
    expect(guardD.expiresAt).toBeGreaterThan(Date.now() + 50_000);
    await long.release(guardD);
  });

  it("never happen with durability 'relaxed', which keeps no bound", async () => {
    const locks = service(backend({ durability: 'relaxed' }), 3_000);
    const held = (await locks.tryAcquire('relaxed-bound'))!;
    expect((await row('relaxed-bound')).durable_until).toBeNull();
    await locks.release(held);
  });
});
