import type { Duplex } from 'node:stream';
import type { Cluster, ClusterNode, Command, Redis } from 'ioredis';
import { LockBackendError } from '../../lock.errors';
import { loadIoredis } from './ioredis.loader';
import { CommandDeadlines } from './redis-command-deadlines';
import { refusalAdvice } from './redis-permissions';
import type { LockScript } from './redis-lock.scripts';

type CommandClass = new (
  name: string,
  args: Array<string | number>,
  options: { replyEncoding: 'utf8'; keyPrefix?: string },
) => Command;

export type RedisClient = Redis | Cluster;

/**
 * Most commands that one tick sends together in one write. Bounded, so that Redis starts on the
 * first commands of a burst while this process still prepares the rest (one write per whole tick
 * leaves the two taking turns: measured about 20% fewer operations per second at 64 in flight than
 * writes of 16; one write per command costs a system call on each side for each command).
 */
const MAX_COMMANDS_PER_WRITE = 16;

/**
 * ioredis' `Command` class, when `client` is a single-server client of the ioredis copy this package
 * loads (so the class and the client come from the same copy); otherwise undefined.
 */
function commandClassOf(client: RedisClient): CommandClass | undefined {
  if (isCluster(client)) return undefined;
  try {
    const ioredis = loadIoredis();
    return client instanceof ioredis.Redis && typeof ioredis.Command === 'function'
      ? (ioredis.Command as unknown as CommandClass)
      : undefined;
  } catch {
    return undefined;
  }
}

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
  /** Set on a single-server client: its socket is corked for the rest of a tick once a command went out. */
  private readonly coalescing: boolean;
  /** ioredis' Command class of a single-server client, to send script calls without the defined command's wrapping. */
  private readonly Command: CommandClass | undefined;
  private readonly commandOptions: { replyEncoding: 'utf8'; keyPrefix?: string };
  /** Commands sent through this connection and not answered yet. */
  private inFlight = 0;
  /** The command timeout of script calls: one timer for all of them. */
  private readonly deadlines: CommandDeadlines;
  /** The socket corked until the end of this tick, and how many commands wait in it. */
  private corked: Duplex | undefined;
  private corkedCommands = 0;
  private readonly uncork = (): void => {
    const stream = this.corked;
    this.corked = undefined;
    stream?.uncork();
  };

  constructor(
    readonly client: RedisClient,
    readonly owned: boolean,
    private readonly commandTimeout: number,
  ) {
    this.endpoint = describeClient(client);
    this.keyPrefix = (client.options as { keyPrefix?: string }).keyPrefix ?? '';
    this.coalescing = !isCluster(client);
    this.Command = commandClassOf(client);
    this.deadlines = new CommandDeadlines(commandTimeout, (what) => this.noAnswer(what, commandTimeout));
    this.commandOptions = this.keyPrefix
      ? { replyEncoding: 'utf8', keyPrefix: this.keyPrefix }
      : { replyEncoding: 'utf8' };
    client.on('error', this.onError);
    client.on('ready', this.onReady);
  }

  get cluster(): boolean {
    return isCluster(this.client);
  }

  /**
   * Runs `command` once the connection is ready, bounded by `timeout` ms in all (waiting included).
   * Any failure becomes a `LockBackendError` that says what failed where (and, for a refusal by
   * the server's ACL, what to grant; `channel` is the lock channel the command is about).
   */
  run<T>(what: string, command: () => Promise<T>, timeout = this.commandTimeout, channel?: string): Promise<T> {
    if (this.closed) return Promise.reject(new LockBackendError('redis', `${what}: the backend was closed`));
    const status = this.client.status;
    if (status === 'ready') {
      const pending = this.bounded(what, command, timeout, channel);
      this.coalesce();
      return pending;
    }
    if (status === 'end') {
      return Promise.reject(new LockBackendError('redis', `${what}: the connection to ${this.endpoint} was closed`));
    }
    if (this.lastError) return Promise.reject(this.unreachable(what));
    return this.bounded(what, () => this.whenReady(what).then(command), timeout, channel);
  }

  /**
   * Runs a lock script with `args` = [sha, number of keys, ...keys, ...argv] and resolves to
   * `read(reply)`: sent as EVALSHA, and as EVAL when the server answers NOSCRIPT; bounded by the
   * command timeout like `run`. `read` runs as soon as the reply is in (no promise in between).
   */
  evalScript<T>(
    what: string,
    script: LockScript,
    args: Array<string | number>,
    read: (reply: unknown) => T,
  ): Promise<T> {
    const Command = this.Command;
    if (Command === undefined || this.closed || this.client.status !== 'ready') {
      return this.run(what, () => this.call(script.name, args.slice(2))).then(read);
    }
    const command = new Command('evalsha', args, this.commandOptions);
    const deadline = this.deadlines.add(what, command);
    this.inFlight++;
    (this.client as Redis).sendCommand(command);
    this.coalesce();
    const answered = (reply: unknown): T => {
      this.deadlines.settle(deadline);
      this.inFlight--;
      return read(reply);
    };
    const failed = (error: unknown): never => {
      this.deadlines.settle(deadline);
      this.inFlight--;
      throw this.failure(what, error);
    };
    return command.promise.then(answered, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) return failed(error);
      const evalArgs = args.slice();
      evalArgs[0] = script.lua;
      const resent = new Command('eval', evalArgs, this.commandOptions);
      deadline.command = resent;
      (this.client as Redis).sendCommand(resent);
      return resent.promise.then(answered, failed);
    });
  }

  /** Calls the command `name` (a script defined on the client) with `args`. */
  call(name: string, args: ReadonlyArray<string | number>): Promise<unknown> {
    return (this.client as unknown as Record<string, (...a: ReadonlyArray<string | number>) => Promise<unknown>>)[name](
      ...args,
    );
  }

  /** Closes the client when this backend opened it; leaves a user's client open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.owned) {
      this.client.off('error', this.onError);
      this.client.off('ready', this.onReady);
      this.deadlines.close();
      return;
    }
    // The error listener stays: a late socket error of a closing client must not go unhandled.
    if (this.client.status === 'ready') {
      await this.bounded('QUIT', () => this.client.quit(), Math.min(this.commandTimeout, 1_000)).catch(() => undefined);
    }
    this.client.disconnect();
    this.deadlines.close();
  }

  /**
   * Called after a command was written: it went out at once. When other commands of this
   * connection are still awaiting their answers (many callers at work), the socket is then corked
   * until the end of the tick, so that the commands those callers issue together (all the callers
   * woken by one batch of replies, say) leave in writes of up to MAX_COMMANDS_PER_WRITE instead of
   * one system call each, on this side and on the server's. A lone caller pays nothing for it.
   * Single-server clients only: a Cluster spreads its commands over many sockets.
   */
  private coalesce(): void {
    const corked = this.corked;
    if (corked !== undefined) {
      if (++this.corkedCommands >= MAX_COMMANDS_PER_WRITE) {
        this.corkedCommands = 0;
        corked.uncork();
        corked.cork();
      }
      return;
    }
    // A lone command (nothing else of ours awaiting an answer) leaves the socket as it is.
    if (!this.coalescing || this.inFlight < 2) return;
    const stream = (this.client as Redis).stream as Duplex | undefined;
    if (stream === undefined || typeof stream.cork !== 'function' || !stream.writable) return;
    stream.cork();
    this.corked = stream;
    this.corkedCommands = 0;
    process.nextTick(this.uncork);
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

  private noAnswer(what: string, timeout: number): LockBackendError {
    return this.lastError
      ? this.unreachable(what)
      : new LockBackendError('redis', `${what}: no answer from ${this.endpoint} within ${timeout} ms`);
  }

  private failure(what: string, error: unknown, channel?: string): LockBackendError {
    if (error instanceof LockBackendError) return error;
    const message = messageOf(error);
    const advice = refusalAdvice(message, channel);
    return new LockBackendError(
      'redis',
      `${what} on ${this.endpoint} failed: ${message}${advice ? `. ${advice}` : ''}`,
      { cause: error },
    );
  }

  private bounded<T>(what: string, command: () => Promise<T>, timeout: number, channel?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(this.noAnswer(what, timeout)), timeout);
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
          reject(this.failure(what, error, channel));
        },
      );
    });
  }
}
