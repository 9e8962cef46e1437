import { randomBytes } from 'node:crypto';
import { postgresBackend } from '../../lib/postgres';
import { dropSchema, sharedDatabaseUrl } from '../support/postgres-database';
import { PrivateDatabase } from '../support/postgres-private-database';
import type { RedisServerProcess } from '../support/redis-servers';
import {
  holderOf,
  postgresResource,
  privateRedis,
  redisResource,
  sleep,
  window,
  type CaseShape,
  type FaultCaseDefinition,
} from './fault-cases';
import type { FaultCase, FaultRun } from './fault-runner';
import type { CheckOptions, HistoryEvent } from './history';
import type { BackendSpec, ResourceSpec, WorkerBehaviour } from './worker-config';

/**
 * The client dimension of the fault suite: workers that use the lock the way real application code
 * does, and backends under hostile settings. The checker is the same; the verdicts that matter here
 * are the ones about the caller: withLock resolved although its lease was not held throughout,
 * "held" answers after another holder got the key, keys left to nobody while others wait (stuck),
 * calls that run far past their wait, and the fenced resource (no lost or out-of-order write).
 */

type Backend = 'redis' | 'postgres';

/** Where a case's locks live, and how it is torn down. */
interface Env {
  backend: BackendSpec;
  resource: ResourceSpec;
  redis?: RedisServerProcess;
  cleanup(): Promise<void>;
}

/** What a case runs, given its shape, the backend and the servers it got. */
type Build = (shape: CaseShape, env: Env) => Partial<FaultCase> & Pick<FaultCase, 'check'>;

const between = (low: number, high: number, knob: number): number => Math.round(low + (high - low) * knob);

/** The verdicts every client case is held to; `exclusive` where no holder is ever stopped past its lease. */
function verdict(ttl: number, exclusive: boolean, extra: Partial<CheckOptions> = {}): CheckOptions {
  return { exclusive, stuckWithin: Math.round(1.5 * ttl), callWithin: 3_000, ...extra };
}

/** `count` workers: the given behaviours first, the rest plain. */
function workers(count: number, ...behaviours: WorkerBehaviour[]): Pick<FaultCase, 'workers' | 'behaviours'> {
  return { workers: Math.max(count, behaviours.length + 1), behaviours };
}

async function redisEnv(options?: Parameters<typeof privateRedis>[1]): Promise<Env> {
  const redis = await privateRedis(false, options);
  return {
    backend: { kind: 'redis', url: redis.url },
    resource: redisResource(true),
    redis: redis.server,
    cleanup: redis.cleanup,
  };
}

/** A schema of its own on the shared database, or (hostile settings) a private database and role. */
async function postgresEnv(
  options: { database?: Record<string, string>; role?: Record<string, string>; userPool?: { max: number } } = {},
): Promise<Env> {
  const schema = `dl_faults_${randomBytes(4).toString('hex')}`;
  const applicationName = `dl-faults-${schema}`;
  const resource = postgresResource(schema, true);
  if (!options.database && !options.role) {
    return {
      backend: {
        kind: 'postgres',
        connection: sharedDatabaseUrl(),
        schema,
        applicationName,
        userPool: options.userPool,
      },
      resource,
      cleanup: () => dropSchema(sharedDatabaseUrl(), schema),
    };
  }
  const db = await PrivateDatabase.create({ database: options.database, role: options.role });
  try {
    // Migrated once up front, so the workers only find the schema (the settings are about lock traffic).
    const migrator = postgresBackend({ connection: db.url, schema, applicationName, housekeepingInterval: 0 });
    await migrator.ready();
    await migrator.close();
  } catch (error) {
    await db.drop();
    throw error;
  }
  return {
    backend: { kind: 'postgres', connection: db.url, schema, applicationName, userPool: options.userPool },
    resource,
    cleanup: async () => {
      await db.drop();
      await dropSchema(sharedDatabaseUrl(), schema);
    },
  };
}

/** `missed` for a case whose behaviour shows in the history as at least one event that matches. */
const expectEvent =
  (what: string, test: (e: HistoryEvent) => boolean) =>
  (history: HistoryEvent[]): string | undefined =>
    history.some(test) ? undefined : `no ${what} in the history`;

function define(
  backend: Backend,
  fault: string,
  setup: () => Promise<Env>,
  build: Build,
  missed?: FaultCaseDefinition['missed'],
): FaultCaseDefinition {
  return {
    name: `${backend}: ${fault}`,
    backend,
    fault,
    dimension: 'client',
    missed,
    async prepare(shape) {
      const env = await setup();
      try {
        return {
          faultCase: {
            name: `${backend}-client-${fault.replace(/\W+/g, '-').slice(0, 48)}`,
            backend: env.backend,
            resource: env.resource,
            ...shape,
            ...build(shape, env),
          },
          cleanup: env.cleanup,
        };
      } catch (error) {
        await env.cleanup();
        throw error;
      }
    },
  };
}

/** The adversarial workers, the same on every backend. */
function clientBehaviours(backend: Backend): FaultCaseDefinition[] {
  const setup = backend === 'redis' ? () => redisEnv() : () => postgresEnv();
  return [
    define(
      backend,
      'callbacks that escape withLock and call it again',
      setup,
      (shape) => ({
        ...workers(
          Math.max(3, shape.workers),
          { kind: 'escape', mode: 'timer', delayMs: between(10, 100, shape.knob) },
          { kind: 'escape', mode: 'release-then-nest', delayMs: 0, workMs: Math.max(shape.workMs, 20) },
        ),
        check: verdict(shape.ttl, true),
      }),
      expectEvent('escaped call', (e) => e.type === 'guard'),
    ),
    define(
      backend,
      'CPU block past the TTL, then a write guarded by the signal',
      setup,
      (shape) => {
        const blockMs = Math.round((shape.ttl * between(22, 30, shape.knob)) / 10);
        return {
          ...workers(Math.max(3, shape.workers), { kind: 'cpu-block', blockMs, every: 2 }),
          durationMs: Math.max(shape.durationMs, 2 * blockMs),
          // The blocked holder overlaps its successor by design (as a paused one does): the verdicts
          // are that it was told (no "held" answer, withLock rejects) and that its write was refused.
          check: verdict(shape.ttl, false),
        };
      },
      expectEvent('check of the signal after a CPU block', (e) => e.type === 'guard'),
    ),
    define(
      backend,
      'extend with a shorter and a longer TTL inside the work',
      setup,
      (shape) => {
        const ttl = 3 * shape.ttl;
        return {
          ttl,
          ...workers(
            Math.max(4, shape.workers),
            // Shorter: the server's lease ends long before the watchdog's next turn at ttl/3.
            { kind: 'extend', ttl: Math.round((ttl * between(8, 15, shape.knob)) / 100), workMs: Math.round(ttl / 4) },
            // Longer, with work longer than ttl/3.
            { kind: 'extend', ttl: 3 * ttl, workMs: Math.round(ttl / 2) },
            // Impatient callers: each new call asks afresh how long the lease has left.
            { kind: 'plain', wait: Math.round(ttl / 10) },
          ),
          check: verdict(ttl, false),
        };
      },
      expectEvent('hold of the extending worker', (e) => e.type === 'acquired' && e.worker === 'w0'),
    ),
    define(
      backend,
      'aborts and short deadlines against attempts in flight',
      setup,
      (shape) => {
        const abort: WorkerBehaviour = { kind: 'abort', maxDelayMs: between(5, 50, shape.knob), ttl: 5 * shape.ttl };
        return { ...workers(Math.max(4, shape.workers), abort, abort), check: verdict(shape.ttl, true) };
      },
      expectEvent('aborted call', (e) => e.type === 'settled' && e.outcome === 'aborted'),
    ),
    define(
      backend,
      'a crowd of waiters giving up together',
      setup,
      (shape) => ({
        ...workers(
          Math.max(3, shape.workers),
          {
            kind: 'crowd',
            waiters: between(100, 500, shape.knob),
            wait: between(100, 250, shape.knob),
            ttl: 5 * shape.ttl,
          },
          // Work longer than ttl/3 (the crowd gives up while it runs), and a short one.
          { kind: 'plain', workMs: Math.round(shape.ttl * 0.4) },
        ),
        check: verdict(shape.ttl, true),
      }),
      expectEvent(
        'crowd waiter that gave up',
        (e) => e.type === 'settled' && e.outcome === 'timeout' && e.worker === 'w0',
      ),
    ),
  ];
}

function redisHostile(): FaultCaseDefinition[] {
  const admin = async (
    server: RedisServerProcess,
    run: (client: ReturnType<RedisServerProcess['admin']>) => Promise<unknown>,
  ): Promise<void> => {
    const client = server.admin();
    client.on('error', () => undefined);
    try {
      await run(client);
    } finally {
      client.disconnect();
    }
  };
  return [
    define(
      'redis',
      'FLUSHALL during holds shorter than ttl/3',
      () => redisEnv(),
      (shape, env) => ({
        workMs: Math.round((shape.ttl * between(10, 25, shape.knob)) / 100),
        check: verdict(shape.ttl, false),
        fault: async (run: FaultRun) => {
          await holderOf(run, shape, 'read');
          const flushes = 10;
          await window(
            run,
            'FLUSHALL',
            0,
            async () => {
              for (let i = 0; i < flushes; i++) {
                await admin(env.redis!, (client) => client.flushall());
                await sleep(between(150, 400, shape.knob));
              }
            },
            () => undefined,
          );
        },
      }),
      expectEvent('FLUSHALL', (e) => e.type === 'fault' && e.fault === 'FLUSHALL'),
    ),
    define(
      'redis',
      'maxmemory with allkeys-lru evicting lock keys',
      // Samples of one: each eviction takes a key nearly at random, lock keys included.
      () => redisEnv({ config: ['maxmemory 3mb', 'maxmemory-policy allkeys-lru', 'maxmemory-samples 1'] }),
      (shape, env) => ({
        workMs: Math.round((shape.ttl * between(10, 25, shape.knob)) / 100),
        check: verdict(shape.ttl, false),
        fault: async (run: FaultRun) => {
          await holderOf(run, shape, 'read');
          const filler = 'x'.repeat(100_000);
          let evicted = 0;
          await window(
            run,
            'eviction',
            0,
            () =>
              admin(env.redis!, async (client) => {
                // About 24 filler values of 100 kB fill the 2 MB left: every further write evicts a key.
                const until = performance.now() + Math.max(1_000, shape.durationMs - shape.faultAfterMs - 500);
                for (let i = 0; performance.now() < until && i < 100_000; i++) {
                  await client.set(`filler:${i % 24}:${i}`, filler).catch(() => undefined);
                  await sleep(10);
                }
                const stats = await client.info('stats');
                evicted = Number(/evicted_keys:(\d+)/.exec(stats)?.[1] ?? 0);
              }),
            () => undefined,
          );
          run.mark('*', `evicted keys: ${evicted}`, 'end');
        },
      }),
      expectEvent('eviction', (e) => e.type === 'fault' && /^evicted keys: [1-9]/.test(e.fault)),
    ),
  ];
}

function postgresHostile(): FaultCaseDefinition[] {
  // Longer leases than the shape's: a release that fails leaves the key for at least 2/3 of the TTL,
  // well past stuckWithin, so a failed release shows as a stuck key.
  const settled = (shape: CaseShape): Partial<FaultCase> & Pick<FaultCase, 'check'> => {
    const ttl = 2 * shape.ttl;
    return {
      ttl,
      // Ordinary contention, somewhat heavier than the shape's: more workers, one of them making a
      // few concurrent calls at a time (statements then meet on the same rows).
      ...workers(shape.workers + 2, { kind: 'crowd', waiters: between(4, 12, shape.knob), wait: ttl, ttl }),
      check: verdict(ttl, true, { stuckWithin: Math.max(1_000, Math.round(ttl / 2)) }),
    };
  };
  return [
    define(
      'postgres',
      'default_transaction_isolation serializable',
      () => postgresEnv({ database: { default_transaction_isolation: 'serializable' } }),
      settled,
    ),
    define('postgres', 'lock_timeout 1ms for the role', () => postgresEnv({ role: { lock_timeout: '1ms' } }), settled),
    define(
      'postgres',
      'a user Pool of max 1 whose connection the app holds',
      () => postgresEnv({ userPool: { max: 1 } }),
      (shape) => ({
        ...workers(Math.max(3, shape.workers), { kind: 'hog-pool', holdMs: 4_000, wait: 200 }),
        check: verdict(shape.ttl, true, { callWithin: 2_000 }),
      }),
      expectEvent('call made while the app held the pool', (e) => e.type === 'invoke' && e.wait === 200),
    ),
  ];
}

/** Every client-dimension case, on every backend where it applies. */
export function clientCaseDefinitions(): FaultCaseDefinition[] {
  return [...clientBehaviours('redis'), ...redisHostile(), ...clientBehaviours('postgres'), ...postgresHostile()];
}
