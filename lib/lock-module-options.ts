import type { LockBackend } from './backends/lock-backend';

/** Options of `LockModule.forRoot` / `forRootAsync`. */
export interface LockModuleOptions {
  /** Where leases live. Defaults to `memoryBackend()`: one process only. */
  backend?: LockBackend;
  /** Put in front of every key before it reaches the backend. Default `'lock:'`. */
  keyPrefix?: string;
  /**
   * Default lease length in ms, an integer from 1 to 2^31-1. Default 30000. A string, as read from the
   * environment, is parsed: digits are ms, and a unit may follow (`'30000'`, `'500ms'`, `'30s'`,
   * `'2m'`, `'1h'`); the result is checked like a number.
   */
  ttl?: number | string;
  /**
   * Default wait for a busy lock in ms (0 = one attempt, Infinity = no limit). Default 5000. Strings
   * as for `ttl`, and `'Infinity'`.
   */
  wait?: number | string;
  /**
   * OpenTelemetry metrics and spans through `@opentelemetry/api` (an optional peer). Default: on when
   * the API is installed; recorded only when the application registered an SDK, a no-op otherwise.
   * `false` turns it off; `true` or an object asks for it, and fails the start when the API is not
   * installed. See the README's Observability section.
   */
  telemetry?: boolean | LockTelemetryOptions;
}

/** What `LockModule`'s `telemetry` option records. */
export interface LockTelemetryOptions {
  /** The `lock.*` metrics (default `true`). */
  metrics?: boolean;
  /** A span per `withLock` / `@WithLock` call (default `true`). */
  traces?: boolean;
  /**
   * Put the lock key (without the module's `keyPrefix`) on spans as `lock.key` (default `false`).
   * Keys often carry ids or personal data; they never go on metrics, where each value is a series.
   */
  recordKey?: boolean;
}
