import type { Logger } from '@nestjs/common';
import type { Cluster, Redis } from 'ioredis';
import { isCluster } from './redis-client-description';
import type { RedisConnection } from './redis-connection';

/** The only `maxmemory-policy` under which Redis never evicts a lock key. */
export const SAFE_EVICTION_POLICY = 'noeviction';

/** One master's eviction policy; `policy` undefined when the server would not say. */
export interface EvictionPolicy {
  readonly node: string;
  readonly policy: string | undefined;
}

/** An error answer of the server (NOPERM, an unknown or renamed command), as opposed to no answer. */
function isReplyError(error: unknown): boolean {
  return error instanceof Error && error.name === 'ReplyError';
}

/**
 * The `maxmemory-policy` of one server: from `INFO memory` (allowed on most managed services, and
 * needed by ioredis' ready check anyway), else from `CONFIG GET maxmemory-policy`. Undefined when the
 * server refuses both; a failure to get any answer is thrown.
 */
async function policyOf(node: Redis): Promise<string | undefined> {
  try {
    const info = await node.info('memory');
    const found = /^maxmemory_policy:(\S+)/m.exec(info);
    if (found) return found[1];
  } catch (error) {
    if (!isReplyError(error)) throw error;
  }
  try {
    const reply = (await node.config('GET', 'maxmemory-policy')) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === 'string') return reply[1];
  } catch (error) {
    if (!isReplyError(error)) throw error;
  }
  return undefined;
}

function nodeName(node: Redis): string {
  return `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;
}

/** The eviction policy of every master the connection writes locks to (each master of a Cluster). */
export async function readEvictionPolicies(connection: RedisConnection): Promise<EvictionPolicy[]> {
  return connection.run('eviction policy check', async () => {
    const client = connection.client;
    const masters = isCluster(client) ? (client as Cluster).nodes('master') : [client as Redis];
    return Promise.all(masters.map(async (node) => ({ node: nodeName(node), policy: await policyOf(node) })));
  });
}

/**
 * The warning for masters whose policy can evict lock keys, or undefined when every one that
 * answered runs `noeviction`. `allkeys-*` evicts any key; `volatile-*` evicts keys with a TTL, and
 * every lease has one.
 */
export function evictionWarning(endpoint: string, policies: readonly EvictionPolicy[]): string | undefined {
  const risky = policies.filter((p) => p.policy !== undefined && p.policy !== SAFE_EVICTION_POLICY);
  if (risky.length === 0) return undefined;
  const where = policies.length === 1 ? '' : ` (${risky.map((p) => `${p.node}: ${p.policy}`).join(', ')})`;
  const policy =
    risky.length === 1 || new Set(risky.map((p) => p.policy)).size === 1 ? risky[0].policy! : 'evicting policies';
  return (
    `${endpoint} runs with maxmemory-policy ${policy}${where}: when it reaches maxmemory it may evict lock keys ` +
    '(leases carry a TTL, so volatile-* policies evict them as well as allkeys-*). An evicted lease is a lost lock: ' +
    'another process can acquire the key while its holder still works, and only fences checked by the resource still ' +
    `protect it. Set maxmemory-policy ${SAFE_EVICTION_POLICY} on the Redis that holds the locks.`
  );
}

/** The check of a backend's server: started by its first acquisition or ping, done once answered. */
export class RedisEvictionCheck {
  private check: Promise<void> | undefined;

  constructor(
    private readonly connection: RedisConnection,
    private readonly logger: Logger,
  ) {}

  /** True while the check runs or once it is done; false before it starts and after it got no answer. */
  get started(): boolean {
    return this.check !== undefined;
  }

  /**
   * Reads the server's `maxmemory-policy` once and warns when it can evict lock keys. A refusal
   * (NOPERM, CONFIG renamed on a managed service) ends the check silently; no answer at all (the
   * server unreachable) lets the next acquisition or ping try again.
   */
  run(): Promise<void> {
    this.check ??= readEvictionPolicies(this.connection).then(
      (policies) => {
        const warning = evictionWarning(this.connection.endpoint, policies);
        if (warning) this.logger.warn(warning);
      },
      () => {
        this.check = undefined;
      },
    );
    return this.check;
  }
}
