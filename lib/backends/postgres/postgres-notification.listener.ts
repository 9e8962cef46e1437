import { randomBytes } from 'node:crypto';
import type { Client, ClientConfig, Notification } from 'pg';
import { monotonicNow, scheduleAt } from '../../lock-clock';
import { loadPg } from './pg.loader';
import { PROBE_PREFIX } from './postgres-notification.payload';

/** What the listener needs from its owner and reports to it. */
export interface NotificationListenerEvents {
  /** A payload arrived on the channel (probes excluded). */
  notification(payload: string): void;
  /** The listener went up (notifications proven to arrive) or down (lost, unreachable or deaf). */
  stateChanged(up: boolean): void;
  /** Something went wrong on the listening connection; for logs only. */
  problem(message: string): void;
  /**
   * Sends `payload` on the channel the way lock statements do (through the pool). Resolves once
   * sent; rejects when it could not be sent, which says nothing about the listener.
   */
  sendProbe(payload: string): Promise<void>;
}

/** Reconnect delays grow from the first to the last, doubling, with some jitter. */
const FIRST_RECONNECT_DELAY = 100;
const MAX_RECONNECT_DELAY = 5_000;
/** How long a probe may take to come back before the listener counts as deaf. */
const PROBE_TIMEOUT = 3_000;

/**
 * The one dedicated LISTEN connection of a backend: a plain `Client` of its own, never a pool
 * connection (LISTEN is session state; a pool, or PgBouncer in transaction mode, would hand the
 * session to someone else and the notifications would never arrive).
 *
 * It counts as up only once a probe, sent through the pool like every release, came back: that
 * proves notifications really arrive (a LISTEN made through PgBouncer in transaction mode would
 * succeed and then hear nothing). The probe is repeated every `healthInterval` ms, since a
 * connection can also die silently. On any failure the connection is dropped and opened again with
 * backoff.
 */
export class PostgresNotificationListener {
  private client: Client | undefined;
  private connecting: Promise<void> | undefined;
  private isUp = false;
  private closed = false;
  private failures = 0;
  private cancelReconnect: (() => void) | undefined;
  private cancelHealth: (() => void) | undefined;
  private probes = new Map<string, () => void>();

  constructor(
    private readonly config: ClientConfig,
    private readonly channel: string,
    private readonly healthInterval: number,
    private readonly events: NotificationListenerEvents,
  ) {}

  /** True while notifications are known to arrive. */
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
    for (const resolve of this.probes.values()) resolve();
    this.probes.clear();
    if (client) await client.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const { Client, escapeIdentifier } = loadPg();
    const client = new Client(this.config);
    client.on('error', (error) => this.lost(client, `the LISTEN connection failed: ${error.message}`));
    client.on('end', () => this.lost(client, 'the LISTEN connection ended'));
    client.on('notification', (message: Notification) => {
      if (this.client !== client || message.channel !== this.channel || message.payload === undefined) return;
      if (message.payload.startsWith(PROBE_PREFIX)) this.probes.get(message.payload)?.();
      else this.events.notification(message.payload);
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
    if (!(await this.probe(client))) return;
    this.failures = 0;
    this.setUp(true);
    this.scheduleHealthCheck(client);
  }

  /**
   * Sends a probe through the pool and waits for it on this connection. False (and the connection
   * dropped) when it does not come back; true when it came back, or could not be sent at all (the
   * pool's trouble, not the listener's).
   */
  private async probe(client: Client): Promise<boolean> {
    const payload = `${PROBE_PREFIX}${randomBytes(8).toString('hex')}`;
    let cancelTimer: () => void = () => undefined;
    const arrived = new Promise<boolean>((resolve) => {
      this.probes.set(payload, () => resolve(true));
      cancelTimer = scheduleAt(monotonicNow() + PROBE_TIMEOUT, () => resolve(false));
    });
    let ok: boolean;
    try {
      await this.events.sendProbe(payload);
      ok = await arrived;
    } catch {
      ok = true;
    } finally {
      cancelTimer();
      this.probes.delete(payload);
    }
    if (this.client !== client) return false;
    if (!ok) {
      this.lost(
        client,
        `notifications sent on channel "${this.channel}" do not arrive on the LISTEN connection within ${PROBE_TIMEOUT} ms ` +
          '(if it goes through PgBouncer in transaction mode, point the `listen` option at PostgreSQL itself)',
      );
    }
    return ok;
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
    const delay =
      Math.min(MAX_RECONNECT_DELAY, FIRST_RECONNECT_DELAY * 2 ** this.failures) * (0.75 + Math.random() / 2);
    this.failures = Math.min(this.failures + 1, 16);
    this.cancelReconnect = scheduleAt(monotonicNow() + delay, () => {
      this.cancelReconnect = undefined;
      this.start();
    });
  }

  private scheduleHealthCheck(client: Client): void {
    this.cancelHealth = scheduleAt(monotonicNow() + this.healthInterval, () => {
      if (this.client !== client) return;
      void this.probe(client).then((ok) => {
        if (ok && this.client === client) this.scheduleHealthCheck(client);
      });
    });
  }

  private setUp(up: boolean): void {
    if (this.isUp === up) return;
    this.isUp = up;
    this.events.stateChanged(up);
  }
}
