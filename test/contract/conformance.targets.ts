import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { memoryBackend, type LockBackend } from '../../lib';
import { redisLockKeys } from '../../lib/backends/redis/redis-key-layout';
import { postgresBackend } from '../../lib/postgres';
import { redisBackend } from '../../lib/redis';
import type { ConformanceTarget, LockStateView } from '../../lib/testing';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../support/postgres-database';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../support/shared-redis';

/**
 * The project's own backends as targets of the conformance kit (lib/testing). They stay here, not in
 * the kit, because `evict` and `inspect` read and change the backends' internals and servers. Each
 * teardown can run more than once (once per suite of the kit), and the target works again after it.
 */

type MemoryState = {
  lease?: { token: string; endsAt: number };
  holders?: Map<string, { token: string; endsAt: number }>;
  queue: Array<{ token: string; until: number }>;
};
const memoryKeys = (backend: LockBackend): Map<string, MemoryState> =>
  (backend as unknown as { keys: Map<string, MemoryState> }).keys;

/** The memory backend, read from its own Map (a lease or a place counts while it has not run out). */
export function memoryTarget(): ConformanceTarget {
  return {
    name: 'memory',
    create: () => memoryBackend(),
    capabilities: { modes: ['shared', 'limit'] },
    inProcess: true,
    // A lease can only vanish from a process's own memory by its end; this drops it as a flush would.
    evict: async (backend, backendKey) => {
      const state = memoryKeys(backend).get(backendKey);
      if (state) state.lease = undefined;
    },
    inspect: async (backend, key): Promise<LockStateView> => {
      const state = memoryKeys(backend).get(key);
      const now = performance.now();
      const exclusive = state?.lease && state.lease.endsAt > now ? [state.lease.token] : [];
      const shared = [...(state?.holders?.values() ?? [])].filter((h) => h.endsAt > now).map((h) => h.token);
      const holders = [...exclusive, ...shared];
      return {
        holder: holders[0] ?? null,
        queued: (state?.queue ?? []).filter((w) => w.until > now).map((w) => w.token),
        holders,
      };
    },
  };
}

/**
 * Redis (the shared server, a key prefix of its own), read with its key layout: the lease string
 * (`<token><fence>`, gone when it expires), the shared or limited holders (sorted set token → lease
 * end, server ms) and the waiters hash (token → `<place expiry, server ms>:<ttl>[:<mode>]`); a
 * holder or a place counts while its end or expiry is ahead of the server clock.
 */
export function redisTarget(): ConformanceTarget {
  const prefix = testRunPrefix('contract');
  let reader: Redis | undefined;
  return {
    name: 'redis',
    capabilities: { modes: ['shared', 'limit'] },
    // Calls may overtake each other here too (the latency wrapper reorders them): a give-back is sent
    // only after the attempt it follows has come back, so the order on the connection does not matter.
    ordered: false,
    create: () => redisBackend({ connection: sharedRedisOptions(prefix) }),
    // As an eviction or a FLUSHALL would: the lease key is gone.
    async evict(_backend, backendKey) {
      const redis = new Redis(sharedRedisOptions(prefix));
      try {
        await redis.del(redisLockKeys(backendKey).lease);
      } finally {
        redis.disconnect();
      }
    },
    async inspect(_backend, key) {
      reader ??= new Redis({ ...sharedRedisOptions(prefix), maxRetriesPerRequest: 1 });
      return readRedisState(reader, key);
    },
    async teardown() {
      reader?.disconnect();
      reader = undefined;
      await deleteSharedKeys(prefix);
    },
  };
}

/** What one Redis server holds for `key`: the exclusive holder, or the live shared or limited ones. */
export async function readRedisState(redis: Redis, key: string): Promise<LockStateView> {
  const names = redisLockKeys(key);
  const [lease, holders, waiters, [seconds, micros]] = await Promise.all([
    redis.get(names.lease),
    redis.zrange(names.holders, 0, -1, 'WITHSCORES'),
    redis.hgetall(names.waiters),
    redis.time(),
  ]);
  const serverNow = Number(seconds) * 1_000 + Number(micros) / 1_000;
  const shared: string[] = [];
  for (let i = 0; i < holders.length; i += 2) if (Number(holders[i + 1]) > serverNow) shared.push(holders[i]);
  const all = lease ? [lease.slice(0, 32), ...shared] : shared;
  return {
    holder: all[0] ?? null,
    queued: Object.entries(waiters)
      .filter(([, place]) => Number(place.split(':')[0]) > serverNow)
      .map(([token]) => token),
    holders: all,
  };
}

/**
 * PostgreSQL (a schema of its own on the shared database), read from the lease, holder and queue
 * tables on the database clock.
 */
export function postgresTarget(): ConformanceTarget {
  const url = sharedDatabaseUrl();
  const schema = uniqueSchemaName('dl_contract');
  let reader: Pool | undefined;
  return {
    name: 'postgres',
    capabilities: { modes: ['shared', 'limit'] },
    async create() {
      const backend = postgresBackend({
        connection: url,
        schema,
        applicationName: `dl-contract-${randomBytes(3).toString('hex')}`,
      });
      await backend.ready();
      return backend;
    },
    // As a restore or a failover to a standby that never saw the lease would: the row is gone.
    async evict(_backend, backendKey) {
      await runSql(url, `DELETE FROM "${schema}".distributed_locks WHERE key = $1`, [backendKey]);
    },
    async inspect(_backend, key) {
      reader ??= new Pool({ connectionString: url, max: 1 });
      return readPostgresState(reader, schema, key);
    },
    async teardown() {
      const pool = reader;
      reader = undefined;
      await pool?.end();
      await dropSchema(url, schema);
    },
  };
}

/**
 * What the lease, holder and queue tables of `schema` hold for `key`, on the database clock: the
 * exclusive holder, else a shared or limited holder (the lease row's token then says how the key is
 * shared, not who holds it); the live places in queue order.
 */
export async function readPostgresState(reader: Pool, schema: string, key: string): Promise<LockStateView> {
  const [leases, holders, queue] = ['distributed_locks', 'distributed_locks_holders', 'distributed_locks_queue'].map(
    (table) => `"${schema}"."${table}"`,
  );
  const held = await reader.query<{ token: string }>(
    `SELECT l.token FROM ${leases} l WHERE l.key = $1 AND l.expires_at > clock_timestamp()
       AND l.token IS NOT NULL AND l.token <> 'shared' AND l.token NOT LIKE 'limit:%'
     UNION ALL
     SELECT h.token FROM ${holders} h WHERE h.key = $1 AND h.expires_at > clock_timestamp()`,
    [key],
  );
  const places = await reader.query<{ token: string }>(
    `SELECT token FROM ${queue} WHERE key = $1 AND expires_at > clock_timestamp() ORDER BY joined_at, token`,
    [key],
  );
  const all = held.rows.map((r) => r.token);
  return { holder: all[0] ?? null, queued: places.rows.map((r) => r.token), holders: all };
}
