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
}
