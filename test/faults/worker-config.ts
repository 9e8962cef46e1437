import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { type LockBackend } from '../../lib';
import { postgresBackend } from '../../lib/postgres';
import { redisBackend } from '../../lib/redis';
import { PostgresFencedResource, RedisFencedResource, type FencedResource } from './fenced-resource';

/** Where the worker's locks live. */
export type BackendSpec =
  | { kind: 'redis'; url: string }
  | { kind: 'redis-quorum'; urls: string[] }
  | { kind: 'postgres'; connection: string; schema: string; applicationName?: string };

/** The fenced counter the worker updates (reached directly, never through a fault proxy). */
export type ResourceSpec =
  | { kind: 'postgres'; connection: string; schema: string; fenceCheck: boolean }
  | { kind: 'redis'; url: string; prefix: string; fenceCheck: boolean };

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
}

export function createBackend(spec: BackendSpec): LockBackend {
  switch (spec.kind) {
    case 'redis':
      return redisBackend({ url: spec.url, commandTimeout: 500, recheckInterval: 200 });
    case 'redis-quorum':
      return redisBackend({ quorum: spec.urls, commandTimeout: 500, recheckInterval: 200 });
    case 'postgres':
      return postgresBackend({
        connection: { connectionString: spec.connection, max: 2, connectionTimeoutMillis: 1_000 },
        schema: spec.schema,
        applicationName: spec.applicationName,
        statementTimeout: 1_000,
        recheckInterval: 200,
      });
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
