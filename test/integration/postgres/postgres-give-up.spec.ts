import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { postgresBackend, type PostgresLockBackend } from '../../../lib/postgres';
import type { PostgresLocalWaiters } from '../../../lib/backends/postgres/postgres-local-waiters';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { eventually, sleep } from '../../support/time';

const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_giveup');
const backends: PostgresLockBackend[] = [];
/** Long enough that a key handed to a waiter that gave up would stay stuck for the rest of the test. */
const DEAD_TTL = 60_000;

function backend(applicationName = `dl-giveup-${randomBytes(3).toString('hex')}`): PostgresLockBackend {
  const made = postgresBackend({ connection: url, schema, applicationName });
  backends.push(made);
  return made;
}

const newToken = (): string => randomBytes(16).toString('hex');

/** Tokens the backend remembers as waiting in this process, over all keys. */
function localWaiters(b: PostgresLockBackend): number {
  return (b as unknown as { waiters: PostgresLocalWaiters }).waiters.size;
}

async function queueRows(keyPattern: string): Promise<number> {
  const [row] = await runSql<{ n: string }>(
    url,
    `SELECT count(*) AS n FROM "${schema}".distributed_locks_queue WHERE key LIKE $1`,
    [keyPattern],
  );
  return Number(row.n);
}

/** True when a fresh token gets `key` at once (then gives it back): nobody, dead or alive, holds it. */
async function isFree(b: PostgresLockBackend, key: string): Promise<boolean> {
  const probe = newToken();
  const result = await b.tryAcquire(key, probe, 1_000);
  if (result.fence === null) return false;
  await b.release(key, probe);
  return true;
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

afterAll(() => dropSchema(url, schema));

/** When the give-up is sent, relative to the queued attempt that it races. */
const timings: Array<() => Promise<void>> = [
  async () => undefined, // in the same tick, right after the attempt was sent
  () => new Promise<void>((resolve) => queueMicrotask(resolve)),
  () => new Promise<void>((resolve) => setImmediate(resolve)),
  () => sleep(Math.floor(Math.random() * 3)),
];

describe('postgresBackend: a waiter that gives up while its queued attempt is in flight', () => {
  it('never receives the key, and the backend forgets it (200 cycles, random timing)', async () => {
    const b = backend();
    await b.ready();
    // Three waiters that stay queued for the whole test on a key of their own.
    const liveHolder = newToken();
    expect((await b.tryAcquire('pg4:live', liveHolder, DEAD_TTL)).fence).not.toBeNull();
    const live = [newToken(), newToken(), newToken()];
    for (const token of live)
      expect((await b.tryAcquire('pg4:live', token, DEAD_TTL, { lease: DEAD_TTL })).fence).toBeNull();

    let stuck = 0;
    for (let cycle = 0; cycle < 200; cycle++) {
      const key = `pg4:cycle-${cycle}`;
      const holder = newToken();
      expect((await b.tryAcquire(key, holder, DEAD_TTL)).fence).not.toBeNull();
      const waiter = newToken();
      const attempt = b.tryAcquire(key, waiter, DEAD_TTL, { lease: DEAD_TTL });
      await timings[cycle % timings.length]();
      const giveUp = b.release(key, waiter);
      await Promise.all([attempt, giveUp]);
      // The holder's release must not hand the key to the waiter that gave up.
      await b.release(key, holder);
      if (!(await isFree(b, key))) stuck++;
    }
    expect({ stuck, queued: await queueRows('pg4:cycle-%'), remembered: localWaiters(b) }).toEqual({
      stuck: 0,
      queued: 0,
      remembered: live.length,
    });
  });

  it('forgets waiters whose place in the queue lapsed without a release', async () => {
    const b = backend();
    await b.ready();
    const holder = newToken();
    expect((await b.tryAcquire('pg4:lapse', holder, DEAD_TTL)).fence).not.toBeNull();
    for (let i = 0; i < 20; i++)
      expect((await b.tryAcquire('pg4:lapse', newToken(), DEAD_TTL, { lease: 50 })).fence).toBeNull();
    const staying = newToken();
    expect((await b.tryAcquire('pg4:other', newToken(), DEAD_TTL)).fence).not.toBeNull();
    expect((await b.tryAcquire('pg4:other', staying, DEAD_TTL, { lease: DEAD_TTL })).fence).toBeNull();
    await sleep(200);
    // Any later use of the map drops what lapsed; a release then hands the key to nobody.
    expect(await b.release('pg4:lapse', holder)).toBe(true);
    expect(localWaiters(b)).toBe(1);
    expect(await isFree(b, 'pg4:lapse')).toBe(true);
  });
});

describe('postgresBackend: waiters that give up at the same moment', () => {
  it('never deadlock and never leave the key to one of them (20 rounds of 2)', async () => {
    const b = backend();
    await b.ready();
    const failures: string[] = [];
    let stuck = 0;
    for (let round = 0; round < 20; round++) {
      const key = `pg5:round-${round}`;
      const holder = newToken();
      expect((await b.tryAcquire(key, holder, DEAD_TTL)).fence).not.toBeNull();
      const waiters = [newToken(), newToken()];
      for (const token of waiters)
        expect((await b.tryAcquire(key, token, DEAD_TTL, { lease: DEAD_TTL })).fence).toBeNull();
      const outcomes = await Promise.allSettled(waiters.map((token) => b.release(key, token)));
      for (const outcome of outcomes) if (outcome.status === 'rejected') failures.push(String(outcome.reason));
      await b.release(key, holder);
      if (!(await isFree(b, key))) stuck++;
    }
    expect({ failures, stuck, queued: await queueRows('pg5:%') }).toEqual({ failures: [], stuck: 0, queued: 0 });
  });
});

describe('postgresBackend: a lock statement chosen as a deadlock victim', () => {
  it('is sent again and succeeds', async () => {
    const app = `dl-victim-${randomBytes(3).toString('hex')}`;
    const b = backend(app);
    await b.ready();
    const key = 'pg5:victim';
    const holder = newToken();
    const waiter = newToken();
    expect((await b.tryAcquire(key, holder, DEAD_TTL)).fence).not.toBeNull();
    expect((await b.tryAcquire(key, waiter, DEAD_TTL, { lease: DEAD_TTL })).fence).toBeNull();
    // Another session takes the two rows the release needs (the lease row, then the waiter's queue
    // row) in the opposite order, and lets the release be the one that detects the deadlock (and
    // is rolled back).
    const other = new Client({ connectionString: url, application_name: 'dl-victim-other' });
    await other.connect();
    try {
      await other.query(`SET deadlock_timeout = '20s'`);
      await other.query('BEGIN');
      await other.query(`SELECT 1 FROM "${schema}".distributed_locks_queue WHERE key = $1 AND token = $2 FOR UPDATE`, [
        key,
        waiter,
      ]);
      const releasing = b.release(key, holder);
      await eventually(
        async () => {
          const [row] = await runSql<{ n: string }>(
            url,
            `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
            [app],
          );
          return Number(row.n) > 0;
        },
        { what: "the release to wait for the waiter's queue row" },
      );
      await other.query(`SELECT 1 FROM "${schema}".distributed_locks WHERE key = $1 FOR UPDATE`, [key]);
      await other.query('ROLLBACK');
      expect(await releasing).toBe(true);
    } finally {
      await other.end();
    }
    // The release went through as a whole: the waiter holds the key now.
    expect((await b.tryAcquire(key, waiter, DEAD_TTL)).fence).not.toBeNull();
    expect(await b.release(key, waiter)).toBe(true);
  });
});
