import type { LeaseMode } from './backends/lock-backend';
import { PRECHECKED_OPTIONS, SKIP_WHEN_BUSY } from './lock.constants';
import {
  validateKey,
  validateLeaseMode,
  validateMetricName,
  validateMinHold,
  validateOptionsObject,
  validateSignal,
  validateTtl,
  validateWait,
} from './lock.validation';
import { UNNAMED } from './telemetry/lock-telemetry';

export const TRY_ACQUIRE_OPTIONS = ['ttl', 'metricName', 'mode', 'limit'] as const;
export const ACQUIRE_OPTIONS = ['ttl', 'wait', 'signal', 'metricName', 'mode', 'limit'] as const;
export const WITH_LOCK_OPTIONS = [...ACQUIRE_OPTIONS, 'minHold'] as const;

/** A call's options, checked, with the service's defaults applied. */
export interface CallOptions {
  ttl: number;
  wait: number;
  signal: AbortSignal | undefined;
  minHold: number;
  /** The `lock.name` of its telemetry. */
  name: string;
  /** `@WithLock({ onBusy: 'skip' })`: a busy key is a skipped run, not a failure. */
  skip: boolean;
  /** `mode` and `limit` as the backend's lease mode; undefined: exclusive. */
  mode: LeaseMode | undefined;
}

/**
 * A call's key and options, checked (a typed `InvalidLockOptionsError` naming what was wrong and
 * what is allowed), with the service's defaults applied.
 */
export function readCallOptions(
  method: 'tryAcquire' | 'acquire' | 'withLock',
  key: unknown,
  options: unknown,
  allowed: readonly string[],
  defaults: { readonly ttl: number; readonly wait: number },
): CallOptions {
  validateKey(key);
  const call: CallOptions = {
    ttl: defaults.ttl,
    wait: defaults.wait,
    signal: undefined,
    minHold: 0,
    name: UNNAMED,
    skip: false,
    mode: undefined,
  };
  if (options === undefined) return call;
  // `@WithLock`'s own options: checked once, when the method was decorated, and frozen since (a copy
  // with other values, as a multi-key lock makes for each key, is not frozen and is checked anew).
  const prechecked = (options as { [PRECHECKED_OPTIONS]?: PrecheckedOptions })[PRECHECKED_OPTIONS];
  if (prechecked && Object.isFrozen(options)) {
    if (prechecked.ttl !== undefined) call.ttl = prechecked.ttl;
    if (prechecked.wait !== undefined) call.wait = prechecked.wait;
    call.minHold = prechecked.minHold;
    call.name = prechecked.name;
    call.skip = prechecked.skip;
    call.mode = prechecked.mode;
    return call;
  }
  const opts = validateOptionsObject(`${method} options`, options, allowed);
  if (opts.ttl !== undefined) call.ttl = validateTtl(opts.ttl);
  if (opts.wait !== undefined) call.wait = validateWait(opts.wait);
  call.signal = validateSignal(opts.signal);
  if (opts.minHold !== undefined) call.minHold = validateMinHold(opts.minHold, `${method} minHold`);
  if (opts.metricName !== undefined) call.name = validateMetricName(opts.metricName, `${method} metricName`);
  if (opts.mode !== undefined || opts.limit !== undefined) call.mode = validateLeaseMode(opts.mode, opts.limit, method);
  call.skip = (options as { [SKIP_WHEN_BUSY]?: boolean })[SKIP_WHEN_BUSY] === true;
  return call;
}

/** A call's options checked ahead of the call (`@WithLock`'s), without the service's defaults. */
export type PrecheckedOptions = Omit<CallOptions, 'ttl' | 'wait' | 'signal'> & { ttl?: number; wait?: number };

/**
 * `options` checked now, for calls made later: the frozen object carries what `readCallOptions`
 * would read from it, so those calls skip the checks (they still check the key).
 */
export function precheckOptions<T extends object>(
  method: 'withLock',
  options: T,
  allowed: readonly string[],
): Readonly<T> {
  const call = readCallOptions(method, 'k', options, allowed, { ttl: 1, wait: 0 });
  const opts = options as { ttl?: number; wait?: number };
  const prechecked: PrecheckedOptions = {
    ttl: opts.ttl,
    wait: opts.wait,
    minHold: call.minHold,
    name: call.name,
    skip: call.skip,
    mode: call.mode,
  };
  return Object.freeze({ ...options, [PRECHECKED_OPTIONS]: Object.freeze(prechecked) });
}
