import type { LossReason } from '../watchdog';

/** How an acquisition ended, as `lock.outcome` says. */
export type AcquireOutcome = 'acquired' | 'busy' | 'skipped' | 'aborted' | 'error';
/** Why a lease was lost, as `lock.lost.reason` says. */
export type LostReason = LossReason | 'release_found_gone' | 'shutdown';
/** The backend call that failed, as `lock.operation` says. */
export type BackendOperation = 'acquire' | 'subscribe' | 'extend' | 'release' | 'ping';

/** The `lock.name` of calls that were given no `metricName`: never derived from the key (see the README). */
export const UNNAMED = '(unnamed)';
/** The `lock.name` of every name past the first `MAX_NAMES` one meter has seen. */
export const OTHER_NAMES = '(other)';
/** Distinct lock names one meter keeps series for; a `metricName` made from ids ends up in `(other)`. */
export const MAX_NAMES = 1_000;

/** Instruments, attributes, span and event names: the README's tables list exactly these. */
export const INSTRUMENTS = {
  waitDuration: 'lock.wait.duration',
  holdDuration: 'lock.hold.duration',
  held: 'lock.held',
  lost: 'lock.lost',
  extensionFailures: 'lock.extension.failures',
  backendErrors: 'lock.backend.errors',
} as const;
export const ATTRIBUTES = {
  name: 'lock.name',
  backend: 'lock.backend',
  outcome: 'lock.outcome',
  lostReason: 'lock.lost.reason',
  extensionFailure: 'lock.extension.failure',
  operation: 'lock.operation',
  key: 'lock.key',
  fence: 'lock.fence',
  reentrant: 'lock.reentrant',
} as const;
export const EVENTS = { acquired: 'lock.acquired', lost: 'lock.lost', released: 'lock.released' } as const;
