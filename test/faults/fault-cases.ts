import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { dropSchema, sharedDatabaseUrl } from '../support/postgres-database';
import { PrivatePostgres } from '../support/postgres-server';
import { RedisServerProcess } from '../support/redis-servers';
import { TcpFaultProxy, type ProxyMode } from '../support/tcp-fault-proxy';
import type { FaultCase, FaultRun } from './fault-runner';
import type { CheckOptions, HistoryEvent } from './history';
import type { BackendSpec, ResourceSpec } from './worker-config';

/** Knobs a soak run varies from its seed; quick mode uses the defaults. */
export interface CaseShape {
  workers: number;
  ttl: number;
  workMs: number;
  durationMs: number;
  /** When in the run the fault starts, ms after the workers are ready. */
  faultAfterMs: number;
  /**
   * From 0 to 1: how hard the client-dimension cases push (crowd size, delays, TTL ratios); quick
   * mode uses 0, the smallest and cheapest form of each.
   */
  knob: number;
}

export const QUICK_SHAPE: CaseShape = {
  workers: 4,
  ttl: 1_000,
  workMs: 5,
  durationMs: 4_000,
  faultAfterMs: 800,
  knob: 0,
};

/** A fault case with the servers it needs: `prepare` starts them, the returned `cleanup` stops them. */
export interface FaultCaseDefinition {
  name: string;
  backend: 'redis' | 'redis-quorum' | 'postgres';
  fault: string;
  /** Whether the fence check is off at the resource (the demonstration of what a TTL lock alone allows). */
  unfenced?: boolean;
  /**
   * `infrastructure` (default): well-behaved workers, broken servers and networks. `client`:
   * workers that use the lock the way real application code does, and backends under hostile
   * settings (client-cases.ts).
   */
  dimension?: 'infrastructure' | 'client';
  /** Says why the run did not exercise what the case is about (undefined: it did), from its history. */
  missed?: (history: HistoryEvent[]) => string | undefined;
  prepare(shape: CaseShape): Promise<{ faultCase: FaultCase; cleanup: () => Promise<void> }>;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const exclusive = (shape: CaseShape): CheckOptions => ({ exclusive: true, livenessWithin: shape.ttl + 1_000 });

/** The resource every Redis case writes to: the shared Redis, reached directly (never through a fault). */
export function redisResource(fenceCheck: boolean): ResourceSpec {
  return {
    kind: 'redis',
    url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    prefix: `faults:resource:${randomBytes(4).toString('hex')}:`,
    fenceCheck,
  };
}

export function postgresResource(schema: string, fenceCheck: boolean): ResourceSpec {
  return { kind: 'postgres', connection: sharedDatabaseUrl(), schema, fenceCheck };
}

/** One Redis server of the case's own, optionally behind a fault proxy. */
export async function privateRedis(
  withProxy = false,
  options?: Parameters<typeof RedisServerProcess.start>[0],
): Promise<{ server: RedisServerProcess; proxy?: TcpFaultProxy; url: string; cleanup: () => Promise<void> }> {
  const server = await RedisServerProcess.start(options);
  const proxy = withProxy ? await TcpFaultProxy.start(server.port) : undefined;
  return {
    server,
    proxy,
    url: proxy ? `redis://127.0.0.1:${proxy.port}` : server.url,
    cleanup: async () => {
      await proxy?.close();
      await server.stop();
    },
  };
}

/** Waits for the workers to be busy, then for a holder in the act (acquired, or inside its work). */
export async function holderOf(
  run: FaultRun,
  shape: CaseShape,
  type: 'acquired' | 'read' = 'acquired',
): Promise<HistoryEvent> {
  await sleep(shape.faultAfterMs);
  return run.next((e) => e.type === type);
}

/**
 * Server and network faults hit a holder inside its work (they wait for a `read`), and the work
 * outlasts the TTL, so the lease lives only as long as the watchdog can renew it through the fault.
 * Two TTLs of work: a fault that stops extensions for longer than the TTL then ends the holder's
 * lease before its work ends even when it starts up to about a TTL after the read (a runner that
 * hears of the read late, a fault that takes a while to set up). With less work, a fault that
 * starts after the first extension can let the lease outlast the work, and the case tests nothing.
 */
function longWork(shape: CaseShape): Pick<FaultCase, 'workMs'> {
  return { workMs: Math.max(shape.workMs, shape.ttl * 2) };
}

/** A fault that lasts `ms` on the given worker-independent resource, recorded in the history. */
export async function window(
  run: FaultRun,
  name: string,
  ms: number,
  start: () => Promise<void> | void,
  end: () => Promise<void> | void,
): Promise<void> {
  run.mark('*', name, 'start');
  await start();
  await sleep(ms);
  await end();
  run.mark('*', name, 'end');
}

function processFaults(backend: 'redis' | 'postgres'): FaultCaseDefinition[] {
  const setup = async (fenceCheck: boolean) => {
    if (backend === 'redis') {
      const redis = await privateRedis();
      return {
        spec: { kind: 'redis', url: redis.url } as BackendSpec,
        resource: redisResource(fenceCheck),
        cleanup: redis.cleanup,
      };
    }
    const schema = `dl_faults_${randomBytes(4).toString('hex')}`;
    return {
      spec: {
        kind: 'postgres',
        connection: sharedDatabaseUrl(),
        schema,
        applicationName: `dl-faults-${schema}`,
      } as BackendSpec,
      resource: postgresResource(schema, fenceCheck),
      cleanup: () => dropSchema(sharedDatabaseUrl(), schema),
    };
  };
  const define = (
    fault: string,
    build: (shape: CaseShape) => Partial<FaultCase> & Pick<FaultCase, 'check'>,
    unfenced = false,
  ): FaultCaseDefinition => ({
    name: `${backend}: ${fault}${unfenced ? ' (fence check off)' : ''}`,
    backend,
    fault,
    unfenced,
    async prepare(shape) {
      const env = await setup(!unfenced);
      return {
        faultCase: {
          name: `${backend}-${fault.replace(/\W+/g, '-')}`,
          backend: env.spec,
          resource: env.resource,
          ...shape,
          ...build(shape),
        },
        cleanup: env.cleanup,
      };
    },
  });
  const PAUSED_WORK_MS = 50;
  const pauseHolder = (shape: CaseShape): Partial<FaultCase> & Pick<FaultCase, 'check'> => ({
    // Long enough work that the holder can be stopped inside it, between its read and its write.
    workMs: PAUSED_WORK_MS,
    check: { exclusive: false },
    fault: async (run: FaultRun) => {
      // Stopped inside its work, after reading: it resumes to write with its old fence.
      const worker = await run.stopInsideWork(await holderOf(run, shape, 'read'), PAUSED_WORK_MS);
      await sleep(shape.ttl * 2);
      run.signal(worker, 'SIGCONT');
    },
  });
  return [
    define('no fault', (shape) => ({ check: exclusive(shape) })),
    define('holder SIGKILL', (shape) => ({
      check: exclusive(shape),
      fault: async (run) => {
        const holder = await holderOf(run, shape);
        run.signal(holder.worker, 'SIGKILL');
      },
    })),
    define('holder SIGSTOP past the TTL', pauseHolder),
    define('holder SIGSTOP past the TTL', pauseHolder, true),
    // Shared holders beside exclusive ones: readers overlap only readers, and a killed holder's
    // key comes back.
    define('readers and writers, holder SIGKILL', (shape) => ({
      workers: Math.max(shape.workers, 4),
      behaviours: [{ kind: 'plain' }, { kind: 'reader' }, { kind: 'reader' }, { kind: 'plain' }, { kind: 'reader' }],
      check: exclusive(shape),
      fault: async (run) => {
        const holder = await holderOf(run, shape);
        run.signal(holder.worker, 'SIGKILL');
      },
    })),
    // A limited key: never more than the limit at once, and a killed holder's place comes back when
    // its lease ends.
    define('limit 2, holder SIGKILL', (shape) => ({
      workers: Math.max(shape.workers, 4),
      behaviours: Array.from({ length: Math.max(shape.workers, 4) }, () => ({ kind: 'limited' as const, limit: 2 })),
      check: { ...exclusive(shape), placeBackWithin: shape.ttl + 2_000 },
      fault: async (run) => {
        const holder = await holderOf(run, shape);
        run.signal(holder.worker, 'SIGKILL');
      },
    })),
    // Multi-key locks beside single-key ones: every key keeps one holder, and a killed set's keys
    // come back (all or nothing holds under a crash too).
    define('multi-key and single-key holders, holder SIGKILL', (shape) => ({
      workers: Math.max(shape.workers, 4),
      behaviours: [
        { kind: 'plain' },
        { kind: 'pair', order: 'forward' },
        { kind: 'pair', order: 'reverse' },
        { kind: 'plain' },
      ],
      check: exclusive(shape),
      fault: async (run) => {
        const holder = await holderOf(run, shape);
        run.signal(holder.worker, 'SIGKILL');
      },
    })),
  ];
}

/**
 * The faults a TcpFaultProxy between the workers and the server injects, the same for every
 * backend: 150 ms of latency both ways for 2 × TTL; packets dropped (the stream stalls) and a
 * partition (connections cut, new ones refused) for 1.5 × TTL each.
 */
function proxyFaults<Env extends { proxy?: TcpFaultProxy }>(
  define: (
    fault: string,
    inject: (env: Env, run: FaultRun, shape: CaseShape) => Promise<void>,
    withProxy: boolean,
  ) => FaultCaseDefinition,
): FaultCaseDefinition[] {
  const through = (fault: string, name: string, ttls: number, mode: ProxyMode): FaultCaseDefinition =>
    define(
      fault,
      async (env, run, shape) => {
        await holderOf(run, shape, 'read');
        await window(
          run,
          name,
          shape.ttl * ttls,
          () => env.proxy!.set(mode),
          () => env.proxy!.set({ kind: 'pass' }),
        );
      },
      true,
    );
  return [
    through('proxy latency 150 ms', 'latency', 2, { kind: 'latency', ms: 150 }),
    through('proxy drop longer than the TTL', 'drop', 1.5, { kind: 'drop' }),
    through('proxy partition longer than the TTL', 'partition', 1.5, { kind: 'partition' }),
  ];
}

function redisServerFaults(): FaultCaseDefinition[] {
  const define = (
    fault: string,
    inject: (redis: Awaited<ReturnType<typeof privateRedis>>, run: FaultRun, shape: CaseShape) => Promise<void>,
    withProxy = false,
  ): FaultCaseDefinition => ({
    name: `redis: ${fault}`,
    backend: 'redis',
    fault,
    async prepare(shape) {
      const redis = await privateRedis(withProxy);
      return {
        faultCase: {
          name: `redis-${fault.replace(/\W+/g, '-')}`,
          backend: { kind: 'redis', url: redis.url },
          resource: redisResource(true),
          ...shape,
          ...longWork(shape),
          check: exclusive(shape),
          fault: (run) => inject(redis, run, shape),
        },
        cleanup: redis.cleanup,
      };
    },
  });
  const admin = async (server: RedisServerProcess, ...args: string[]): Promise<void> => {
    const client = server.admin();
    try {
      await client.call(args[0], ...args.slice(1));
    } finally {
      client.disconnect();
    }
  };
  return [
    // Without persistence a restarted server has forgotten every lease: exclusion holds because it
    // stays down longer than the TTL (a delayed restart), and fences hold because they carry the clock.
    define('redis-server kill -9, restart after the TTL', async (redis, run, shape) => {
      await holderOf(run, shape, 'read');
      await window(
        run,
        'kill -9',
        shape.ttl * 1.5,
        () => redis.server.kill(),
        () => redis.server.restart(),
      );
    }),
    define('CLIENT PAUSE longer than the TTL', async (redis, run, shape) => {
      await holderOf(run, shape, 'read');
      await window(
        run,
        'CLIENT PAUSE',
        shape.ttl * 1.5,
        () => admin(redis.server, 'CLIENT', 'PAUSE', String(Math.round(shape.ttl * 1.5)), 'ALL'),
        () => undefined,
      );
    }),
    define('CLIENT KILL of every client', async (redis, run, shape) => {
      await holderOf(run, shape, 'read');
      run.mark('*', 'CLIENT KILL', 'start');
      await admin(redis.server, 'CLIENT', 'KILL', 'TYPE', 'normal');
      await admin(redis.server, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
      run.mark('*', 'CLIENT KILL', 'end');
    }),
    ...proxyFaults(define),
  ];
}

function quorumFaults(): FaultCaseDefinition[] {
  const define = (
    fault: string,
    inject?: (servers: RedisServerProcess[], run: FaultRun, shape: CaseShape) => Promise<void>,
  ): FaultCaseDefinition => ({
    name: `redis quorum of 3: ${fault}`,
    backend: 'redis-quorum',
    fault,
    async prepare(shape) {
      const servers = await Promise.all([0, 1, 2].map(() => RedisServerProcess.start()));
      return {
        faultCase: {
          name: `quorum-${fault.replace(/\W+/g, '-')}`,
          backend: { kind: 'redis-quorum', urls: servers.map((s) => s.url) },
          resource: redisResource(true),
          ...shape,
          check: exclusive(shape),
          fault: inject && ((run) => inject(servers, run, shape)),
        },
        cleanup: async () => {
          await Promise.all(servers.map((s) => s.stop()));
        },
      };
    },
  });
  return [
    define('no fault'),
    define('one node kill -9', async (servers, run, shape) => {
      await holderOf(run, shape);
      run.mark('*', 'node kill -9', 'start');
      await servers[0].kill();
    }),
  ];
}

function postgresServerFaults(): FaultCaseDefinition[] {
  const shared = (
    fault: string,
    inject: (
      env: { schema: string; appName: string; proxy?: TcpFaultProxy },
      run: FaultRun,
      shape: CaseShape,
    ) => Promise<void>,
    withProxy = false,
  ): FaultCaseDefinition => ({
    name: `postgres: ${fault}`,
    backend: 'postgres',
    fault,
    async prepare(shape) {
      const schema = `dl_faults_${randomBytes(4).toString('hex')}`;
      const appName = `dl-faults-${schema}`;
      const proxy = withProxy
        ? await TcpFaultProxy.start(Number(new URL(sharedDatabaseUrl()).port || 5432))
        : undefined;
      const url = new URL(sharedDatabaseUrl());
      if (proxy) {
        url.hostname = '127.0.0.1';
        url.port = String(proxy.port);
      }
      return {
        faultCase: {
          name: `postgres-${fault.replace(/\W+/g, '-')}`,
          backend: { kind: 'postgres', connection: url.toString(), schema, applicationName: appName },
          resource: postgresResource(schema, true),
          ...shape,
          ...longWork(shape),
          check: exclusive(shape),
          fault: (run) => inject({ schema, appName, proxy }, run, shape),
        },
        cleanup: async () => {
          await proxy?.close();
          await dropSchema(sharedDatabaseUrl(), schema);
        },
      };
    },
  });
  const terminate = async (appName: string): Promise<void> => {
    const client = new Client({ connectionString: sharedDatabaseUrl() });
    await client.connect();
    try {
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1', [
        `${appName}%`,
      ]);
    } finally {
      await client.end();
    }
  };
  return [
    shared('pg_terminate_backend of every lock connection', async (env, run, shape) => {
      await holderOf(run, shape, 'read');
      run.mark('*', 'pg_terminate_backend', 'start');
      await terminate(env.appName);
      run.mark('*', 'pg_terminate_backend', 'end');
    }),
    ...proxyFaults(shared),
    {
      name: 'postgres: PostgreSQL restart',
      backend: 'postgres',
      fault: 'PostgreSQL restart',
      async prepare(shape) {
        const server = await PrivatePostgres.start();
        const schema = `dl_faults_${randomBytes(4).toString('hex')}`;
        return {
          faultCase: {
            name: 'postgres-restart',
            backend: { kind: 'postgres', connection: server.url(), schema },
            resource: postgresResource(schema, true),
            ...shape,
            ...longWork(shape),
            check: exclusive(shape),
            fault: async (run) => {
              await holderOf(run, shape, 'read');
              await window(
                run,
                'restart',
                0,
                () => server.restart('fast'),
                () => undefined,
              );
            },
          },
          cleanup: async () => {
            await server.stop();
            await dropSchema(sharedDatabaseUrl(), schema);
          },
        };
      },
    },
  ];
}

/** Every infrastructure case, on every backend where it applies (the client dimension: client-cases.ts). */
export function faultCaseDefinitions(): FaultCaseDefinition[] {
  return [
    ...processFaults('redis'),
    ...redisServerFaults(),
    ...quorumFaults(),
    ...processFaults('postgres'),
    ...postgresServerFaults(),
  ];
}
