import type { Cluster, ClusterNode, Redis } from 'ioredis';
import { LockBackendError } from '../../lock.errors';

export type RedisClient = Redis | Cluster;


/** True for an ioredis `Cluster`. */
export function isCluster(client: RedisClient): client is Cluster {
  return (client as Cluster).isCluster === true;
}

/** A node of a startup list, as `host:port`, without any credentials it may carry. */
function describeNode(node: ClusterNode): string {
  if (typeof node === 'number') return `127.0.0.1:${node}`;
  if (typeof node === 'string') {
    if (/^\d+$/.test(node)) return `127.0.0.1:${node}`;
    try {
      const url = new URL(node.includes('://') ? node : `redis://${node}`);
      return `${url.hostname}:${url.port || 6379}`;
    } catch {
      return node.slice(node.lastIndexOf('@') + 1);
    }
  }
  return `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}`;
}

/** Where a client connects, for error messages: host and port, never credentials. */
export function describeClient(client: RedisClient): string {
  if (isCluster(client)) {
    const nodes = ((client as unknown as { startupNodes?: ClusterNode[] }).startupNodes ?? []).map(describeNode);
    return `Redis Cluster (startup nodes ${nodes.join(', ')})`;
  }
  const options = client.options;
  if (options.sentinels && options.sentinels.length > 0) {
    const sentinels = options.sentinels.map((s) => `${s.host ?? '127.0.0.1'}:${s.port ?? 26379}`);
    return `Redis master "${options.name ?? 'mymaster'}" via Sentinel ${sentinels.join(', ')}`;
  }
  if (options.path) return `Redis at ${options.path}`;
  return `Redis at ${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const last = (error as { lastNodeError?: unknown }).lastNodeError;
    return last instanceof Error ? `${error.message} (${last.message})` : error.message;
  }
  return String(error);
}

/**
 * One ioredis client as the backend uses it: every command waits for the connection at most a
 * bounded time, fails fast with a clear `LockBackendError` when the server cannot be reached, and is
 * bounded by the command timeout. Closes the client at `close()` only when it owns it.
 */
export class RedisConnection {
  readonly endpoint: string;
  /** The client's own key prefix: ioredis puts it before KEYS, so channels get it from us. */
  readonly keyPrefix: string;
  private lastError: Error | undefined;
  private closed = false;
  private readiness: Promise<void> | undefined;
  private readonly onError = (error: Error): void => {
    if (this.client.status !== 'ready') this.lastError = error;
  };
  private readonly onReady = (): void => {
    this.lastError = undefined;
  };

  constructor(
    readonly client: RedisClient,
    readonly owned: boolean,
    private readonly commandTimeout: number,
  ) {
    this.endpoint = describeClient(client);
    this.keyPrefix = (client.options as { keyPrefix?: string }).keyPrefix ?? '';
    client.on('error', this.onError);
    client.on('ready', this.onReady);
  }

  get cluster(): boolean {
    return isCluster(this.client);
  }

  /**
   * Runs `command` once the connection is ready, bounded by `timeout` ms in all (waiting included).
   * Any failure becomes a `LockBackendError` that says what failed where.
   */
  run<T>(what: string, command: () => Promise<T>, timeout = this.commandTimeout): Promise<T> {
    if (this.closed) return Promise.reject(new LockBackendError('redis', `${what}: the backend was closed`));
    const status = this.client.status;
    if (status === 'ready') return this.bounded(what, command, timeout);
    if (status === 'end') {
      return Promise.reject(new LockBackendError('redis', `${what}: the connection to ${this.endpoint} was closed`));
    }
    if (this.lastError) return Promise.reject(this.unreachable(what));
    return this.bounded(what, () => this.whenReady(what).then(command), timeout);
  }

  /** Calls the command `name` (a script defined on the client) with `args`. */
  call(name: string, args: ReadonlyArray<string | number>): Promise<unknown> {
    return (this.client as unknown as Record<string, (...a: ReadonlyArray<string | number>) => Promise<unknown>>)[name](...args);
  }

  /** Closes the client when this backend opened it; leaves a user's client open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.owned) {
      this.client.off('error', this.onError);
      this.client.off('ready', this.onReady);
      return;
    }
    // The error listener stays: a late socket error of a closing client must not go unhandled.
    if (this.client.status === 'ready') {
      await this.bounded('QUIT', () => this.client.quit(), Math.min(this.commandTimeout, 1_000)).catch(() => undefined);
    }
    this.client.disconnect();
  }

  private unreachable(what: string): LockBackendError {
    return new LockBackendError('redis', `${what}: cannot reach ${this.endpoint}: ${messageOf(this.lastError)}`, {
      cause: this.lastError,
    });
  }

  /** Resolves on 'ready'; rejects on the first connection error or when the client ends. */
  private whenReady(what: string): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    this.readiness ??= new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.client.off('ready', onReady);
        this.client.off('error', onError);
        this.client.off('end', onEnd);
        this.readiness = undefined;
      };
      const onReady = (): void => {
        done();
        resolve();
      };
      const onError = (): void => {
        if (this.client.status === 'ready') return;
        done();
        reject(this.unreachable(what));
      };
      const onEnd = (): void => {
        done();
        reject(new LockBackendError('redis', `${what}: the connection to ${this.endpoint} was closed`));
      };
      this.client.on('ready', onReady);
      this.client.on('error', onError);
      this.client.on('end', onEnd);
      if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
    });
    return this.readiness;
  }

  private bounded<T>(what: string, command: () => Promise<T>, timeout: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          this.lastError
            ? this.unreachable(what)
            : new LockBackendError('redis', `${what}: no answer from ${this.endpoint} within ${timeout} ms`),
        );
      }, timeout);
      timer.unref();
      let pending: Promise<T>;
      try {
        pending = command();
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(
            error instanceof LockBackendError
              ? error
              : new LockBackendError('redis', `${what} on ${this.endpoint} failed: ${messageOf(error)}`, { cause: error }),
          );
        },
      );
    });
  }
}
