import type { ChainableCommander } from 'ioredis';
import { LockBackendError } from '../../lock.errors';
import type { LockEvent } from '../lock-backend';
import type { RedisConnection } from './redis-connection';
import { readAcquireReply } from './redis-lock.replies';
import type { LockScriptHost } from './redis-lock.scripts';

/** Acknowledgement of an acquisition by replicas (`WAIT`) or by their AOF (`WAITAOF`). */
export interface ReplicaAcknowledgement {
  /** How many replicas must confirm the acquisition. */
  replicas: number;
  /** How long to wait for them, in ms. */
  timeout: number;
  /** Wait for the replicas' append-only files to be fsynced (`WAITAOF`, Redis 7.2+) instead of `WAIT`. */
  aof?: boolean;
}

/**
 * Acquisitions of a backend with replica acknowledgement: each counts only once `ack.replicas`
 * replicas (or their append-only files) confirmed it.
 */
export class AcknowledgedAcquisitions {
  constructor(
    private readonly connection: RedisConnection,
    private readonly ack: ReplicaAcknowledgement,
    private readonly commandTimeout: number,
    /** The acquire script's command, as defined on the client. */
    private readonly scriptName: string,
    /** What an acquisition is called in errors: `acquire on Redis at host:port`. */
    private readonly what: string,
  ) {}

  /**
   * The acquire script (`args` as the defined command takes them) and WAIT/WAITAOF in one
   * pipeline; a grant the replicas did not confirm is given back with `giveBack`.
   */
  async acquire(args: ReadonlyArray<string | number>, giveBack: () => Promise<unknown>): Promise<unknown> {
    const ack = this.ack;
    const rows = await this.connection.run(
      'acquire',
      async () => {
        const pipeline = this.connection.client.pipeline() as unknown as LockScriptHost & ChainableCommander;
        void pipeline[this.scriptName](...args); // queued; exec() gives the result
        if (ack.aof) pipeline.call('WAITAOF', 0, ack.replicas, ack.timeout);
        else pipeline.call('WAIT', ack.replicas, ack.timeout);
        return (await pipeline.exec()) ?? [];
      },
      this.commandTimeout + ack.timeout,
    );
    const [acquireError, reply] = rows[0] ?? [new Error('no reply')];
    if (acquireError) throw acquireError;
    const acquired = readAcquireReply(this.what, reply);
    if (acquired.kind !== 'granted') return reply;
    const [waitError, answer] = rows[1] ?? [new Error('no reply')];
    const confirmed = waitError ? undefined : Number(Array.isArray(answer) ? answer[1] : answer);
    if (confirmed !== undefined && confirmed >= ack.replicas) return reply;
    await giveBack().catch(() => undefined);
    const command = ack.aof ? 'WAITAOF' : 'WAIT';
    throw new LockBackendError(
      'redis',
      waitError
        ? `${command} on ${this.connection.endpoint} failed: ${waitError.message}; the lock was given back`
        : `only ${confirmed} of ${ack.replicas} replicas of ${this.connection.endpoint} confirmed the lock within ${ack.timeout} ms (${command}); the lock was given back`,
      { cause: waitError ?? undefined },
    );
  }
}

/**
 * The listener of a backend with replica acknowledgement: a hand-off is not yet confirmed, so a
 * grant reaches `listener` as a release; the waiter re-attempts, which renews its lease and waits
 * for the replicas.
 */
export function grantsAsReleases(key: string, listener: (event: LockEvent) => void): (event: LockEvent) => void {
  return (event: LockEvent) => listener(event.type === 'granted' ? { type: 'released', key } : event);
}
