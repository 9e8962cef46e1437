import { Redis } from 'ioredis';
import { Pool } from 'pg';
import type { LockBackend } from '../../lib';
import { postgresBackend } from '../../lib/postgres';
import { redisBackend } from '../../lib/redis';
import { PostgresFencedResource, RedisFencedResource, type FencedResource } from './fenced-resource';

/** Where the worker's locks live. */
export type BackendSpec =
  | { kind: 'redis'; url: string }
  | { kind: 'redis-quorum'; urls: string[] }
  | {
      kind: 'postgres';
      connection: string;
      schema: string;
      applicationName?: string;
      /** Give the backend a `pg` Pool of the worker's own with this many connections (the app shares it). */
      userPool?: { max: number };
    };

/** The fenced counter the worker updates (reached directly, never through a fault proxy). */
export type ResourceSpec =
  | { kind: 'postgres'; connection: string; schema: string; fenceCheck: boolean }
  | { kind: 'redis'; url: string; prefix: string; fenceCheck: boolean };

/**
 * How a worker uses the lock. `plain` is the well-behaved loop; the others behave like real
 * application code that the library must still keep right (see lock-worker.ts for what each does).
 * `workMs` and `wait` override the case's work time and wait for that worker.
 */
export type WorkerBehaviour = { workMs?: number; wait?: number } & (
  | { kind: 'plain' }
  /** A reader of a read-write lock: `mode: 'shared'`, reads the resource with its fence, never writes. */
  | { kind: 'reader' }
  /**
   * A multi-key lock: `withLock([key, key + ':pair'])` (listed in `order`), updating the resource
   * with the fence of the worker's key; recorded as one call on each key.
   */
  | { kind: 'pair'; order: 'forward' | 'reverse' }
  /** One of at most `limit` holders of the key (`limit`), holding for the work time, no resource. */
  | { kind: 'limited'; limit: number }
  /**
   * Inside the work, after its write: `timer` starts a callback it does not await, which after
   * `delayMs` (the outer withLock has released by then) asks `currentLock()` whether it holds the
   * lock and calls `withLock(sameKey)` to update the resource; `release-then-nest` calls
   * `release(lock)` and then a nested `withLock(sameKey)` that updates the resource.
   */
  | { kind: 'escape'; mode: 'timer' | 'release-then-nest'; delayMs: number }
  /**
   * Every `every`-th call blocks the event loop inside the work for `blockMs` (a busy loop), then
   * writes only `if (!lock.signal.aborted)`, with no await between the check and the write, and
   * returns without awaiting the write.
   */
  | { kind: 'cpu-block'; blockMs: number; every: number }
  /** Calls `extend(lock, ttl)` at the start of the work (a TTL other than the one it acquired with). */
  | { kind: 'extend'; ttl: number }
  /**
   * Every call passes a signal and aborts it against the attempt in flight: at once after the call
   * (delay 0) or after a random delay up to `maxDelayMs`; one call in three uses a random short
   * `wait` up to `maxDelayMs` instead. Asks for `ttl`, so a key handed to it after it gave up stays
   * unavailable for that long.
   */
  | { kind: 'abort'; maxDelayMs: number; ttl: number }
  /** Each round starts `waiters` withLock calls at once, all with `wait` ms: they give up together. */
  | { kind: 'crowd'; waiters: number; wait: number; ttl: number }
  /**
   * PostgreSQL with `userPool`: each round takes every connection of the pool in a transaction of
   * its own for `holdMs`, and meanwhile calls `acquire({ wait })` and `tryAcquire` (which then have
   * no connection to run on), then a normal withLock.
   */
  | { kind: 'hog-pool'; holdMs: number; wait: number }
);

export interface WorkerConfig {
  id: string;
  backend: BackendSpec;
  resource: ResourceSpec;
  resourceName: string;
  keyPrefix: string;
  key: string;
  ttl: number;
  wait: number;
  workMs: number;
  thinkMs: number;
  durationMs: number;
  behaviour?: WorkerBehaviour;
}

/** The worker's lock backend, and the `pg` Pool it was given when the spec asks for a user pool. */
export function createBackend(spec: BackendSpec): { backend: LockBackend; pool?: Pool } {
  switch (spec.kind) {
    case 'redis':
      return { backend: redisBackend({ url: spec.url, commandTimeout: 500, recheckInterval: 200 }) };
    case 'redis-quorum':
      return { backend: redisBackend({ quorum: spec.urls, commandTimeout: 500, recheckInterval: 200 }) };
    case 'postgres': {
      const common = {
        schema: spec.schema,
        applicationName: spec.applicationName,
        statementTimeout: 1_000,
        recheckInterval: 200,
      };
      if (spec.userPool) {
        const pool = new Pool({
          connectionString: spec.connection,
          max: spec.userPool.max,
          application_name: spec.applicationName,
        });
        pool.on('error', () => undefined);
        return { backend: postgresBackend({ ...common, pool }), pool };
      }
      return {
        backend: postgresBackend({
          ...common,
          connection: { connectionString: spec.connection, max: 2, connectionTimeoutMillis: 1_000 },
        }),
      };
    }
  }
}

export async function createResource(spec: ResourceSpec): Promise<FencedResource> {
  if (spec.kind === 'redis') {
    return new RedisFencedResource(new Redis(spec.url, { maxRetriesPerRequest: 3 }), spec.prefix, spec.fenceCheck);
  }
  const pool = new Pool({ connectionString: spec.connection, max: 1 });
  pool.on('error', () => undefined);
  return PostgresFencedResource.create(pool, spec.schema, spec.fenceCheck);
}
