import { Logger } from '@nestjs/common';
import type { ChainableCommander } from 'ioredis';
import { LockBackendError } from '../../lock.errors';
import { BackgroundWork } from '../../background-work';
import type {
  AcquireResult,
  ExtendItem,
  HandOff,
  LockBackend,
  LockEvent,
  QueueOptions,
  ReleaseResult,
} from '../lock-backend';
import { RedisConnection } from './redis-connection';
import { evictionWarning, readEvictionPolicies } from './redis-eviction-check';
import { redisLockKeys, type RedisLockKeys } from './redis-key-layout';
import { readAcquireReply, readFlag, readReleaseReply } from './redis-lock.replies';
import { RedisLockSubscriber } from './redis-lock.subscriber';
import { defineLockScripts, lockScripts, type LockScript, type LockScriptHost } from './redis-lock.scripts';

/** Acknowledgement of an acquisition by replicas (`WAIT`) or by their AOF (`WAITAOF`). */
export interface ReplicaAcknowledgement {
  /** How many replicas must confirm the acquisition. */
  replicas: number;
  /** How long to wait for them, in ms. */
  timeout: number;
  /** Wait for the replicas' append-only files to be fsynced (`WAITAOF`, Redis 7.2+) instead of `WAIT`. */
  aof?: boolean;
}

export interface RedisLockBackendSettings {
  /** Bound on every command, in ms (waiting for the connection included). */
  commandTimeout: number;
  /** How often a waiter re-checks in case a wake-up was lost, in ms. */
  recheckInterval: number;
  /** Cluster only: SSUBSCRIBE/SPUBLISH (Redis 7+) instead of SUBSCRIBE/PUBLISH. */
  shardedPubSub: boolean;
  /** When set, an acquisition counts only once this many replicas confirmed it. */
  replicaAck?: ReplicaAcknowledgement;
  /** Publish every release (not only those with waiters queued): the quorum's nodes need it. */
  announceReleases?: boolean;
}

/**
 * Locks on one Redis deployment: a single server, a Sentinel-managed master or a Cluster.
 *
 * Every operation is one Lua script (acquire, extend, release), so one round trip, atomic on the
 * server, and bounded by the command timeout. TTLs run on the server clock (PX). A release hands
 * the lock to the oldest live queued waiter inside the script and publishes the grant on the
 * lock's channel; when the waiter lives in this process, the release reply wakes it at once (every
 * subscriber of this backend, and the service through `handedTo`).
 */
export class RedisLockBackend implements LockBackend {
  readonly name = 'redis';
  readonly capabilities = { fifo: true, fencing: 'strict' } as const;
  readonly recheckInterval: number;
  private readonly host: LockScriptHost;
  private readonly acquireScript: LockScript;
  private readonly extendScript: LockScript;
  private readonly releaseScript: LockScript;
  private readonly publish: 'PUBLISH' | 'SPUBLISH';
  /** How the acquire script publishes: "p" PUBLISH, "s" SPUBLISH. */
  private readonly acquireMode: 'p' | 's';
  /** How the release script publishes: as acquireMode; upper case also announces every release. */
  private readonly releaseMode: 'p' | 's' | 'P' | 'S';
  private subscriber: RedisLockSubscriber | undefined;
  /** The highest fence this backend has seen: every new fence it asks for is higher. */
  private floor = 0;
  /** What follows the token in the scripts' first argument: the publish mode and the floor. */
  private acquireSuffix: string;
  private releaseSuffix: string;
  private closed = false;
  /** What each operation is called in errors: `acquire on Redis at host:port`, … */
  private readonly names: { readonly acquire: string; readonly extend: string; readonly release: string };
  private readonly readExtend = (reply: unknown): boolean => readFlag(this.names.extend, reply);
  /** The check of the server's eviction policy: started by the first acquisition or ping, done once answered. */
  private evictionCheck: Promise<void> | undefined;
  private readonly logger = new Logger('RedisLockBackend');
  /**
   * The release with the hand-off it made. Left out with replica acknowledgement: a hand-off the
   * replicas have not confirmed is no grant to wake a waiter with (see `subscribe`).
   */
  readonly releaseWithHandOff?: (key: string, token: string) => Promise<ReleaseResult>;
  /** Releases after a failed attempt, awaited by `close()`. */
  private readonly background = new BackgroundWork();

  constructor(
    readonly connection: RedisConnection,
    private readonly settings: RedisLockBackendSettings,
  ) {
    const scripts = lockScripts();
    this.acquireScript = scripts.acquire;
    this.extendScript = scripts.extend;
    this.releaseScript = scripts.release;
    defineLockScripts(connection.client, scripts);
    this.host = connection.client as unknown as LockScriptHost;
    this.recheckInterval = settings.recheckInterval;
    if (!settings.replicaAck) this.releaseWithHandOff = (key, token) => this.releaseAndRead(key, token);
    this.publish = connection.cluster && settings.shardedPubSub ? 'SPUBLISH' : 'PUBLISH';
    this.acquireMode = this.publish === 'SPUBLISH' ? 's' : 'p';
    this.releaseMode = settings.announceReleases ? (this.acquireMode === 's' ? 'S' : 'P') : this.acquireMode;
    this.acquireSuffix = `${this.acquireMode}0`;
    this.releaseSuffix = `${this.releaseMode}0`;
    const endpoint = connection.endpoint;
    this.names = {
      acquire: `acquire on ${endpoint}`,
      extend: `extend on ${endpoint}`,
      release: `release on ${endpoint}`,
    };
  }

  /** Where the backend connects, for messages (host and port, no credentials). */
  get endpoint(): string {
    return this.connection.endpoint;
  }

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions): Promise<AcquireResult> {
    if (this.evictionCheck === undefined) void this.checkEvictionPolicy();
    const keys = redisLockKeys(key);
    const script = this.acquireScript;
    const args: Array<string | number> = [
      script.sha,
      script.numberOfKeys,
      keys.lease,
      keys.queue,
      keys.waiters,
      keys.fence,
      keys.channel,
      token + this.acquireSuffix,
      ttl,
    ];
    if (queue && queue.lease > 0) args.push(queue.lease);
    const read = (reply: unknown): AcquireResult => this.readAcquire(key, keys, reply);
    const answer = this.settings.replicaAck
      ? this.acquireAcknowledged(key, token, args.slice(2)).then(read)
      : this.connection.evalScript('acquire', script, args, read);
    return answer.catch((error: unknown) => {
      // The attempt may have been granted after all: give back whatever it may hold.
      this.releaseInBackground(key, token);
      throw error;
    });
  }

  extend(key: string, token: string, ttl: number): Promise<boolean> {
    const keys = redisLockKeys(key);
    const script = this.extendScript;
    return this.connection.evalScript(
      'extend',
      script,
      [script.sha, script.numberOfKeys, keys.lease, token, ttl],
      this.readExtend,
    );
  }

  /**
   * Renews many leases in one round trip: one pipeline on a single server; on a Cluster the
   * commands go out in the same tick (ioredis groups them per node when auto-pipelining is on).
   * An item whose command failed gets its error, the others their answer.
   */
  async extendMany(items: readonly ExtendItem[]): Promise<Array<boolean | Error>> {
    if (items.length === 0) return [];
    const extend = this.extendScript.name;
    const answers = await this.connection.run(`extend (${items.length} leases)`, async () => {
      if (!this.connection.cluster) {
        const pipeline = this.connection.client.pipeline() as unknown as LockScriptHost & ChainableCommander;
        // Queued on the pipeline (its results come from exec()), not a promise to await.
        for (const item of items) void pipeline[extend](redisLockKeys(item.key).lease, item.token, item.ttl);
        const rows = (await pipeline.exec()) ?? [];
        return items.map((_, i) => (rows[i]?.[0] ? rows[i][0] : rows[i]?.[1]));
      }
      return Promise.all(
        items.map((item) =>
          this.host[extend](redisLockKeys(item.key).lease, item.token, item.ttl).catch((error: unknown) => error),
        ),
      );
    });
    return answers.map((answer, i) => {
      if (answer instanceof Error) {
        return new LockBackendError(
          'redis',
          `extend of "${items[i].key}" on ${this.endpoint} failed: ${answer.message}`,
          { cause: answer },
        );
      }
      try {
        return readFlag(this.names.extend, answer);
      } catch (error) {
        return error as Error;
      }
    });
  }

  async release(key: string, token: string): Promise<boolean> {
    return (await this.releaseAndRead(key, token)).released;
  }

  private releaseAndRead(key: string, token: string): Promise<ReleaseResult> {
    const keys = redisLockKeys(key);
    const script = this.releaseScript;
    const args = [
      script.sha,
      script.numberOfKeys,
      keys.lease,
      keys.queue,
      keys.waiters,
      keys.fence,
      keys.channel,
      token + this.releaseSuffix,
    ];
    return this.connection.evalScript('release', script, args, (reply) => this.readRelease(key, keys, reply));
  }

  subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    if (this.closed) return Promise.reject(new LockBackendError('redis', 'subscribe: the backend was closed'));
    this.subscriber ??= new RedisLockSubscriber(
      this.connection,
      this.publish === 'SPUBLISH',
      this.settings.commandTimeout,
    );
    // With replica acknowledgement a hand-off is not yet confirmed: the waiter re-attempts, which
    // renews its lease and waits for the replicas.
    const deliver = this.settings.replicaAck
      ? (event: LockEvent) => listener(event.type === 'granted' ? { type: 'released', key } : event)
      : listener;
    return this.subscriber.subscribe(this.channelOf(redisLockKeys(key)), key, deliver);
  }

  /** PING; the first one also waits for the check of the eviction policy (whose failure it ignores). */
  async ping(): Promise<void> {
    const check = this.checkEvictionPolicy();
    await this.connection.run('PING', () => this.connection.client.ping());
    await check;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.background.settle(this.settings.commandTimeout);
    await Promise.all([this.subscriber?.close(), this.connection.close()]);
  }

  /** Makes every later fence of this backend higher than `fence` (the quorum's fence, seen on another node). */
  raiseFloor(fence: bigint): void {
    this.observe(Number(fence));
  }

  private readAcquire(key: string, keys: RedisLockKeys, reply: unknown): AcquireResult {
    const answer = readAcquireReply(this.names.acquire, reply);
    switch (answer.kind) {
      case 'granted':
        this.observe(answer.fence);
        return { fence: BigInt(answer.fence) };
      case 'busy':
        return { fence: null, retryIn: answer.retryIn };
      case 'handed': {
        const handedTo = this.handedOver(key, keys, answer.waiter, answer.fence);
        return handedTo ? { fence: null, retryIn: answer.retryIn, handedTo } : { fence: null, retryIn: answer.retryIn };
      }
    }
  }

  /** Reads a release reply, with the hand-off it made (delivered at once to a waiter of this process). */
  private readRelease(key: string, keys: RedisLockKeys, reply: unknown): ReleaseResult {
    const answer = readReleaseReply(this.names.release, reply);
    if (typeof answer === 'boolean') return { released: answer };
    const handedTo = this.handedOver(key, keys, answer.waiter, answer.fence);
    return handedTo ? { released: true, handedTo } : { released: true };
  }

  /**
   * A script of this process handed the lock to `waiter`: a subscriber of this backend is woken at
   * once (the published grant that follows is then dropped), and the caller is told. With replica
   * acknowledgement the caller is told nothing: the grant reaches subscribers as a release (see
   * `subscribe`), and the waiter's re-attempt waits for the replicas.
   */
  private handedOver(key: string, keys: RedisLockKeys, waiter: string, fence: number): HandOff | undefined {
    this.observe(fence);
    this.subscriber?.deliverLocal(this.channelOf(keys), { type: 'granted', key, token: waiter, fence: BigInt(fence) });
    return this.settings.replicaAck ? undefined : { token: waiter, fence: BigInt(fence) };
  }

  private channelOf(keys: RedisLockKeys): string {
    return this.connection.keyPrefix + keys.channel;
  }

  private observe(fence: number): void {
    if (fence > this.floor) {
      this.floor = fence;
      const floor = fence.toFixed(0);
      this.acquireSuffix = this.acquireMode + floor;
      this.releaseSuffix = this.releaseMode + floor;
    }
  }

  /**
   * Reads the server's `maxmemory-policy` once and warns when it can evict lock keys. A refusal
   * (NOPERM, CONFIG renamed on a managed service) ends the check silently; no answer at all (the
   * server unreachable) lets the next acquisition or ping try again.
   */
  private checkEvictionPolicy(): Promise<void> {
    this.evictionCheck ??= readEvictionPolicies(this.connection).then(
      (policies) => {
        const warning = evictionWarning(this.endpoint, policies);
        if (warning) this.logger.warn(warning);
      },
      () => {
        this.evictionCheck = undefined;
      },
    );
    return this.evictionCheck;
  }

  /** Gives back, in the background (awaited by `close()`), whatever a failed attempt may hold. */
  private releaseInBackground(key: string, token: string): void {
    if (this.closed) return;
    this.background.run(this.release(key, token));
  }

  /** The acquire script and WAIT/WAITAOF in one pipeline; a grant the replicas did not confirm is given back. */
  private async acquireAcknowledged(
    key: string,
    token: string,
    args: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    const ack = this.settings.replicaAck!;
    const rows = await this.connection.run(
      'acquire',
      async () => {
        const pipeline = this.connection.client.pipeline() as unknown as LockScriptHost & ChainableCommander;
        void pipeline[this.acquireScript.name](...args); // queued; exec() gives the result
        if (ack.aof) pipeline.call('WAITAOF', 0, ack.replicas, ack.timeout);
        else pipeline.call('WAIT', ack.replicas, ack.timeout);
        return (await pipeline.exec()) ?? [];
      },
      this.settings.commandTimeout + ack.timeout,
    );
    const [acquireError, reply] = rows[0] ?? [new Error('no reply')];
    if (acquireError) throw acquireError;
    const acquired = readAcquireReply(this.names.acquire, reply);
    if (acquired.kind !== 'granted') return reply;
    const [waitError, answer] = rows[1] ?? [new Error('no reply')];
    const confirmed = waitError ? undefined : Number(Array.isArray(answer) ? answer[1] : answer);
    if (confirmed !== undefined && confirmed >= ack.replicas) return reply;
    await this.release(key, token).catch(() => undefined);
    const command = ack.aof ? 'WAITAOF' : 'WAIT';
    throw new LockBackendError(
      'redis',
      waitError
        ? `${command} on ${this.endpoint} failed: ${waitError.message}; the lock was given back`
        : `only ${confirmed} of ${ack.replicas} replicas of ${this.endpoint} confirmed the lock within ${ack.timeout} ms (${command}); the lock was given back`,
      { cause: waitError ?? undefined },
    );
  }
}
