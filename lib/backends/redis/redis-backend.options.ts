import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { MAX_TIMER_DELAY } from '../../lock.constants';
import { InvalidLockOptionsError } from '../../lock.errors';
import { describeValue, validateOptionsObject } from '../../lock.validation';
import type { ReplicaAcknowledgement } from './redis-replica-acknowledgement';

/** A quorum node: your own `Redis` instance (left open), a `redis://` URL or ioredis options (opened and closed by the backend). */
export type RedisQuorumNode = Redis | string | RedisOptions;

/**
 * Options of `redisBackend()`. Give at most one connection source; none means an owned connection
 * to 127.0.0.1:6379.
 */
export interface RedisBackendOptions {
  /** Your own ioredis `Redis` (single server or Sentinel) or `Cluster`. Used as it is and never closed by the backend. */
  client?: Redis | Cluster;
  /** A `redis://` or `rediss://` URL: the backend opens the connection and closes it at shutdown. */
  url?: string;
  /** ioredis options (host, port, password, tls, or `sentinels` + `name` for Sentinel): opened and closed by the backend. */
  connection?: RedisOptions;
  /** A Cluster the backend opens (and closes): its startup nodes and ioredis Cluster options. */
  cluster?: { nodes: ClusterNode[]; options?: ClusterOptions };
  /** Redlock over an odd number (at least 3) of independent masters. */
  quorum?: RedisQuorumNode[];
  /** Bound on every Redis command, waiting for the connection included, in ms. Default 2000. */
  commandTimeout?: number;
  /** How often a waiter re-checks a busy lock in case a wake-up message was lost, in ms. Default 1000. */
  recheckInterval?: number;
  /** Cluster only: use sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7+). Default true; false for Redis 6 clusters. */
  shardedPubSub?: boolean;
  /** Count an acquisition only once this many replicas confirmed it (`WAIT`, or `WAITAOF` with `aof`). */
  waitForReplicas?: ReplicaAcknowledgement;
}

export const DEFAULT_COMMAND_TIMEOUT = 2_000;
export const DEFAULT_RECHECK_INTERVAL = 1_000;

const OPTION_NAMES = [
  'client',
  'url',
  'connection',
  'cluster',
  'quorum',
  'commandTimeout',
  'recheckInterval',
  'shardedPubSub',
  'waitForReplicas',
] as const;
const SOURCES = ['client', 'url', 'connection', 'cluster', 'quorum'] as const;

/** The checked options, with defaults applied. */
export interface ResolvedRedisBackendOptions {
  source:
    | { kind: 'client'; client: Redis | Cluster }
    | { kind: 'url'; url: string }
    | { kind: 'connection'; connection: RedisOptions }
    | { kind: 'cluster'; nodes: ClusterNode[]; options: ClusterOptions }
    | { kind: 'quorum'; nodes: RedisQuorumNode[] };
  commandTimeout: number;
  recheckInterval: number;
  shardedPubSub: boolean;
  waitForReplicas?: ReplicaAcknowledgement;
}

function fail(message: string): never {
  throw new InvalidLockOptionsError(`Invalid redisBackend options: ${message}`);
}

function isIoredisClient(value: unknown): value is Redis | Cluster {
  const candidate = value as Record<string, unknown> | null;
  return (
    candidate !== null &&
    typeof candidate === 'object' &&
    typeof candidate.defineCommand === 'function' &&
    typeof candidate.duplicate === 'function' &&
    typeof candidate.pipeline === 'function'
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !isIoredisClient(value);
}

function checkInteger(name: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${name} must be an integer number of milliseconds from ${min} to ${max}, got ${describeValue(value)}`);
  }
  return value;
}

function checkUrl(where: string, url: unknown): string {
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
    // The URL may hold a password: say what it should look like, not what it was.
    fail(
      `${where} must be a string starting with redis:// or rediss://${typeof url === 'string' ? '' : `, got ${describeValue(url)}`}`,
    );
  }
  try {
    new URL(url);
  } catch {
    fail(`${where} is not a valid URL (expected redis://[user:password@]host:port[/db])`);
  }
  return url;
}

/** Checks `redisBackend` options before anything is opened. */
export function resolveRedisBackendOptions(options: unknown): ResolvedRedisBackendOptions {
  if (isIoredisClient(options)) fail('pass your client as { client }');
  const opts = validateOptionsObject('redisBackend options', options, OPTION_NAMES);
  const given = SOURCES.filter((name) => opts[name] !== undefined);
  if (given.length > 1) fail(`give only one of ${SOURCES.join(', ')}; got ${given.join(' and ')}`);

  const commandTimeout = checkInteger('commandTimeout', opts.commandTimeout, 1, 600_000, DEFAULT_COMMAND_TIMEOUT);
  const recheckInterval = checkInteger(
    'recheckInterval',
    opts.recheckInterval,
    10,
    MAX_TIMER_DELAY,
    DEFAULT_RECHECK_INTERVAL,
  );
  if (opts.shardedPubSub !== undefined && typeof opts.shardedPubSub !== 'boolean') {
    fail(`shardedPubSub must be a boolean, got ${describeValue(opts.shardedPubSub)}`);
  }

  let waitForReplicas: ReplicaAcknowledgement | undefined;
  if (opts.waitForReplicas !== undefined) {
    const ack = validateOptionsObject('redisBackend waitForReplicas', opts.waitForReplicas, [
      'replicas',
      'timeout',
      'aof',
    ]);
    if (
      typeof ack.replicas !== 'number' ||
      !Number.isInteger(ack.replicas) ||
      ack.replicas < 1 ||
      ack.replicas > 1_000
    ) {
      fail(`waitForReplicas.replicas must be an integer from 1 to 1000, got ${describeValue(ack.replicas)}`);
    }
    const timeout = checkInteger('waitForReplicas.timeout', ack.timeout, 1, 600_000, NaN);
    if (Number.isNaN(timeout))
      fail('waitForReplicas.timeout is required (ms, from 1 to 600000; 0 would block forever)');
    if (ack.aof !== undefined && typeof ack.aof !== 'boolean')
      fail(`waitForReplicas.aof must be a boolean, got ${describeValue(ack.aof)}`);
    waitForReplicas = { replicas: ack.replicas, timeout, aof: ack.aof === true };
  }

  const common = { commandTimeout, recheckInterval, shardedPubSub: opts.shardedPubSub !== false, waitForReplicas };
  if (opts.client !== undefined) {
    if (!isIoredisClient(opts.client))
      fail(`client must be an ioredis Redis or Cluster instance, got ${describeValue(opts.client)}`);
    return { ...common, source: { kind: 'client', client: opts.client } };
  }
  if (opts.url !== undefined) return { ...common, source: { kind: 'url', url: checkUrl('url', opts.url) } };
  if (opts.cluster !== undefined) {
    const cluster = validateOptionsObject('redisBackend cluster', opts.cluster, ['nodes', 'options']);
    if (!Array.isArray(cluster.nodes) || cluster.nodes.length === 0) {
      fail(
        `cluster.nodes must be a non-empty array of startup nodes ({ host, port }, "host:port" or a port), got ${describeValue(cluster.nodes)}`,
      );
    }
    if (cluster.options !== undefined && !isPlainObject(cluster.options)) {
      fail(`cluster.options must be ioredis Cluster options, got ${describeValue(cluster.options)}`);
    }
    return {
      ...common,
      source: {
        kind: 'cluster',
        nodes: cluster.nodes as ClusterNode[],
        options: (cluster.options ?? {}) as ClusterOptions,
      },
    };
  }
  if (opts.quorum !== undefined) {
    const nodes = opts.quorum;
    if (!Array.isArray(nodes) || nodes.length < 3 || nodes.length % 2 === 0) {
      fail(
        `quorum must be an array of an odd number (at least 3) of independent Redis masters, got ${
          Array.isArray(nodes) ? `${nodes.length} nodes` : describeValue(nodes)
        }`,
      );
    }
    nodes.forEach((node, i) => {
      if (typeof node === 'string') checkUrl(`quorum[${i}]`, node);
      else if (isIoredisClient(node)) {
        if ((node as Cluster).isCluster)
          fail(`quorum[${i}] is a Cluster; quorum nodes must be independent single masters`);
      } else if (!isPlainObject(node)) {
        fail(`quorum[${i}] must be a Redis instance, a redis:// URL or ioredis options, got ${describeValue(node)}`);
      }
    });
    if (waitForReplicas) fail('waitForReplicas does not apply to a quorum (its nodes are independent masters)');
    return { ...common, source: { kind: 'quorum', nodes: nodes as RedisQuorumNode[] } };
  }
  if (opts.connection !== undefined) {
    if (!isPlainObject(opts.connection))
      fail(`connection must be ioredis options, got ${describeValue(opts.connection)}`);
    return { ...common, source: { kind: 'connection', connection: opts.connection as RedisOptions } };
  }
  return { ...common, source: { kind: 'connection', connection: {} } };
}
