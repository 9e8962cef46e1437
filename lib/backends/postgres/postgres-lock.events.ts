import type { Logger } from '@nestjs/common';
import type { ClientConfig } from 'pg';
import { BoundedSet } from '../../bounded-set';
import { monotonicNow, scheduleAt } from '../../lock-clock';
import type { LockEvent } from '../lock-backend';
import type { PostgresTarget } from './postgres-connections';
import { PostgresNotificationListener } from './postgres-notification.listener';
import { notificationId, parseLockNotification } from './postgres-notification.payload';

/** How the LISTEN connection proves that notifications still arrive, this often. */
const LISTEN_HEALTH_INTERVAL = 15_000;
/** How long a subscription waits for a LISTEN connection that is being opened. */
const SUBSCRIBE_WAIT = 1_000;
/** Local deliveries remembered, so the notification that echoes them is not delivered twice. */
const MAX_ECHOES = 4_096;

/** What the event channel needs from its backend. */
export interface PostgresLockEventsOptions {
  /** Settings of the LISTEN connection (see `PostgresNotificationListener`). */
  listen: ClientConfig;
  channel: string;
  /** Where the LISTEN connection goes, for logs. */
  target: PostgresTarget;
  /** The re-check interval of waiters while the listener is down, for logs. */
  recheckInterval: number;
  /** Sends a probe payload on the channel through the pool, as lock statements notify. */
  sendProbe(payload: string): Promise<void>;
  /** A notification said `key` was handed to `token` (of this process or another). */
  granted(key: string, token: string): void;
  logger: Logger;
}

/**
 * The lock events of one backend: its LISTEN connection, the subscribers per key, and echo
 * suppression. An event caused by this process's own statement is delivered at once from the
 * statement's result (`deliver`); the notification the statement also sent is then skipped when it
 * arrives, so a subscriber sees each event once.
 */
export class PostgresLockEvents {
  private readonly listener: PostgresNotificationListener;
  private readonly subscribers = new Map<string, Set<(event: LockEvent) => void>>();
  private readonly echoes = new BoundedSet(MAX_ECHOES);
  private listenerWasLost = false;
  private listenerProblemReported = false;

  constructor(private readonly options: PostgresLockEventsOptions) {
    this.listener = new PostgresNotificationListener(options.listen, options.channel, LISTEN_HEALTH_INTERVAL, {
      notification: (payload) => this.onNotification(payload),
      sendProbe: (payload) => options.sendProbe(payload),
      stateChanged: (up) => this.onListenerState(up),
      problem: (message) => {
        // One warning per outage; the attempts that follow fail the same way.
        if (this.listenerProblemReported) return options.logger.debug(message);
        this.listenerProblemReported = true;
        options.logger.warn(`${message}; reconnecting, waiters re-check every ${options.recheckInterval} ms meanwhile`);
      },
    });
  }

  /** True while the LISTEN connection is up (notifications proven to arrive). */
  get up(): boolean {
    return this.listener.up;
  }

  /** Opens the LISTEN connection; resolves once the first attempt succeeded or failed. */
  async start(): Promise<void> {
    this.listener.start();
    await this.listener.settled();
  }

  /**
   * Adds a subscriber of `key`'s events; returns its removal. A connection attempt in progress gets
   * a short chance first; a listener that is down leaves the waiter on its re-check, never hanging.
   */
  async subscribe(key: string, subscriber: (event: LockEvent) => void): Promise<() => void> {
    if (!this.listener.up) {
      let cancel: () => void = () => undefined;
      await Promise.race([
        this.listener.settled(),
        new Promise<void>((resolve) => (cancel = scheduleAt(monotonicNow() + SUBSCRIBE_WAIT, resolve))),
      ]);
      cancel();
    }
    let set = this.subscribers.get(key);
    if (!set) {
      set = new Set();
      this.subscribers.set(key, set);
    }
    set.add(subscriber);
    return () => {
      const current = this.subscribers.get(key);
      if (!current) return;
      current.delete(subscriber);
      if (current.size === 0) this.subscribers.delete(key);
    };
  }

  /**
   * Delivers an event caused by this process's own statement at once. `notifiedWith`: the fence of
   * the notification the statement also sent, which is then skipped; undefined when it sent none.
   */
  deliver(event: LockEvent, notifiedWith: string | undefined): void {
    const set = this.subscribers.get(event.key);
    if (!set) return;
    if (notifiedWith !== undefined && this.listener.up) {
      this.echoes.add(notificationId(event, notifiedWith));
    }
    for (const subscriber of [...set]) subscriber(event);
  }

  async close(): Promise<void> {
    this.subscribers.clear();
    await this.listener.close();
  }

  private onNotification(payload: string): void {
    const notification = parseLockNotification(payload);
    if (!notification) return;
    const { event, fence } = notification;
    if (event.type === 'granted') this.options.granted(event.key, event.token);
    if (this.echoes.delete(notificationId(event, fence))) return;
    const set = this.subscribers.get(event.key);
    if (set) for (const subscriber of [...set]) subscriber(event);
  }

  /**
   * Either way, every waiter of this process re-checks once: events may have been missed while the
   * listener was down, and a waiter's next re-check delay follows the listener's new state.
   */
  private onListenerState(up: boolean): void {
    this.echoes.clear();
    for (const [key, set] of [...this.subscribers]) {
      for (const subscriber of [...set]) subscriber({ type: 'released', key });
    }
    const { host, port } = this.options.target;
    if (up) this.listenerProblemReported = false;
    if (up && this.listenerWasLost) this.options.logger.log(`Listening for lock events again on ${host}:${port}`);
    if (!up) this.listenerWasLost = true;
  }
}
