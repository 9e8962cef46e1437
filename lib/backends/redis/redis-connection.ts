import { LockBackendError } from '../../lock.errors';
import { settleWithin } from '../../lock-clock';
import { describeClient, isCluster, messageOf, type RedisClient } from './redis-client-description';
import { RedisCommandWriter } from './redis-command-writer';
import { refusalAdvice } from './redis-permissions';
import type { LockScript } from './redis-lock.scripts';

/** How long `close()` waits for the sockets of a client it disconnected to close. */
const CLOSE_SOCKETS_TIMEOUT = 2_000;

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
  /** Writes the commands: script calls sent as ioredis Commands, coalesced into fewer writes. */
  private readonly writer: RedisCommandWriter;

  constructor(
    readonly client: RedisClient,
    readonly owned: boolean,
    private readonly commandTimeout: number,
  ) {
    this.endpoint = describeClient(client);
    this.keyPrefix = (client.options as { keyPrefix?: string }).keyPrefix ?? '';
    this.writer = new RedisCommandWriter(
      client,
      this.keyPrefix,
      commandTimeout,
      (what) => this.noAnswer(what, commandTimeout),
      (what, error) => this.failure(what, error),
    );
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
      this.writer.coalesce();
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
    if (!this.writer.direct || this.closed || this.client.status !== 'ready') {
      return this.run(what, () => this.call(script.name, args.slice(2))).then(read);
    }
    return this.writer.evalScript(what, script, args, read);
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
      this.writer.close();
      return;
    }
    // The error listener stays: a late socket error of a closing client must not go unhandled.
    const ended =
      this.client.status === 'end' ? undefined : new Promise<void>((resolve) => this.client.once('end', resolve));
    if (this.client.status === 'ready') {
      await this.bounded('QUIT', () => this.client.quit(), Math.min(this.commandTimeout, 1_000)).catch(() => undefined);
    }
    this.client.disconnect();
    this.writer.close();
    // disconnect() only asks the sockets to close: close() resolves once they are closed (bounded),
    // so that nothing the backend opened is still open when its close() has resolved.
    if (ended) await settleWithin([ended], CLOSE_SOCKETS_TIMEOUT);
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
