import type { Client, ClientConfig, Notification, QueryConfig } from 'pg';
import { loadPg } from './pg.loader';
import { monotonicNow, scheduleAt } from '../../lock-clock';

/** What the listener reports to its owner. */
export interface NotificationListenerEvents {
  /** A payload arrived on the channel. */
  notification(payload: string): void;
  /** The listener went up (LISTEN confirmed) or down (connection lost or not reachable). */
  stateChanged(up: boolean): void;
  /** Something went wrong on the listening connection; for logs only. */
  problem(message: string): void;
}

/** Reconnect delays grow from the first to the last, doubling, with some jitter. */
const FIRST_RECONNECT_DELAY = 100;
const MAX_RECONNECT_DELAY = 5_000;

/**
 * The one dedicated LISTEN connection of a backend. It is a plain `Client` of its own (never a pool
 * connection: LISTEN is session state, and a pool or PgBouncer may hand the session to someone else).
 * It reconnects with backoff whenever the connection ends, and checks its health every
 * `healthInterval` ms, since a connection that dies silently would otherwise look alive.
 */
export class PostgresNotificationListener {
  private client: Client | undefined;
  private connecting: Promise<void> | undefined;
  private isUp = false;
  private closed = false;
  private failures = 0;
  private cancelReconnect: (() => void) | undefined;
  private cancelHealth: (() => void) | undefined;

  constructor(
    private readonly config: ClientConfig,
    private readonly channel: string,
    private readonly healthInterval: number,
    private readonly events: NotificationListenerEvents,
  ) {}

  /** True while LISTEN is in force on a live connection. */
  get up(): boolean {
    return this.isUp;
  }

  /** Starts connecting, unless already connected or connecting. */
  start(): void {
    if (this.closed || this.client || this.connecting) return;
    this.cancelReconnect?.();
    this.cancelReconnect = undefined;
    this.connecting = this.connect().finally(() => {
      this.connecting = undefined;
    });
  }

  /** Resolves when the connection attempt in progress (if any) has succeeded or failed. Never rejects. */
  settled(): Promise<void> {
    return this.connecting ?? Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cancelReconnect?.();
    this.cancelHealth?.();
    const client = this.client;
    this.client = undefined;
    this.setUp(false);
    if (client) await client.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const { Client, escapeIdentifier } = loadPg();
    const client = new Client(this.config);
    client.on('error', (error) => this.lost(client, `the LISTEN connection failed: ${error.message}`));
    client.on('end', () => this.lost(client, 'the LISTEN connection ended'));
    client.on('notification', (message: Notification) => {
      if (this.client === client && message.channel === this.channel && message.payload !== undefined) {
        this.events.notification(message.payload);
      }
    });
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${escapeIdentifier(this.channel)}`);
    } catch (error) {
      this.lost(client, `the LISTEN connection could not be opened: ${(error as Error).message}`);
      return;
    }
    if (this.client !== client) return;
    this.failures = 0;
    this.setUp(true);
    this.scheduleHealthCheck(client);
  }

  /** Forgets a connection that failed, once, and schedules the next attempt. */
  private lost(client: Client, message: string): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.cancelHealth?.();
    void client.end().catch(() => undefined);
    if (this.closed) return;
    this.events.problem(message);
    this.setUp(false);
    const delay = Math.min(MAX_RECONNECT_DELAY, FIRST_RECONNECT_DELAY * 2 ** this.failures) * (0.75 + Math.random() / 2);
    this.failures = Math.min(this.failures + 1, 16);
    this.cancelReconnect = scheduleAt(monotonicNow() + delay, () => {
      this.cancelReconnect = undefined;
      this.start();
    });
  }

  private scheduleHealthCheck(client: Client): void {
    this.cancelHealth = scheduleAt(monotonicNow() + this.healthInterval, () => {
      if (this.client !== client) return;
      const query: QueryConfig & { query_timeout: number } = { text: 'SELECT 1', query_timeout: Math.max(1_000, this.healthInterval) };
      client.query(query).then(
        () => {
          if (this.client === client) this.scheduleHealthCheck(client);
        },
        (error: Error) => this.lost(client, `the LISTEN connection stopped answering: ${error.message}`),
      );
    });
  }

  private setUp(up: boolean): void {
    if (this.isUp === up) return;
    this.isUp = up;
    this.events.stateChanged(up);
  }
}
