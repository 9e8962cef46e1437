import type { Cluster, Redis } from 'ioredis';
import { BoundedSet } from '../../bounded-set';
import { LockBackendError } from '../../lock.errors';
import type { LockEvent } from '../lock-backend';
import { RedisConnection } from './redis-connection';

type Listener = (event: LockEvent) => void;

interface Channel {
  readonly key: string;
  readonly listeners: Set<Listener>;
  /** Settles when the server confirmed the subscription. */
  live: Promise<void>;
  /** Pending unsubscription once the last listener left. */
  linger?: NodeJS.Timeout;
  /** Grants delivered by one path (reply or message) whose twin from the other path is still due. */
  readonly delivered: BoundedSet;
}

/** How long a channel stays subscribed after its last listener left, so busy keys do not churn. */
const LINGER_MS = 2_000;
/** Grants remembered per channel for de-duplication; older ones are forgotten (their twin was lost). */
const MAX_REMEMBERED = 256;
const TOKEN_LENGTH = 32;

/** Reads a message published by the lock scripts: `r` (released) or `g<token><fence>` (granted). */
export function parseLockMessage(key: string, message: string): LockEvent | undefined {
  if (message === 'r') return { type: 'released', key };
  if (message.length > TOKEN_LENGTH + 1 && message[0] === 'g') {
    const digits = message.slice(1 + TOKEN_LENGTH);
    if (/^\d+$/.test(digits))
      return { type: 'granted', key, token: message.slice(1, 1 + TOKEN_LENGTH), fence: BigInt(digits) };
  }
  return undefined;
}

/**
 * The one subscriber connection of a backend, shared by every waiter of the process: a channel per
 * lock key, subscribed while someone waits on that key (classic pub/sub, or sharded pub/sub on a
 * Cluster so that each message stays on its shard). The connection is a duplicate of the backend's
 * client, opened on first use and closed by `close()`.
 *
 * A hand-off reaches a waiter by whichever path is first: the release reply (when the releasing
 * backend is this one) or the published message; the second is dropped, so listeners see each
 * event at most once.
 */
export class RedisLockSubscriber {
  private connection: RedisConnection | undefined;
  private readonly channels = new Map<string, Channel>();
  private closed = false;

  constructor(
    private readonly source: RedisConnection,
    private readonly sharded: boolean,
    private readonly commandTimeout: number,
  ) {}

  /** Adds `listener` to `channel`; resolves once the channel is subscribed, to the function that removes it. */
  async subscribe(channel: string, key: string, listener: Listener): Promise<() => void> {
    let state = this.channels.get(channel);
    if (!state) {
      const created: Channel = {
        key,
        listeners: new Set(),
        delivered: new BoundedSet(MAX_REMEMBERED),
        live: Promise.resolve(),
      };
      created.live = this.send('subscribe', channel).catch((error: unknown) => {
        if (this.channels.get(channel) === created) this.channels.delete(channel);
        throw error;
      });
      this.channels.set(channel, created);
      state = created;
    }
    const joined = state;
    if (joined.linger) {
      clearTimeout(joined.linger);
      joined.linger = undefined;
    }
    joined.listeners.add(listener);
    try {
      await joined.live;
    } catch (error) {
      joined.listeners.delete(listener);
      throw error;
    }
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      joined.listeners.delete(listener);
      if (joined.listeners.size === 0 && this.channels.get(channel) === joined && !this.closed) {
        joined.linger = setTimeout(() => {
          joined.linger = undefined;
          if (joined.listeners.size > 0 || this.channels.get(channel) !== joined) return;
          this.channels.delete(channel);
          this.send('unsubscribe', channel).catch(() => undefined);
        }, LINGER_MS);
        joined.linger.unref();
      }
    };
  }

  /** Delivers an event this process learnt from a command reply (a hand-off by its own release). */
  deliverLocal(channel: string, event: LockEvent): void {
    this.dispatch(channel, event);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const state of this.channels.values()) clearTimeout(state.linger);
    this.channels.clear();
    await this.connection?.close();
  }

  private dispatch(channel: string, event: LockEvent): void {
    const state = this.channels.get(channel);
    if (!state || state.listeners.size === 0) return;
    if (event.type === 'granted') {
      const id = `${event.token}:${event.fence}`;
      if (state.delivered.delete(id)) return;
      state.delivered.add(id);
    }
    for (const listener of [...state.listeners]) listener(event);
  }

  private send(what: 'subscribe' | 'unsubscribe', channel: string): Promise<void> {
    let connection: RedisConnection;
    try {
      connection = this.open();
    } catch (error) {
      return Promise.reject(error);
    }
    const client = connection.client as unknown as Record<string, (channel: string) => Promise<unknown>>;
    const command = this.sharded ? (what === 'subscribe' ? 'ssubscribe' : 'sunsubscribe') : what;
    return connection.run(
      command.toUpperCase(),
      () => client[command](channel).then(() => undefined),
      undefined,
      channel,
    );
  }

  private open(): RedisConnection {
    if (this.connection) return this.connection;
    if (this.closed) throw new LockBackendError('redis', 'subscribe: the backend was closed');
    const source = this.source.client;
    // Channel names arrive complete (the client's key prefix included), so the duplicate adds none.
    const client = this.source.cluster
      ? (source as Cluster).duplicate([], {
          shardedSubscribers: this.sharded,
          enableAutoPipelining: false,
          keyPrefix: '',
          redisOptions: { ...(source as Cluster).options.redisOptions, keyPrefix: '' },
        })
      : (source as Redis).duplicate({ enableAutoPipelining: false, keyPrefix: '' });
    const onMessage = (channel: string, message: string): void => {
      const state = this.channels.get(channel);
      if (!state) return;
      const event = parseLockMessage(state.key, message);
      if (event) this.dispatch(channel, event);
    };
    client.on(this.sharded ? 'smessage' : 'message', onMessage);
    this.connection = new RedisConnection(client, true, this.commandTimeout);
    return this.connection;
  }
}
