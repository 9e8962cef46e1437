import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { LockBackend } from '../lock-backend';
import { loadIoredis } from './ioredis.loader';
import { resolveRedisBackendOptions, type RedisBackendOptions, type RedisQuorumNode } from './redis-backend.options';
import type { RedisClient } from './redis-client-description';
import { RedisConnection } from './redis-connection';
import { RedisLockBackend } from './redis-lock.backend';
import { RedisQuorumLockBackend } from './redis-quorum.backend';

/**
 * Settings of the connections the backend opens itself: bounded connects. Auto-pipelining stays
 * off: it delays every command to the next turn of the event loop, which costs a lone acquire more
 * than it saves; the watchdog's extensions are pipelined explicitly.
 */
function ownedDefaults(commandTimeout: number): RedisOptions {
  return { connectTimeout: commandTimeout };
}

/**
 * A Redis lock backend: `LockModule.forRoot({ backend: redisBackend({ url: 'redis://127.0.0.1:6379' }) })`.
 *
 * - `{ client }`: your ioredis `Redis` or `Cluster`; never closed by the backend.
 * - `{ url }`, `{ connection }` (Sentinel: `{ connection: { sentinels, name } }`), `{ cluster }`:
 *   connections the backend opens and closes at shutdown.
 * - `{ quorum: [...] }`: Redlock over an odd number (≥ 3) of independent masters.
 *
 * Bad options throw `InvalidLockOptionsError` before any connection is opened.
 */
export function redisBackend(options: RedisBackendOptions = {}): LockBackend {
  const resolved = resolveRedisBackendOptions(options);
  const { commandTimeout, recheckInterval, shardedPubSub, waitForReplicas } = resolved;
  const settings = { commandTimeout, recheckInterval, shardedPubSub, replicaAck: waitForReplicas };
  const source = resolved.source;

  if (source.kind === 'client') {
    return new RedisLockBackend(new RedisConnection(source.client, false, commandTimeout), settings);
  }
  const ioredis = loadIoredis();
  const open = (node: Exclude<RedisQuorumNode, Redis>): RedisClient =>
    typeof node === 'string'
      ? new ioredis.Redis(node, ownedDefaults(commandTimeout))
      : new ioredis.Redis({ ...ownedDefaults(commandTimeout), ...node });

  switch (source.kind) {
    case 'url':
    case 'connection': {
      const client = open(source.kind === 'url' ? source.url : source.connection);
      return new RedisLockBackend(new RedisConnection(client, true, commandTimeout), settings);
    }
    case 'cluster': {
      const client: Cluster = new ioredis.Cluster(source.nodes, {
        ...source.options,
        redisOptions: { connectTimeout: commandTimeout, ...source.options.redisOptions },
      });
      return new RedisLockBackend(new RedisConnection(client, true, commandTimeout), settings);
    }
    case 'quorum': {
      const nodes = source.nodes.map((node) => {
        const given = typeof node === 'object' && typeof (node as Redis).defineCommand === 'function';
        const client = given ? (node as Redis) : open(node as Exclude<RedisQuorumNode, Redis>);
        return new RedisLockBackend(new RedisConnection(client, !given, commandTimeout), {
          ...settings,
          announceReleases: true,
        });
      });
      return new RedisQuorumLockBackend(nodes, recheckInterval);
    }
  }
}
