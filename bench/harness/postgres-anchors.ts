import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import advisoryLock from 'advisory-lock';
import { Client, type Pool } from 'pg';
import type { PostgresLockStatements } from '../../lib/backends/postgres/postgres-lock.statements';
import type { LockUnderTest } from './lock-bench.harness';

type Row = Record<string, unknown>;

async function lastRow(pool: Pool, text: string): Promise<Row> {
  const results = (await pool.query(text)) as unknown as Array<{ rows: Row[] }>;
  return results[results.length - 1].rows[0];
}

/**
 * The raw floor: the very statements the backend sends, from a bare pg pool, with no service, no
 * queue and no notifications. A busy key is polled again every `pollMs`.
 */
export function leaseFloor(
  pool: Pool,
  statements: PostgresLockStatements,
  { ttl = 30_000, pollMs = 1 } = {},
): LockUnderTest {
  return async (key) => {
    const token = randomBytes(16).toString('hex');
    for (;;) {
      const row = await lastRow(pool, statements.acquire(key, token, ttl));
      if (row.fence !== null) break;
      await sleep(pollMs);
    }
    return async () => {
      await lastRow(pool, statements.release(key, token));
    };
  };
}

/** advisory-lock 2.0.0 as its README shows it: `lock()` resolves with the unlock function. */
export function advisoryLockPackage(url: string): LockUnderTest {
  const mutexes = advisoryLock(url);
  return async (key) => mutexes(key).lock();
}

/**
 * Session advisory locks on dedicated connections (one per concurrent holder or waiter): the server
 * itself wakes the next waiter and nothing is WAL-logged, the hand-off ceiling of the server.
 */
export async function sessionAdvisoryLocks(
  url: string,
  connections: number,
): Promise<{ lock: LockUnderTest; close: () => Promise<void> }> {
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = new Client({ connectionString: url, application_name: 'dl-bench-advisory' });
      await client.connect();
      return client;
    }),
  );
  const free = [...clients];
  const lock: LockUnderTest = async (key) => {
    const client = free.pop();
    if (!client) throw new Error('more concurrent lockers than dedicated connections');
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
    return async () => {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
      free.push(client);
    };
  };
  return { lock, close: async () => void (await Promise.all(clients.map((c) => c.end()))) };
}
