import { Logger } from '@nestjs/common';
import type { QueryResult } from 'pg';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow, settleWithin } from '../../lock-clock';
import {
  handOffFields,
  type AcquireResult,
  type ExtendItem,
  type HandOff,
  type HeldWith,
  type LeaseMode,
  type LockBackend,
  type LockEvent,
  type QueueOptions,
  type ReleaseResult,
} from '../lock-backend';
import { PostgresAttemptCleanup } from './postgres-attempt-cleanup';
import { PostgresAttemptsInFlight } from './postgres-attempts';
import type { PostgresConnections } from './postgres-connections';
import { isConnectionLost, wasNotSent } from './postgres-error.classifier';
import { PostgresHandOffs } from './postgres-hand-offs';
import { PostgresHeldLeases } from './postgres-held-leases';
import { PostgresLocalWaiters } from './postgres-local-waiters';
import type { PostgresLockEvents } from './postgres-lock.events';
import type { PostgresLockNames } from './postgres-lock.names';
import {
  resolvePostgresOptions,
  type PostgresBackendOptions,
  type ResolvedPostgresOptions,
} from './postgres-lock.options';
import type { PostgresLockSchema } from './postgres-lock.schema';
import { setUpPostgresLock } from './postgres-lock.setup';
import type { AcquireRow, PostgresLockStatements, ReleaseRow } from './postgres-lock.statements';
import type { PostgresStatementRunner } from './postgres-statement-runner';

/** While LISTEN is up, waiters still re-check this often, in case a notification was lost. */
const LISTENING_RECHECK_INTERVAL = 30_000;

/**
 * Leases in a PostgreSQL table, on the database clock.
 *
 * - One row per key (token, fence, expiry). Acquire, extend and release are each one call of a SQL
 *   function (`sql/*.sql`): one statement, one round trip, sent with the simple query protocol
 *   together with the `SET LOCAL`s it relies on (no session state, no prepared statements: PgBouncer
 *   in transaction mode carries it), through `PostgresStatementRunner` (bounded connection wait,
 *   retries of transient rollbacks, error messages).
 * - Fences come from a sequence, drawn under the lease row lock, and stay increasing across crashes
 *   in both durability modes (see `sql/fence.sql`).
 * - Shared and limited leases (rule 7 of the SPI): each holder has a row of its own (token, fence,
 *   expiry) in a holders table, written under the key's lease row lock; the lease row's token then
 *   says how the key is shared (`'shared'`, `'limit:<n>'`). An exclusive attempt on a key held
 *   exclusively, or free, costs what it did before rule 7 (`sql/acquire.sql`); the other cases go
 *   through `sql/take.sql`, `sql/give_back.sql` and `sql/hand_off.sql`.
 * - Waiters queue in an UNLOGGED table; a release hands the key to the oldest live waiters (as many
 *   as may hold it together) in the same statement and NOTIFYs. One dedicated LISTEN connection per backend delivers the events
 *   (`PostgresLockEvents`); a grant made by this process's own release reaches a waiter of this
 *   process at once (the backend delivers it through `PostgresHandOffs`, and returns it as `handedTo`).
 * - The schema is checked (and created) at start, and housekept, by `PostgresLockSchema`.
 */
export class PostgresLockBackend implements LockBackend {
  readonly name = 'postgres';
  readonly capabilities = { fifo: true, fencing: 'strict', modes: ['shared', 'limit'] } as const;
  private readonly logger = new Logger('PostgresLockBackend');
  private readonly options: ResolvedPostgresOptions;
  private readonly names: PostgresLockNames;
  private readonly statements: PostgresLockStatements;
  private readonly connections: PostgresConnections;
  private readonly runner: PostgresStatementRunner;
  private readonly schema: PostgresLockSchema;
  private readonly events: PostgresLockEvents;
  private readonly waiters = new PostgresLocalWaiters();
  private readonly held = new PostgresHeldLeases();
  private readonly handOffs: PostgresHandOffs;
  private readonly attempts = new PostgresAttemptsInFlight();
  /** Releases after a failed attempt, awaited by `close()`. */
  private readonly cleanups = new PostgresAttemptCleanup(
    (key, token) => this.release(key, token),
    () => this.closed,
  );
  private starting: Promise<void> | undefined;
  private closed = false;

  constructor(options: PostgresBackendOptions | ResolvedPostgresOptions) {
    this.options = 'names' in options ? options : resolvePostgresOptions(options);
    this.names = this.options.names;
    const parts = setUpPostgresLock(this.options, this.logger, {
      isClosed: () => this.closed,
      send: (text, timeout) => this.send(text, false, timeout),
      run: (text) => this.run(text, false),
      granted: (key, token) => this.waiters.forget(key, token),
    });
    this.statements = parts.statements;
    this.connections = parts.connections;
    this.runner = parts.runner;
    this.schema = parts.schema;
    this.events = parts.events;
    this.handOffs = new PostgresHandOffs(this.waiters, this.held, this.events);
  }

  /** The NOTIFY channel the backend listens on. */
  get channel(): string {
    return this.names.channel;
  }

  /** While notifications flow, waiters rely on them; while the listener is down, they re-check often. */
  get recheckInterval(): number {
    return this.events.up ? LISTENING_RECHECK_INTERVAL : this.options.recheckInterval;
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.events.up;
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

  tryAcquire(key: string, token: string, ttl: number, queue?: QueueOptions, mode?: LeaseMode): Promise<AcquireResult> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.attempts.track(key, token, this.attempt(key, token, ttl, queue, mode));
  }

  private async attempt(
    key: string,
    token: string,
    ttl: number,
    queue: QueueOptions | undefined,
    mode: LeaseMode | undefined,
  ): Promise<AcquireResult> {
    const sentAt = monotonicNow();
    // A limited attempt asks the server even so: its answer says how the key is held (heldWith).
    if (!queue && mode?.kind !== 'limit') {
      const busyFor = this.held.busyFor(key, token, sentAt);
      if (busyFor !== undefined) return { fence: null, retryIn: busyFor };
    }
    let row: AcquireRow;
    try {
      row = (await this.run(this.statements.acquire(key, token, ttl, queue?.lease, mode), true)).rows[0] as AcquireRow;
    } catch (error) {
      // The statement may have committed before the failure: give back what it may have granted.
      if (!wasNotSent(error)) this.cleanups.afterFailure(key, token);
      throw error;
    }
    // The acquire function notifies every hand-off it makes.
    const handOffs = this.handedOver(key, row, sentAt, () => true, null).filter((handOff) => handOff.token !== token);
    if (row.fence !== null) {
      this.waiters.forget(key, token);
      // Only exclusive leases are known held here (see PostgresHeldLeases).
      if (mode) this.held.forget(key);
      else this.held.hold(key, token, sentAt, ttl);
      return { fence: BigInt(row.fence), ...handOffFields(handOffs) };
    }
    if (row.held_with !== null) this.waiters.forget(key, token);
    else if (queue) this.waiters.remember(key, token, ttl, sentAt + queue.lease, !mode);
    const busy: AcquireResult & { fence: null } =
      row.retry_in === null ? { fence: null } : { fence: null, retryIn: Math.max(0, row.retry_in) };
    if (row.held_with !== null) busy.heldWith = row.held_with as HeldWith;
    return Object.assign(busy, handOffFields(handOffs));
  }

  /**
   * The hand-offs a statement's row reports (the first, then the others of a key handed to several
   * waiters at once), each delivered here (see `PostgresHandOffs`). `notified`: whether the
   * statement notified the hand-off to that token.
   */
  private handedOver(
    key: string,
    row: AcquireRow | ReleaseRow,
    sentAt: number,
    notified: (token: string) => boolean,
    validFor: number | null,
  ): HandOff[] {
    const handOffs: HandOff[] = [];
    if (row.granted_token === null || row.granted_fence === null) return handOffs;
    handOffs.push(
      this.handOffs.handedOver(
        key,
        row.granted_token,
        row.granted_fence,
        sentAt,
        notified(row.granted_token),
        validFor,
      ),
    );
    const tokens = row.also_tokens ?? [];
    const fences = row.also_fences ?? [];
    tokens.forEach((token, i) => {
      // Further hand-offs are made with a flushed commit: no validFor.
      handOffs.push(this.handOffs.handedOver(key, token, fences[i], sentAt, notified(token), null));
    });
    return handOffs;
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
    items.forEach((item, i) => this.held.extended(item.key, item.token, sentAt, item.ttl, extended[i]));
    return extended;
  }

  async release(key: string, token: string): Promise<boolean> {
    return (await this.releaseWithHandOff(key, token)).released;
  }

  /**
   * The release; a hand-off to a waiter of this process is also delivered to it here (its
   * notification is not sent), so a release by any caller of this backend wakes it.
   */
  async releaseWithHandOff(key: string, token: string): Promise<ReleaseResult> {
    // An attempt of this token still in flight could otherwise reach the server after the release
    // and queue (or take) the key for a token that is gone. Attempts are bounded, so is this wait.
    const inFlight = this.attempts.settled(key, token);
    if (inFlight) await inFlight;
    const sentAt = monotonicNow();
    this.waiters.forget(key, token);
    this.held.released(key, token);
    const local = this.waiters.live(key, sentAt);
    const row = (await this.run(this.statements.release(key, token, local), true)).rows[0] as ReleaseRow;
    // The release function notifies a hand-off only to a waiter of another process.
    const handOffs = this.handedOver(key, row, sentAt, (waiter) => !local.includes(waiter), row.granted_valid_for);
    if (handOffs.length > 0) return { released: row.released, ...handOffFields(handOffs) };
    // Released and notified as such (a shared or limited holder's release that leaves waiters
    // queued behind the other holders is not: nobody could take the key for it).
    if (row.released && row.ended_fence !== null) this.events.deliver({ type: 'released', key }, row.ended_fence);
    return { released: row.released };
  }

  async subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    await this.ready();
    return this.events.subscribe(key, listener);
  }

  async ping(): Promise<void> {
    await this.run(this.statements.bounded('SELECT 1'), false);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.schema.stop();
    this.held.clear();
    this.waiters.clear();
    await this.events.close();
    await this.cleanups.settle(2_000);
    if (this.connections.ownsPool) {
      await this.connections.pool.end().catch(() => undefined);
      // Closed means closed: the pool's sockets too, which outlive pool.end() by a round trip to the server.
      await settleWithin([this.connections.closed()], 2_000);
    }
  }

  /** Runs the housekeeping once (see `PostgresLockSchema.housekeep`); returns what it deleted. */
  housekeep(): Promise<{ leases: number; waiters: number }> {
    return this.schema.housekeep();
  }

  private async initialize(): Promise<void> {
    await this.schema.ensure();
    await this.events.start();
    this.schema.startHousekeeping();
  }

  /** Runs one statement after start, retrying once when the connection was lost under it. */
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
}
