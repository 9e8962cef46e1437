import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { memoryBackend, type LockBackend } from '../../lib';
import { redisLockKeys } from '../../lib/backends/redis/redis-key-layout';
import { postgresBackend } from '../../lib/postgres';
import { redisBackend } from '../../lib/redis';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../support/postgres-database';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../support/shared-redis';
import type { LockStateView, ModelTarget } from './lock-model.property';

/** The memory backend, read from its own Map (a lease or a place counts while it has not run out). */
export function memoryModelTarget(): ModelTarget {
  type State = { lease?: { token: string; endsAt: number }; queue: Array<{ token: string; until: number }> };
  return {
    create: () => memoryBackend(),
    inspect: async (backend: LockBackend, key: string): Promise<LockStateView> => {
      const state = (backend as unknown as { keys: Map<string, State> }).keys.get(key);
      const now = performance.now();
      return {
        holder: state?.lease && state.lease.endsAt > now ? state.lease.token : null,
        queued: (state?.queue ?? []).filter((w) => w.until > now).map((w) => w.token),
      };
    },
  };
}

/**
 * Redis (the shared server, a key prefix of its own), read with its key layout: the lease string
 * (`<token><fence>`, gone when it expires) and the waiters hash (token → `<place expiry, server ms>:<ttl>`);
 * a place counts while its expiry is ahead of the server clock.
 */
export function redisModelTarget(): ModelTarget {
  const prefix = testRunPrefix('model');
  let reader: Redis | undefined;
  return {
    // Calls may overtake each other here too (the latency wrapper reorders them): a give-back is sent
    // only after the attempt it follows has come back, so the order on the connection does not matter.
    ordered: false,
    create: () => redisBackend({ connection: sharedRedisOptions(prefix) }),
    async inspect(_backend, key) {
      reader ??= new Redis({ ...sharedRedisOptions(prefix), maxRetriesPerRequest: 1 });
      const names = redisLockKeys(key);
      const [lease, waiters, [seconds, micros]] = await Promise.all([reader.get(names.lease), reader.hgetall(names.waiters), reader.time()]);
      const serverNow = Number(seconds) * 1_000 + Number(micros) / 1_000;
      return {
        holder: lease ? lease.slice(0, 32) : null,
        queued: Object.entries(waiters)
          .filter(([, place]) => Number(place.split(':')[0]) > serverNow)
          .map(([token]) => token),
      };
    },
    async teardown() {
      reader?.disconnect();
      await deleteSharedKeys(prefix);
    },
  };
}

/** PostgreSQL (a schema of its own on the shared database), read from the lease and queue tables on the database clock. */
export function postgresModelTarget(): ModelTarget {
  const url = sharedDatabaseUrl();
  const schema = uniqueSchemaName('dl_model');
  let reader: Pool | undefined;
  return {
    async create() {
      const backend = postgresBackend({ connection: url, schema, applicationName: `dl-model-${randomBytes(3).toString('hex')}` });
      await backend.ready();
      return backend;
    },
    async inspect(_backend, key) {
      reader ??= new Pool({ connectionString: url, max: 1 });
      const [leases, queue] = [`"${schema}"."distributed_locks"`, `"${schema}"."distributed_locks_queue"`];
      const held = await reader.query<{ token: string }>(
        `SELECT token FROM ${leases} WHERE key = $1 AND token IS NOT NULL AND expires_at > clock_timestamp()`,
        [key],
      );
      const places = await reader.query<{ token: string }>(
        `SELECT token FROM ${queue} WHERE key = $1 AND expires_at > clock_timestamp() ORDER BY joined_at, token`,
        [key],
      );
      return { holder: held.rows[0]?.token ?? null, queued: places.rows.map((r) => r.token) };
    },
    async teardown() {
      await reader?.end();
      await dropSchema(url, schema);
    },
  };
}
