import { Logger } from '@nestjs/common';
import { LockBackendError } from '../../lock.errors';
import { BackgroundWork } from '../../background-work';
import {
  handOffFields,
  type AcquireResult,
  type ExtendItem,
  type HandOff,
  type LeaseMode,
  type LockBackend,
  type LockEvent,
  type QueueOptions,
  type ReleaseResult,
} from '../lock-backend';
import { RedisConnection } from './redis-connection';
import { RedisEvictionCheck } from './redis-eviction-check';
import { extendArgs, extendLeases } from './redis-extend-many';
import { RedisFenceFloor } from './redis-fence-floor';
import { lockScriptKeys, redisLockKeys, type RedisLockKeys } from './redis-key-layout';
import { readAcquireReply, readFlag, readReleaseReply, type HandedAnswer } from './redis-lock.replies';
import { RedisLockSubscriber } from './redis-lock.subscriber';
import { defineLockScripts, lockScripts, type LockScript } from './redis-lock.scripts';
import {
  AcknowledgedAcquisitions,
  grantsAsReleases,
  type ReplicaAcknowledgement,
} from './redis-replica-acknowledgement';

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
 *
 * Shared and limited leases (rule 7 of the SPI) live beside the exclusive lease under the same hash
 * tag: a sorted set of holders (token → lease end, server ms) and a hash of their fences and of how
 * they hold the key (see `redis-key-layout.ts` and the scripts' headers).
 */
export class RedisLockBackend implements LockBackend {
  readonly name = 'redis';
  readonly capabilities = { fifo: true, fencing: 'strict', modes: ['shared', 'limit'] } as const;
  readonly recheckInterval: number;
  private readonly acquireScript: LockScript;
  private readonly extendScript: LockScript;
  private readonly releaseScript: LockScript;
  private readonly publish: 'PUBLISH' | 'SPUBLISH';
  private subscriber: RedisLockSubscriber | undefined;
  /** The highest fence this backend has seen, which the scripts' first argument carries. */
  private readonly floor: RedisFenceFloor;
  /** Set with replica acknowledgement: acquisitions then wait for the replicas. */
  private readonly acknowledged: AcknowledgedAcquisitions | undefined;
  private closed = false;
  /** What each operation is called in errors: `acquire on Redis at host:port`, … */
  private readonly names: { readonly acquire: string; readonly extend: string; readonly release: string };
  private readonly readExtend = (reply: unknown): boolean => readFlag(this.names.extend, reply);
  private readonly logger = new Logger('RedisLockBackend');
  /** The check of the server's eviction policy: started by the first acquisition or ping, done once answered. */
  private readonly evictionCheck: RedisEvictionCheck;
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
    this.recheckInterval = settings.recheckInterval;
    if (!settings.replicaAck) this.releaseWithHandOff = (key, token) => this.releaseAndRead(key, token);
    this.publish = connection.cluster && settings.shardedPubSub ? 'SPUBLISH' : 'PUBLISH';
    this.floor = new RedisFenceFloor(this.publish === 'SPUBLISH', settings.announceReleases);
    const endpoint = connection.endpoint;
    this.names = {
      acquire: `acquire on ${endpoint}`,
      extend: `extend on ${endpoint}`,
      release: `release on ${endpoint}`,
    };
    this.acknowledged = settings.replicaAck
      ? new AcknowledgedAcquisitions(
          connection,
          settings.replicaAck,
          settings.commandTimeout,
          this.acquireScript.name,
          this.names.acquire,
        )
      : undefined;
    this.evictionCheck = new RedisEvictionCheck(connection, this.logger);
  }

  /** Where the backend connects, for messages (host and port, no credentials). */
  get endpoint(): string {
    return this.connection.endpoint;
  }

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions, mode?: LeaseMode): Promise<AcquireResult> {
    if (!this.evictionCheck.started) void this.evictionCheck.run();
    const keys = redisLockKeys(key);
    const script = this.acquireScript;
    const args: Array<string | number> = [
      script.sha,
      script.numberOfKeys,
      ...lockScriptKeys(keys),
      token + this.floor.acquire,
      ttl,
    ];
    const lease = queue && queue.lease > 0 ? queue.lease : 0;
    if (mode) args.push(lease, mode.kind === 'shared' ? 's' : mode.limit);
    else if (lease > 0) args.push(lease);
    const read = (reply: unknown): AcquireResult => this.readAcquire(key, keys, reply);
    const answer = this.acknowledged
      ? this.acknowledged.acquire(args.slice(2), () => this.release(key, token)).then(read)
      : this.connection.evalScript('acquire', script, args, read);
    return answer.catch((error: unknown) => {
      // The attempt may have been granted after all: give back whatever it may hold.
      this.releaseInBackground(key, token);
      throw error;
    });
  }

  extend(key: string, token: string, ttl: number): Promise<boolean> {
    const script = this.extendScript;
    return this.connection.evalScript(
      'extend',
      script,
      [script.sha, script.numberOfKeys, ...extendArgs({ key, token, ttl })],
      this.readExtend,
    );
  }

  /** Renews many leases in one round trip (see `extendLeases`). */
  extendMany(items: readonly ExtendItem[]): Promise<Array<boolean | Error>> {
    return extendLeases(this.connection, this.extendScript.name, this.names.extend, items);
  }

  async release(key: string, token: string): Promise<boolean> {
    return (await this.releaseAndRead(key, token)).released;
  }

  private releaseAndRead(key: string, token: string): Promise<ReleaseResult> {
    const keys = redisLockKeys(key);
    const script = this.releaseScript;
    const args = [script.sha, script.numberOfKeys, ...lockScriptKeys(keys), token + this.floor.release];
    return this.connection.evalScript('release', script, args, (reply) => this.readRelease(key, keys, reply));
  }

  subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    if (this.closed) return Promise.reject(new LockBackendError('redis', 'subscribe: the backend was closed'));
    this.subscriber ??= new RedisLockSubscriber(
      this.connection,
      this.publish === 'SPUBLISH',
      this.settings.commandTimeout,
    );
    const deliver = this.settings.replicaAck ? grantsAsReleases(key, listener) : listener;
    return this.subscriber.subscribe(this.channelOf(redisLockKeys(key)), key, deliver);
  }

  /** PING; the first one also waits for the check of the eviction policy (whose failure it ignores). */
  async ping(): Promise<void> {
    const check = this.evictionCheck.run();
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
    this.floor.observe(Number(fence));
  }

  private readAcquire(key: string, keys: RedisLockKeys, reply: unknown): AcquireResult {
    const answer = readAcquireReply(this.names.acquire, reply);
    const handOffs = answer.handed ? this.handOffFields(key, keys, answer.handed) : undefined;
    if (answer.kind === 'granted') {
      this.floor.observe(answer.fence);
      return { fence: BigInt(answer.fence), ...handOffs };
    }
    return {
      fence: null,
      retryIn: answer.retryIn,
      ...(answer.heldWith !== undefined && { heldWith: answer.heldWith }),
      ...handOffs,
    };
  }

  /** Reads a release reply, with the hand-offs it made (delivered at once to waiters of this process). */
  private readRelease(key: string, keys: RedisLockKeys, reply: unknown): ReleaseResult {
    const answer = readReleaseReply(this.names.release, reply);
    if (typeof answer === 'boolean') return { released: answer };
    return { released: true, ...this.handOffFields(key, keys, answer) };
  }

  /** The hand-offs a script made, as the answer's `handedTo` (the first) and `alsoHandedTo` (the others). */
  private handOffFields(
    key: string,
    keys: RedisLockKeys,
    handed: readonly HandedAnswer[],
  ): { handedTo?: HandOff; alsoHandedTo?: HandOff[] } | undefined {
    const handOffs: HandOff[] = [];
    for (const { waiter, fence } of handed) {
      const handOff = this.handedOver(key, keys, waiter, fence);
      if (handOff) handOffs.push(handOff);
    }
    return handOffFields(handOffs);
  }

  /**
   * A script of this process handed the lock to `waiter`: a subscriber of this backend is woken at
   * once (the published grant that follows is then dropped), and the caller is told. With replica
   * acknowledgement the caller is told nothing: the grant reaches subscribers as a release (see
   * `subscribe`), and the waiter's re-attempt waits for the replicas.
   */
  private handedOver(key: string, keys: RedisLockKeys, waiter: string, fence: number): HandOff | undefined {
    this.floor.observe(fence);
    this.subscriber?.deliverLocal(this.channelOf(keys), { type: 'granted', key, token: waiter, fence: BigInt(fence) });
    return this.settings.replicaAck ? undefined : { token: waiter, fence: BigInt(fence) };
  }

  private channelOf(keys: RedisLockKeys): string {
    return this.connection.keyPrefix + keys.channel;
  }

  /** Gives back, in the background (awaited by `close()`), whatever a failed attempt may hold. */
  private releaseInBackground(key: string, token: string): void {
    if (this.closed) return;
    this.background.run(this.release(key, token));
  }
}
