import { randomBytes } from 'node:crypto';
import { LockLostError } from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { postgresBackend, type PostgresLockBackend } from '../../../lib/postgres';
import { RecordingBackend } from '../../support/recording-backend';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { freePort } from '../../support/free-port';
import { PrivatePostgres } from '../../support/postgres-server';
import { eventually, sleep, whenAborted } from '../../support/time';

const backends: PostgresLockBackend[] = [];

function service(on: PostgresLockBackend | RecordingBackend, ttl = 10_000): DistributedLockService {
  return new DistributedLockService({ backend: on, keyPrefix: 'fault:', ttl, wait: 10_000 });
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close()));
});

/** Terminates this test's own server sessions only, found by their application_name. */
async function terminate(url: string, applicationName: string): Promise<number> {
  const rows = await runSql<{ pid: number }>(
    url,
    `SELECT pg_terminate_backend(pid) AS done, pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
    [applicationName],
  );
  return rows.length;
}

describe('postgresBackend faults on the shared server', () => {
  const url = sharedDatabaseUrl();
  const schema = uniqueSchemaName('dl_faults');
  afterAll(() => dropSchema(url, schema));

  function backend(applicationName: string, extra: object = {}): PostgresLockBackend {
    const made = postgresBackend({ connection: url, schema, applicationName, recheckInterval: 100, ...extra });
    backends.push(made);
    return made;
  }

  it('keeps holders and waiters going when their pool connections are terminated', async () => {
    const app = `dl-fault-pool-${randomBytes(3).toString('hex')}`;
    const holderBackend = backend(`${app}-a`);
    const waiterBackend = backend(`${app}-b`);
    const holder = service(holderBackend);
    const waiter = service(waiterBackend);
    let terminated = 0;
    let aborted = false;
    let markHeld!: () => void;
    const isHeld = new Promise<void>((resolve) => (markHeld = resolve));
    const held = holder.withLock(
      'pool',
      async (lock) => {
        markHeld();
        // Work past the TTL: the watchdog extends every 500 ms while the pool connections keep
        // getting killed, and each extension has the rest of the TTL to get through.
        for (let i = 0; i < 10; i++) {
          await sleep(200);
          terminated += await terminate(url, `${app}-a`);
          terminated += await terminate(url, `${app}-b`);
        }
        aborted = lock.signal.aborted;
        return lock.fence;
      },
      { ttl: 1_500 },
    );
    await isHeld;
    const waiting = waiter.acquire('pool', { wait: 10_000, ttl: 5_000 });
    const heldFence = await held;
    const next = await waiting;
    expect(terminated).toBeGreaterThan(0);
    expect(aborted).toBe(false);
    expect(next.fence).toBeGreaterThan(heldFence);
    await waiter.release(next);
  });

  it('wakes waiters when the LISTEN connection is terminated, and listens again', async () => {
    const app = `dl-fault-listen-${randomBytes(3).toString('hex')}`;
    const holderBackend = backend(`${app}-a`);
    const waiterBackend = backend(`${app}-b`);
    const recorded = new RecordingBackend(waiterBackend);
    const holder = service(holderBackend);
    const waiter = service(recorded);
    const first = (await holder.tryAcquire('listen'))!;
    const pending = waiter.acquire('listen', { wait: 10_000 });
    await recorded.whenQueued('fault:listen');
    expect(await terminate(url, `${app}-b/listen`)).toBe(1);
    await eventually(() => !waiterBackend.listening, { what: 'the listener to notice' });
    await holder.release(first);
    const guard = await pending;
    expect(guard.fence).toBeGreaterThan(first.fence);
    // The listener reconnects, and hand-offs are delivered by notification again.
    await eventually(() => waiterBackend.listening, { within: 10_000, what: 'the listener to reconnect' });
    await waiter.release(guard);
    const third = (await holder.tryAcquire('listen'))!;
    const pendingAgain = waiter.acquire('listen', { wait: 10_000 });
    const queued = await recorded.whenSettled(
      (c) =>
        c.method === 'tryAcquire' &&
        c.queued === true &&
        c.token !== guard.token &&
        (c.result as { fence: unknown })?.fence === null,
    );
    const attempts = recorded.count('tryAcquire', queued.token);
    await holder.release(third);
    const again = await pendingAgain;
    expect(again.token).toBe(queued.token);
    expect(recorded.count('tryAcquire', queued.token)).toBe(attempts);
    await waiter.release(again);
  });

  it('falls back to re-checking every recheckInterval while the listener cannot connect', async () => {
    const app = `dl-fault-nolisten-${randomBytes(3).toString('hex')}`;
    const deadPort = await freePort();
    const holderBackend = backend(`${app}-a`);
    const waiterBackend = backend(`${app}-b`, {
      listen: `postgres://postgres@127.0.0.1:${deadPort}/test`,
      recheckInterval: 100,
    });
    const holder = service(holderBackend);
    const waiter = service(waiterBackend);
    const first = (await holder.tryAcquire('nolisten'))!;
    const pending = waiter.acquire('nolisten', { wait: 10_000 });
    await sleep(200);
    expect(waiterBackend.listening).toBe(false);
    expect(waiterBackend.recheckInterval).toBe(100);
    await holder.release(first);
    const guard = await pending;
    expect(guard.fence).toBeGreaterThan(first.fence);
    await waiter.release(guard);
  });
});

describe('postgresBackend faults on a private server', () => {
  let server: PrivatePostgres;

  beforeAll(async () => {
    server = await PrivatePostgres.start();
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('aborts a withLock before its lease ends when PostgreSQL goes down, and works again with higher fences after it restarts', async () => {
    const url = server.url();
    const make = (): PostgresLockBackend => {
      const made = postgresBackend({ connection: url, statementTimeout: 1_000, recheckInterval: 100 });
      backends.push(made);
      return made;
    };
    const locks = service(make());
    const before = (await locks.tryAcquire('restart'))!;
    await locks.release(before);

    let deadlineAt = 0;
    let heldFence = 0n;
    // Long enough that the watchdog confirms an extension (at ttl/3) before the crash.
    const ttl = 8_000;
    const outcome = locks
      .withLock(
        'restart',
        async (lock) => {
          heldFence = lock.fence;
          // Let the watchdog confirm one extension, then take the server down (a crash).
          await sleep(ttl / 3 + 300);
          await server.halt('immediate');
          await whenAborted(lock.signal);
          // The local deadline the signal fired at: the last confirmed extension's, drift taken off.
          deadlineAt = lock.expiresAt;
          return 'stopped';
        },
        { ttl },
      )
      .catch((error: unknown) => error);
    const error = await outcome;
    expect(error).toBeInstanceOf(LockLostError);
    expect(heldFence).toBeGreaterThan(before.fence);

    await server.startServer();
    // The lease that survived the crash ends after the deadline at which the holder was told to stop
    // (a test of the deadline, not of how late a busy machine ran the timer that fired it).
    const [row] = await runSql<{ expires_ms: string; token: string }>(
      url,
      `SELECT (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms, token FROM public.distributed_locks WHERE key = 'fault:restart'`,
    );
    expect(deadlineAt).toBeGreaterThan(0);
    expect(Number(row.expires_ms)).toBeGreaterThan(deadlineAt);

    const again = service(make());
    const next = await again.acquire('restart', { wait: 15_000 });
    expect(next.fence).toBeGreaterThan(heldFence);
    const other = (await again.tryAcquire('restart-other'))!;
    expect(other.fence).toBeGreaterThan(next.fence);
    await again.release(next);
    await again.release(other);
  });

  it("keeps fences increasing across a crash with durability 'relaxed', whose commits are not flushed", async () => {
    const url = server.url();
    const make = (): PostgresLockBackend => {
      const made = postgresBackend({
        connection: url,
        schema: 'relaxed',
        durability: 'relaxed',
        statementTimeout: 2_000,
      });
      backends.push(made);
      return made;
    };
    const locks = service(make());
    let highest = 0n;
    for (let i = 0; i < 300; i++) {
      const guard = (await locks.tryAcquire(`k${i % 7}`))!;
      if (guard.fence > highest) highest = guard.fence;
      await locks.release(guard);
    }
    // A crash right after: the last commits may not have reached the disk, the sequence with them.
    await server.halt('immediate');
    await server.startServer();
    const [epoch] = await runSql<{ n: string }>(url, 'SELECT count(*) AS n FROM relaxed.distributed_locks_fence_epoch');
    expect(Number(epoch.n)).toBe(0);

    const after = service(make());
    const fresh = (await after.tryAcquire('after-crash'))!;
    expect(fresh.fence).toBeGreaterThan(highest);
    const [reservation] = await runSql<{ upto: string }>(
      url,
      'SELECT upto FROM relaxed.distributed_locks_fence_reservation',
    );
    expect(BigInt(reservation.upto)).toBeGreaterThan(fresh.fence);
    await after.release(fresh);
  });

  it("keeps a hand-off that a crash undid from overlapping anyone: the state that comes back outlasts the new holder's deadline", async () => {
    const url = server.url();
    const make = (): PostgresLockBackend => {
      const made = postgresBackend({
        connection: url,
        schema: 'handoff_crash',
        statementTimeout: 2_000,
        recheckInterval: 100,
      });
      backends.push(made);
      return made;
    };
    // The WAL writer sleeps long, so a commit that does not wait for its flush stays in memory
    // until the crash: the hand-off is then lost, as it may be on any crash.
    await runSql(url, "ALTER SYSTEM SET wal_writer_delay = '10s'");
    await runSql(url, 'SELECT pg_reload_conf()');
    let undone = 0;
    try {
      for (let round = 0; round < 3; round++) {
        const on = make();
        const locks = service(on, 3_000);
        const first = (await locks.tryAcquire('crash'))!;
        // The waiter comes later than the holder by more than the drift margin, so a deadline counted
        // from its own attempt would outlast the holder's lease.
        await sleep(400);
        const pending = locks.acquire('crash', { wait: 5_000 });
        await eventually(
          async () =>
            Number(
              (await runSql<{ n: string }>(url, 'SELECT count(*) AS n FROM handoff_crash.distributed_locks_queue'))[0]
                .n,
            ) === 1,
          {
            within: 5_000,
          },
        );
        await locks.release(first);
        const second = await pending;
        await server.halt('immediate');
        await server.startServer();

        const [row] = await runSql<{ token: string; expires_ms: string }>(
          url,
          `SELECT token, (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms FROM handoff_crash.distributed_locks WHERE key = 'fault:crash'`,
        );
        if (row.token === first.token) {
          undone++;
          // The lease that came back ends after the new holder's own deadline: nobody else could take
          // the key while the new holder still believed it held it.
          expect(Number(row.expires_ms)).toBeGreaterThanOrEqual(second.expiresAt);
          expect(await locks.extend(second)).toBe(false);
        } else {
          expect(row.token).toBe(second.token);
        }
        const after = service(make(), 3_000);
        const next = await after.acquire('crash', { wait: 15_000 });
        expect(next.fence).toBeGreaterThan(second.fence);
        await after.release(next);
        await Promise.all(backends.splice(0).map((b) => b.close()));
      }
    } finally {
      await runSql(url, 'ALTER SYSTEM RESET wal_writer_delay').catch(() => undefined);
      await runSql(url, 'SELECT pg_reload_conf()').catch(() => undefined);
    }
    // With the WAL writer asleep, a crash right after the hand-off undoes it (it was not on disk).
    expect(undone).toBeGreaterThan(0);
  }, 90_000);
});
