import type { LockBackend } from './backends/lock-backend';

/** Options of `LockModule.forRoot` / `forRootAsync`. */
export interface LockModuleOptions {
  /** Where leases live. Defaults to `memoryBackend()`: one process only. */
  backend?: LockBackend;
  /** Put in front of every key before it reaches the backend. Default `'lock:'`. */
  keyPrefix?: string;
  /** Default lease length in ms, an integer from 1 to 2^31-1. Default 30000. */
  ttl?: number;
  /** Default wait for a busy lock in ms (0 = one attempt, Infinity = no limit). Default 5000. */
  wait?: number;
}
