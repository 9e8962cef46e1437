import type { ChainableCommander } from 'ioredis';
import { LockBackendError } from '../../lock.errors';
import type { ExtendItem } from '../lock-backend';
import type { RedisConnection } from './redis-connection';
import { redisLockKeys } from './redis-key-layout';
import { readFlag } from './redis-lock.replies';
import type { LockScriptHost } from './redis-lock.scripts';

/**
 * Renews many leases in one round trip: one pipeline on a single server; on a Cluster the
 * commands go out in the same tick (ioredis groups them per node when auto-pipelining is on).
 * An item whose command failed gets its error, the others their answer. `extend` is the extend
 * script's command as defined on the client, `what` the operation's name in errors.
 */
export async function extendLeases(
  connection: RedisConnection,
  extend: string,
  what: string,
  items: readonly ExtendItem[],
): Promise<Array<boolean | Error>> {
  if (items.length === 0) return [];
  const answers = await connection.run(`extend (${items.length} leases)`, async () => {
    if (!connection.cluster) {
      const pipeline = connection.client.pipeline() as unknown as LockScriptHost & ChainableCommander;
      // Queued on the pipeline (its results come from exec()), not a promise to await.
      for (const item of items) void pipeline[extend](...extendArgs(item));
      const rows = (await pipeline.exec()) ?? [];
      return items.map((_, i) => (rows[i]?.[0] ? rows[i][0] : rows[i]?.[1]));
    }
    const host = connection.client as unknown as LockScriptHost;
    return Promise.all(items.map((item) => host[extend](...extendArgs(item)).catch((error: unknown) => error)));
  });
  return answers.map((answer, i) => {
    if (answer instanceof Error) {
      return new LockBackendError(
        'redis',
        `extend of "${items[i].key}" on ${connection.endpoint} failed: ${answer.message}`,
        { cause: answer },
      );
    }
    try {
      return readFlag(what, answer);
    } catch (error) {
      return error as Error;
    }
  });
}

/** The extend script's keys and arguments for `item`, as the defined command takes them. */
export function extendArgs(item: ExtendItem): [string, string, string, string, number] {
  const keys = redisLockKeys(item.key);
  return [keys.lease, keys.holders, keys.holding, item.token, item.ttl];
}
