import { Logger } from '@nestjs/common';
import type { ClientConfig, Pool, PoolConfig, QueryConfig, QueryResult } from 'pg';
import { driftMargin } from '../../lock.constants';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow, scheduleAt, settleWithin } from '../../lock-clock';
import type { AcquireResult, ExtendItem, LockBackend, LockEvent, QueueOptions } from '../lock-backend';
import { loadPg } from './pg.loader';
import { resolvePostgresOptions, type PostgresBackendOptions, type ResolvedPostgresOptions } from './postgres-lock.options';
import { schemaSql, type PostgresLockNames } from './postgres-lock.schema';
import { PostgresLockStatements } from './postgres-lock.statements';
import { PostgresNotificationListener } from './postgres-notification.listener';

/** While LISTEN is up, waiters still re-check this often, in case a notification was lost. */
const LISTENING_RECHECK_INTERVAL = 30_000;
/** How often the LISTEN connection proves that notifications still arrive. */
const LISTEN_HEALTH_INTERVAL = 15_000;
/** Rows are deleted only when their lease ended at least this long ago (and 10 statement timeouts). */
const HOUSEKEEPING_GRACE = 60_000;
const HOUSEKEEPING_BATCH = 1_000;
/** Bound of the schema migration at start (it may wait for another instance's migration). */
const MIGRATION_TIMEOUT = 60_000;
/** How long a subscription waits for a LISTEN connection that is being opened. */
const SUBSCRIBE_WAIT = 1_000;
/** Local deliveries remembered, so the notification that echoes them is not delivered twice. */
const MAX_ECHOES = 4_096;
/** SQLSTATEs of a connection that was lost (terminated, shut down, or not accepting yet). */
const CONNECTION_LOST_CODES = new Set(['57P01', '57P02', '57P03']);

type Query = QueryConfig & { query_timeout?: number };

/** Where the backend's statements go, as error messages may show it (never a password). */
interface Target {
  host: string;
  port: number;
  database: string;
  user: string;
}

/**
 * Leases in a PostgreSQL table, on the database clock.
 *
 * - One row per key (token, fence, expiry). Acquire, extend and release are each one call of a SQL
 *   function: one statement, one round trip, sent with the simple query protocol together with
 *   `SET LOCAL statement_timeout` (no session state, no prepared statements: PgBouncer in
 *   transaction mode carries it).
 * - Fences come from a sequence, drawn under the lease row lock, and stay increasing across crashes
 *   in both durability modes (see the fence function in the schema).
 * - Waiters queue in an UNLOGGED table; a release hands the key to the oldest live waiter in the same
 *   statement and NOTIFYs. One dedicated LISTEN connection per backend delivers the events; a grant
 *   made by this process's own release reaches a waiter of this process at once.
 */
export class PostgresLockBackend implements LockBackend {
  readonly name = 'postgres';
  private readonly logger = new Logger('PostgresLockBackend');
  private readonly options: ResolvedPostgresOptions;
  private readonly names: PostgresLockNames;
  private readonly statements: PostgresLockStatements;
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly target: Target;
  private readonly listener: PostgresNotificationListener;
  private readonly subscribers = new Map<string, Set<(event: LockEvent) => void>>();
  private readonly echoes = new Set<string>();
  /** Tokens of this process waiting in a key's queue, with the ttl they asked for. */
  private readonly waiting = new Map<string, Map<string, number>>();
  /**
   * Leases of this process that are certainly live: granted to one of its tokens, and not past the
   * send time of the statement that granted or extended them plus their ttl (less the drift margin).
   * A plain attempt on such a key by another token is busy without asking the server.
   */
  private readonly held = new Map<string, { token: string; until: number }>();
  private readonly cleanups = new Set<Promise<unknown>>();
  private starting: Promise<void> | undefined;
  private cancelHousekeeping: (() => void) | undefined;
  private closed = false;
  private listenerWasLost = false;
  private listenerProblemReported = false;

  constructor(options: PostgresBackendOptions | ResolvedPostgresOptions) {
    this.options = 'names' in options ? options : resolvePostgresOptions(options);
    this.names = this.options.names;
    this.statements = new PostgresLockStatements(
      this.names,
      this.options.statementTimeout,
      this.options.durability === 'relaxed',
    );
    const pg = loadPg();
    let listenConfig: ClientConfig;
    if (this.options.pool) {
      this.pool = this.options.pool;
      this.ownsPool = false;
      listenConfig = this.options.listen ?? { ...((this.pool as unknown as { options: PoolConfig }).options ?? {}) };
    } else {
      const config: PoolConfig = {
        max: 10,
        connectionTimeoutMillis: 5_000,
        application_name: this.options.applicationName,
        keepAlive: true,
        ...this.options.connection,
      };
      this.pool = new pg.Pool(config);
      this.ownsPool = true;
      // Idle connections may be terminated by the server; the pool drops them and opens new ones.
      this.pool.on('error', (error) => this.logger.warn(`An idle PostgreSQL connection failed: ${error.message}`));
      listenConfig = this.options.listen ?? config;
    }
    const describeFrom = new pg.Client(this.ownsPool ? this.options.connection : (this.pool as unknown as { options: PoolConfig }).options);
    this.target = {
      host: describeFrom.host,
      port: describeFrom.port,
      database: describeFrom.database ?? '',
      user: describeFrom.user ?? '',
    };
    this.listener = new PostgresNotificationListener(
      {
        connectionTimeoutMillis: 5_000,
        keepAlive: true,
        ...listenConfig,
        application_name: `${this.options.applicationName}/listen`,
      },
      this.names.channel,
      LISTEN_HEALTH_INTERVAL,
      {
        notification: (payload) => this.onNotification(payload),
        sendProbe: async (payload) => {
          const { escapeLiteral } = loadPg();
          await this.send(this.statements.bounded(`SELECT pg_notify(${escapeLiteral(this.names.channel)}, ${escapeLiteral(payload)})`), false);
        },
        stateChanged: (up) => this.onListenerState(up),
        problem: (message) => {
          // One warning per outage; the attempts that follow fail the same way.
          if (this.listenerProblemReported) return this.logger.debug(message);
          this.listenerProblemReported = true;
          this.logger.warn(`${message}; reconnecting, waiters re-check every ${this.options.recheckInterval} ms meanwhile`);
        },
      },
    );
  }

  /** The NOTIFY channel the backend listens on. */
  get channel(): string {
    return this.names.channel;
  }

  /** While notifications flow, waiters rely on them; while the listener is down, they re-check often. */
  get recheckInterval(): number {
    return this.listener.up ? LISTENING_RECHECK_INTERVAL : this.options.recheckInterval;
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.listener.up;
  }

  /**
   * Connects, checks (or creates) the schema and starts the LISTEN connection. Every operation
   * waits for it; call it at start to fail fast. A failed start is retried by the next call.
   */
  ready(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    if (!this.starting) {
      const starting = this.initialize();
      this.starting = starting;
      starting.catch(() => {
        if (this.starting === starting) this.starting = undefined;
      });
    }
    return this.starting;
  }

  async tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions): Promise<AcquireResult> {
    if (this.closed) throw this.closedError();
    const sentAt = monotonicNow();
    if (!queue) {
      const lease = this.held.get(key);
      if (lease && lease.token !== token) {
        if (lease.until > sentAt) return { fence: null, retryIn: Math.ceil(lease.until - sentAt) };
        this.held.delete(key);
      }
    }
    let row: { fence: string | null; retry_in: number | null; granted_token: string | null; granted_fence: string | null };
    try {
      row = (await this.run(this.statements.acquire(key, token, ttl, queue?.lease), true)).rows[0];
    } catch (error) {
      // The statement may have committed before the failure: give back what it may have granted.
      this.cleanUpAfterFailure(key, token);
      throw error;
    }
    // The acquire function notifies every hand-off it makes.
    if (row.granted_token !== null && row.granted_fence !== null) this.handedOver(key, row.granted_token, row.granted_fence, sentAt, true, null);
    if (row.fence !== null) {
      this.forgetWaiter(key, token);
      this.held.set(key, { token, until: sentAt + ttl - driftMargin(ttl) });
      return { fence: BigInt(row.fence) };
    }
    if (queue) this.rememberWaiter(key, token, ttl);
    return row.retry_in === null ? { fence: null } : { fence: null, retryIn: Math.max(0, row.retry_in) };
  }

  async extend(key: string, token: string, ttl: number): Promise<boolean> {
    const [extended] = await this.extendMany([{ key, token, ttl }]);
    return extended;
  }

  async extendMany(items: readonly ExtendItem[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    const sentAt = monotonicNow();
    const result = await this.run(this.statements.extend(items), true);
    const extended = result.rows[0].extended as boolean[];
    if (!Array.isArray(extended) || extended.length !== items.length) {
      throw new LockBackendError(this.name, `extend returned ${extended?.length} results for ${items.length} leases`);
    }
    items.forEach((item, i) => {
      const lease = this.held.get(item.key);
      if (lease?.token !== item.token) return;
      if (extended[i]) lease.until = Math.max(lease.until, sentAt + item.ttl - driftMargin(item.ttl));
      else this.held.delete(item.key);
    });
    return extended;
  }

  async release(key: string, token: string): Promise<boolean> {
    const sentAt = monotonicNow();
    this.forgetWaiter(key, token);
    if (this.held.get(key)?.token === token) this.held.delete(key);
    const local = [...(this.waiting.get(key)?.keys() ?? [])];
    const row = (await this.run(this.statements.release(key, token, local), true)).rows[0] as {
      released: boolean;
      ended_fence: string | null;
      granted_token: string | null;
      granted_fence: string | null;
      granted_valid_for: number | null;
    };
    if (row.granted_token !== null && row.granted_fence !== null) {
      // The release function notifies a hand-off only to a waiter of another process.
      const notified = !local.includes(row.granted_token);
      this.handedOver(key, row.granted_token, row.granted_fence, sentAt, notified, row.granted_valid_for);
    } else if (row.released) {
      this.deliver(key, { type: 'released', key }, `r ${row.ended_fence}`);
    }
    return row.released;
  }

  async subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    await this.ready();
    // A connection attempt in progress gets a short chance; a listener that is down leaves the
    // waiter on its re-check (recheckInterval), never hanging.
    if (!this.listener.up) {
      let cancel: () => void = () => undefined;
      await Promise.race([this.listener.settled(), new Promise<void>((resolve) => (cancel = scheduleAt(monotonicNow() + SUBSCRIBE_WAIT, resolve)))]);
      cancel();
    }
    let set = this.subscribers.get(key);
    if (!set) {
      set = new Set();
      this.subscribers.set(key, set);
    }
    set.add(listener);
    return () => {
      const current = this.subscribers.get(key);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.subscribers.delete(key);
    };
  }

  async ping(): Promise<void> {
    await this.run(this.statements.bounded('SELECT 1'), false);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelHousekeeping?.();
    this.subscribers.clear();
    this.held.clear();
    this.waiting.clear();
    await this.listener.close();
    await settleWithin(this.cleanups, 2_000);
    if (this.ownsPool) await this.pool.end().catch(() => undefined);
  }

  /** Runs the housekeeping once: deletes rows whose lease ended long ago. Returns what it deleted. */
  async housekeep(): Promise<{ leases: number; waiters: number }> {
    const grace = Math.max(HOUSEKEEPING_GRACE, 10 * this.options.statementTimeout);
    const result = await this.run(this.statements.housekeep(grace, HOUSEKEEPING_BATCH), false);
    return result.rows[0] as { leases: number; waiters: number };
  }

  private async initialize(): Promise<void> {
    const pg = loadPg();
    const checks = [
      ...this.names.tables.map((table) => `to_regclass(${pg.escapeLiteral(table)}) IS NOT NULL`),
      ...this.names.functionSignatures.map((signature) => `to_regprocedure(${pg.escapeLiteral(signature)}) IS NOT NULL`),
    ];
    const present = `SELECT ${checks.join(' AND ')} AS present`;
    const found = (await this.send(this.statements.bounded(present), false)).rows[0].present as boolean;
    if (!found) {
      if (!this.options.migrate) {
        throw new LockBackendError(
          this.name,
          `the lock table ${this.names.leases} or its functions are missing in database "${this.target.database}" and migrate is false. ` +
            `Create them with this SQL (also returned by postgresLockSchemaSql()):\n${schemaSql(this.names)}`,
        );
      }
      await this.migrate();
    }
    this.listener.start();
    await this.listener.settled();
    this.scheduleHousekeeping(true);
  }

  /** Runs the schema SQL in one implicit transaction, under an advisory lock held until it commits. */
  private async migrate(): Promise<void> {
    const pg = loadPg();
    const text =
      `SELECT pg_advisory_xact_lock(hashtext(${pg.escapeLiteral(this.names.migrationLockKey)}));\n` + schemaSql(this.names);
    await this.send(this.statements.bounded(text, MIGRATION_TIMEOUT), false, MIGRATION_TIMEOUT);
  }

  private scheduleHousekeeping(first: boolean): void {
    const every = this.options.housekeepingInterval;
    if (every === 0 || this.closed) return;
    // Spread the instances' runs apart.
    const delay = (first ? Math.random() : 0.75 + Math.random() / 2) * every;
    this.cancelHousekeeping = scheduleAt(monotonicNow() + delay, () => {
      this.housekeep().then(
        () => this.scheduleHousekeeping(false),
        (error: Error) => {
          this.logger.warn(`Housekeeping of ${this.names.leases} failed: ${error.message}`);
          this.scheduleHousekeeping(false);
        },
      );
    });
  }

  /** Runs one lock statement after start, retrying once when the connection was lost under it. */
  private async run(text: string, lockStatement: boolean): Promise<QueryResult> {
    await this.ready();
    try {
      return await this.send(text, lockStatement);
    } catch (error) {
      if (this.closed || !isConnectionLost(error)) throw error;
      return this.send(text, lockStatement);
    }
  }

  /**
   * Sends one simple query (statements from `PostgresLockStatements`: one implicit transaction, one
   * round trip). Failures become `LockBackendError`s that name the server.
   */
  private async send(text: string, lockStatement: boolean, timeout = this.options.statementTimeout): Promise<QueryResult> {
    if (this.closed) throw this.closedError();
    const query: Query = {
      text,
      // A server that stopped answering: the connection is dropped a little after the server's own bound.
      query_timeout: timeout + 2_000,
    };
    try {
      const results = (await this.pool.query(query)) as unknown as QueryResult[];
      return results[results.length - 1];
    } catch (error) {
      throw this.failure(error, lockStatement);
    }
  }

  private failure(error: unknown, lockStatement: boolean): LockBackendError {
    if (error instanceof LockBackendError) return error;
    const { host, port, database, user } = this.target;
    const where = `PostgreSQL at ${host}:${port}, database "${database}", user "${user}"`;
    const err = error as Error & { code?: string };
    const message = err?.message ?? String(error);
    let text: string;
    if (err?.code === '57014') text = `a lock statement ran past statementTimeout (${this.options.statementTimeout} ms) on ${where}`;
    else if (err?.code === '42P01' || err?.code === '42883') {
      text = `${message} on ${where}: the lock table ${this.names.leases} or its functions are missing (see postgresLockSchemaSql())`;
    } else if (!isSqlState(err?.code) || err.code!.startsWith('08') || CONNECTION_LOST_CODES.has(err.code!)) {
      text = `cannot reach ${where}: ${message}`;
    } else text = `${lockStatement ? 'a lock statement failed' : 'a statement failed'} on ${where}: ${message}`;
    return new LockBackendError(this.name, text, { cause: error });
  }

  private closedError(): LockBackendError {
    return new LockBackendError(this.name, 'the backend was closed');
  }

  /** Gives back, in the background, whatever a failed attempt may have granted or queued. */
  private cleanUpAfterFailure(key: string, token: string): void {
    if (this.closed) return;
    const cleanup = this.release(key, token).catch(() => undefined);
    this.cleanups.add(cleanup);
    void cleanup.finally(() => this.cleanups.delete(cleanup));
  }

  private rememberWaiter(key: string, token: string, ttl: number): void {
    let tokens = this.waiting.get(key);
    if (!tokens) {
      tokens = new Map();
      this.waiting.set(key, tokens);
    }
    tokens.set(token, ttl);
  }

  private forgetWaiter(key: string, token: string): void {
    const tokens = this.waiting.get(key);
    if (tokens?.delete(token) && tokens.size === 0) this.waiting.delete(key);
  }

  /**
   * A statement of this process handed `key` to `token`: wake it here if it waits here. `validFor`:
   * set when the hand-off was committed without waiting for its flush (see the release function).
   */
  private handedOver(key: string, token: string, fence: string, sentAt: number, notified: boolean, validFor: number | null): void {
    const ttl = this.waiting.get(key)?.get(token);
    this.forgetWaiter(key, token);
    if (ttl === undefined) this.held.delete(key);
    else this.held.set(key, { token, until: sentAt + Math.min(ttl, validFor ?? ttl) - driftMargin(ttl) });
    const event: LockEvent = { type: 'granted', key, token, fence: BigInt(fence) };
    if (validFor !== null) event.validFor = validFor;
    this.deliver(key, event, notified ? `g ${fence}` : undefined);
  }

  /** Delivers an event caused by this process's own statement at once; its notification is then skipped. */
  private deliver(key: string, event: LockEvent, id: string | undefined): void {
    const set = this.subscribers.get(key);
    if (!set) return;
    if (id !== undefined && this.listener.up) {
      this.echoes.add(`${id} ${key}`);
      if (this.echoes.size > MAX_ECHOES) this.echoes.delete(this.echoes.values().next().value as string);
    }
    for (const listener of [...set]) listener(event);
  }

  /**
   * Payloads: `g <fence> <token>[/<valid for, ms>] <key>` (handed to token) or `r <fence> <key>`
   * (released, nobody waiting).
   */
  private onNotification(payload: string): void {
    const type = payload[0];
    const fenceEnd = payload.indexOf(' ', 2);
    if (fenceEnd < 0) return;
    const fence = payload.slice(2, fenceEnd);
    let event: LockEvent;
    let key: string;
    if (type === 'g') {
      const tokenEnd = payload.indexOf(' ', fenceEnd + 1);
      if (tokenEnd < 0) return;
      key = payload.slice(tokenEnd + 1);
      let token = payload.slice(fenceEnd + 1, tokenEnd);
      const slash = token.indexOf('/');
      const validFor = slash < 0 ? undefined : Number(token.slice(slash + 1));
      if (slash >= 0) token = token.slice(0, slash);
      if (!/^[0-9]+$/.test(fence) || (validFor !== undefined && !Number.isSafeInteger(validFor))) return;
      event = { type: 'granted', key, token, fence: BigInt(fence) };
      if (validFor !== undefined) event.validFor = validFor;
      this.forgetWaiter(key, token);
    } else if (type === 'r') {
      key = payload.slice(fenceEnd + 1);
      event = { type: 'released', key };
    } else return;
    if (this.echoes.delete(`${type} ${fence} ${key}`)) return;
    const set = this.subscribers.get(key);
    if (set) for (const listener of [...set]) listener(event);
  }

  /**
   * Either way, every waiter of this process re-checks once: events may have been missed while the
   * listener was down, and a waiter's next re-check delay follows the listener's new state.
   */
  private onListenerState(up: boolean): void {
    this.echoes.clear();
    for (const [key, set] of [...this.subscribers]) {
      for (const listener of [...set]) listener({ type: 'released', key });
    }
    if (up) this.listenerProblemReported = false;
    if (up && this.listenerWasLost) this.logger.log(`Listening for lock events again on ${this.target.host}:${this.target.port}`);
    if (!up) this.listenerWasLost = true;
  }
}

function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

/** Whether a statement failed because its connection was lost (and may be sent again on another). */
function isConnectionLost(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (!cause) return false;
  if (isSqlState(cause.code)) return cause.code.startsWith('08') || CONNECTION_LOST_CODES.has(cause.code);
  if (cause.message === 'Query read timeout') return false;
  return true;
}

/**
 * The PostgreSQL backend: leases in a table on the database clock, fences from a sequence, fair
 * FIFO hand-off with LISTEN/NOTIFY wake-ups, safe behind PgBouncer in transaction mode.
 *
 * ```ts
 * LockModule.forRoot({ backend: postgresBackend({ connection: process.env.DATABASE_URL }) })
 * LockModule.forRoot({ backend: postgresBackend({ pool, listen: directUrl }) }) // pool through PgBouncer
 * ```
 */
export function postgresBackend(options: PostgresBackendOptions | Pool | string): PostgresLockBackend {
  return new PostgresLockBackend(resolvePostgresOptions(options));
}
