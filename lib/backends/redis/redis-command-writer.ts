import type { Duplex } from 'node:stream';
import type { Command, Redis } from 'ioredis';
import type { LockBackendError } from '../../lock.errors';
import { loadIoredis } from './ioredis.loader';
import { isCluster, type RedisClient } from './redis-client-description';
import { CommandDeadlines } from './redis-command-deadlines';
import type { LockScript } from './redis-lock.scripts';

type CommandClass = new (
  name: string,
  args: Array<string | number>,
  options: { replyEncoding: 'utf8'; keyPrefix?: string },
) => Command;

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

/**
 * How a connection writes its commands. Script calls of a single-server client go straight to its
 * socket as ioredis `Command`s (without the defined command's wrapping), bounded by one deadline
 * timer for all of them; and while other commands await their answers, the socket is corked for
 * the rest of the tick, so that the commands of one tick leave in a few writes (see `coalesce`).
 */
export class RedisCommandWriter {
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
    private readonly client: RedisClient,
    keyPrefix: string,
    commandTimeout: number,
    timedOut: (what: string) => LockBackendError,
    private readonly failure: (what: string, error: unknown) => LockBackendError,
  ) {
    this.coalescing = !isCluster(client);
    this.Command = commandClassOf(client);
    this.deadlines = new CommandDeadlines(commandTimeout, timedOut);
    this.commandOptions = keyPrefix ? { replyEncoding: 'utf8', keyPrefix } : { replyEncoding: 'utf8' };
  }

  /** True when script calls can be sent as ioredis `Command`s: a single-server client of the ioredis copy loaded here. */
  get direct(): boolean {
    return this.Command !== undefined;
  }

  /**
   * Sends a lock script as the connection's `evalScript` describes (EVALSHA, resent as EVAL when
   * the server answers NOSCRIPT, bounded by the command timeout); only while `direct` is true and
   * the client is ready.
   */
  evalScript<T>(
    what: string,
    script: LockScript,
    args: Array<string | number>,
    read: (reply: unknown) => T,
  ): Promise<T> {
    const Command = this.Command!;
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

  /**
   * Called after a command was written: it went out at once. When other commands of this
   * connection are still awaiting their answers (many callers at work), the socket is then corked
   * until the end of the tick, so that the commands those callers issue together (all the callers
   * woken by one batch of replies, say) leave in writes of up to MAX_COMMANDS_PER_WRITE instead of
   * one system call each, on this side and on the server's. A lone caller pays nothing for it.
   * Single-server clients only: a Cluster spreads its commands over many sockets.
   */
  coalesce(): void {
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

  /** Stops the deadline timer. */
  close(): void {
    this.deadlines.close();
  }
}
