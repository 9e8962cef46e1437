import { Logger } from '@nestjs/common';
import type { ClientConfig, Pool, PoolConfig, QueryResult } from 'pg';
import { driftMargin } from '../../lock.constants';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow, scheduleAt, settleWithin } from '../../lock-clock';
import type { AcquireResult, ExtendItem, LockBackend, LockEvent, QueueOptions } from '../lock-backend';
import { loadPg } from './pg.loader';
import { resolvePostgresOptions, type PostgresBackendOptions, type ResolvedPostgresOptions } from './postgres-lock.options';
import { schemaSql, type PostgresLockNames } from './postgres-lock.schema';
import { PostgresLockStatements } from './postgres-lock.statements';
import { PostgresNotificationListener } from './postgres-notification.listener';
import { isConnectionLost, PostgresStatementRunner, wasNotSent, type PostgresTarget } from './postgres-statement-runner';

/** While LISTEN is up, waiters still re-check this often, in case a notification was lost. */
const LISTENING_RECHECK_INTERVAL = 30_000;
/** How often the LISTEN connection proves that notifications still arrive. */
const LISTEN_HEALTH_INTERVAL = 15_000;
/** Rows are deleted only when their lease ended at least this long ago (and 10 statement timeouts). */
const HOUSEKEEPING_GRACE = 60_000;
/** Rows one housekeeping statement deletes at most (per table); a run repeats it until a batch comes back short. */
const HOUSEKEEPING_BATCH = 1_000;
/** Bounds of one housekeeping run; a run that hits one is followed by the next one soon. */
const HOUSEKEEPING_MAX_BATCHES = 100;
const HOUSEKEEPING_RUN_TIME = 10_000;
/** Delay before the next run when the last one stopped at a bound with rows left to delete. */
const HOUSEKEEPING_CATCH_UP_DELAY = 1_000;
/** How often the map of local waiters is swept of places that lapsed (it is also pruned per key on use). */
const WAITER_SWEEP_INTERVAL = 1_000;
/** Bound of the schema migration at start (it may wait for another instance's migration). */
const MIGRATION_TIMEOUT = 60_000;
/** How long a subscription waits for a LISTEN connection that is being opened. */
const SUBSCRIBE_WAIT = 1_000;
/** Local deliveries remembered, so the notification that echoes them is not delivered twice. */
const MAX_ECHOES = 4_096;
/**
 * Leases in a PostgreSQL table, on the database clock.
 *
 * - One row per key (token, fence, expiry). Acquire, extend and release are each one call of a SQL
 *   function: one statement, one round trip, sent with the simple query protocol together with
 *   the `SET LOCAL`s it relies on (no session state, no prepared statements: PgBouncer in
 *   transaction mode carries it), through `PostgresStatementRunner` (bounded connection wait,
 *   retries of transient rollbacks, error messages).
 * - Fences come from a sequence, drawn under the lease row lock, and stay increasing across crashes
 *   in both durability modes (see the fence function in the schema).
 * - Waiters queue in an UNLOGGED table; a release hands the key to the oldest live waiter in the same
 *   statement and NOTIFYs. One dedicated LISTEN connection per backend delivers the events; a grant
 *   made by this process's own release reaches a waiter of this process at once.
 */
export class PostgresLockBackend implements LockBackend {
  readonly name = 'postgres';
  readonly capabilities = { fifo: true, fencing: 'strict' } as const;
  private readonly logger = new Logger('PostgresLockBackend');
  private readonly options: ResolvedPostgresOptions;
  private readonly names: PostgresLockNames;
  private readonly statements: PostgresLockStatements;
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly target: PostgresTarget;
  private readonly runner: PostgresStatementRunner;
  private readonly listener: PostgresNotificationListener;
  private readonly subscribers = new Map<string, Set<(event: LockEvent) => void>>();
  private readonly echoes = new Set<string>();
  /**
   * Tokens of this process waiting in a key's queue, with the ttl they asked for and the monotonic
   * time their place lapses (counted from the send time of the attempt that joined or refreshed it,
   * so never later than on the server). Lapsed places are dropped: the list sent with each release
   * stays the live waiters.
   */
  private readonly waiting = new Map<string, Map<string, { ttl: number; until: number }>>();
  private nextWaiterSweep = 0;
  /**
   * Attempts in flight, by key and token. A release of that token waits for them to settle, so it
   * reaches the server after them: a waiter that gives up is out of the queue for good.
   */
  private readonly attempts = new Map<string, Set<Promise<unknown>>>();
  private housekeepingBehind = false;
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
    this.runner = new PostgresStatementRunner(this.pool, this.target, this.names, this.options.statementTimeout, () => this.closed);
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

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions): Promise<AcquireResult> {
    if (this.closed) return Promise.reject(this.closedError());
    const id = attemptId(key, token);
    const attempt = this.attempt(key, token, ttl, queue);
    let set = this.attempts.get(id);
    if (!set) {
      set = new Set();
      this.attempts.set(id, set);
    }
    set.add(attempt);
    const settled = (): void => {
      const current = this.attempts.get(id);
      if (current?.delete(attempt) && current.size === 0) this.attempts.delete(id);
    };
    attempt.then(settled, settled);
    return attempt;
  }

  private async attempt(key: string, token: string, ttl: number, queue: QueueOptions | undefined): Promise<AcquireResult> {
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
      if (!wasNotSent(error)) this.cleanUpAfterFailure(key, token);
      throw error;
    }
    // The acquire function notifies every hand-off it makes.
    if (row.granted_token !== null && row.granted_fence !== null) this.handedOver(key, row.granted_token, row.granted_fence, sentAt, true, null);
    if (row.fence !== null) {
      this.forgetWaiter(key, token);
      this.held.set(key, { token, until: sentAt + ttl - driftMargin(ttl) });
      return { fence: BigInt(row.fence) };
    }
    if (queue) this.rememberWaiter(key, token, ttl, sentAt + queue.lease);
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
      // The renewed end, shorter or longer: a shorter TTL (an extend to end a lease sooner, a minHold)
      // must not leave this process answering busy past it.
      if (extended[i]) lease.until = sentAt + item.ttl - driftMargin(item.ttl);
      else this.held.delete(item.key);
    });
    return extended;
  }

  async release(key: string, token: string): Promise<boolean> {
    // An attempt of this token still in flight could otherwise reach the server after the release
    // and queue (or take) the key for a token that is gone. Attempts are bounded, so is this wait.
    const inFlight = this.attempts.get(attemptId(key, token));
    if (inFlight) await Promise.allSettled([...inFlight]);
    const sentAt = monotonicNow();
    this.forgetWaiter(key, token);
    if (this.held.get(key)?.token === token) this.held.delete(key);
    const local = this.liveWaiters(key, sentAt);
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

  /**
   * Runs the housekeeping once: deletes every row whose lease ended long ago, in batches (one
   * statement each) until a batch comes back short, at most HOUSEKEEPING_MAX_BATCHES batches or
   * HOUSEKEEPING_RUN_TIME ms; the next run then follows soon. Returns what it deleted.
   */
  async housekeep(): Promise<{ leases: number; waiters: number }> {
    const grace = Math.max(HOUSEKEEPING_GRACE, 10 * this.options.statementTimeout);
    const deleted = { leases: 0, waiters: 0 };
    const started = monotonicNow();
    for (let batch = 0; batch < HOUSEKEEPING_MAX_BATCHES && !this.closed; batch++) {
      const row = (await this.run(this.statements.housekeep(grace, HOUSEKEEPING_BATCH), false)).rows[0] as { leases: number; waiters: number };
      deleted.leases += row.leases;
      deleted.waiters += row.waiters;
      if (row.leases < HOUSEKEEPING_BATCH && row.waiters < HOUSEKEEPING_BATCH) {
        this.housekeepingBehind = false;
        return deleted;
      }
      if (monotonicNow() - started >= HOUSEKEEPING_RUN_TIME) break;
    }
    this.housekeepingBehind = true;
    return deleted;
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
    // Spread the instances' runs apart; a run that stopped with rows left is followed soon.
    const delay = this.housekeepingBehind
      ? Math.min(every, HOUSEKEEPING_CATCH_UP_DELAY)
      : (first ? Math.random() : 0.75 + Math.random() / 2) * every;
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

  /** Sends one statement through the pool (see `PostgresStatementRunner.send`). */
  private send(text: string, lockStatement: boolean, timeout?: number): Promise<QueryResult> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.runner.send(text, lockStatement, timeout);
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

  private rememberWaiter(key: string, token: string, ttl: number, until: number): void {
    let tokens = this.waiting.get(key);
    if (!tokens) {
      tokens = new Map();
      this.waiting.set(key, tokens);
    }
    tokens.set(token, { ttl, until });
    this.sweepWaiters(monotonicNow());
  }

  /** The tokens waiting on `key` here whose place has not lapsed; lapsed ones are forgotten. */
  private liveWaiters(key: string, now: number): string[] {
    this.sweepWaiters(now);
    const tokens = this.waiting.get(key);
    if (!tokens) return [];
    for (const [token, place] of tokens) if (place.until <= now) tokens.delete(token);
    if (tokens.size === 0) this.waiting.delete(key);
    return [...tokens.keys()];
  }

  /** Drops lapsed places of every key, at most once per WAITER_SWEEP_INTERVAL. */
  private sweepWaiters(now: number): void {
    if (now < this.nextWaiterSweep) return;
    this.nextWaiterSweep = now + WAITER_SWEEP_INTERVAL;
    for (const [key, tokens] of this.waiting) {
      for (const [token, place] of tokens) if (place.until <= now) tokens.delete(token);
      if (tokens.size === 0) this.waiting.delete(key);
    }
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
    const ttl = this.waiting.get(key)?.get(token)?.ttl;
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

function attemptId(key: string, token: string): string {
  // Keys never contain NUL (the service checks them).
  return `${key}\u0000${token}`;
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
