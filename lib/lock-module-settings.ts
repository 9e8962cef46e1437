import type { LockBackend, LockBackendCapabilities } from './backends/lock-backend';
import type { DistributedLockSettings } from './distributed-lock.service';
import type { LockTelemetryOptions } from './lock-module-options';
import { telemetrySetting } from './telemetry/lock-telemetry';
import { DEFAULT_KEY_PREFIX, DEFAULT_TTL, DEFAULT_WAIT } from './lock.constants';
import { InvalidLockOptionsError } from './lock.errors';
import {
  describeValue,
  validateKeyPrefix,
  validateOptionsObject,
  validateTelemetry,
  validateTtlOption,
  validateWaitOption,
} from './lock.validation';

const MODULE_OPTION_NAMES = ['backend', 'keyPrefix', 'ttl', 'wait', 'telemetry', 'isGlobal', 'errorFilters'] as const;
/** Options read when the module is defined (the builder's extras), not from what a factory returns. */
const STATIC_OPTION_NAMES = ['isGlobal', 'errorFilters'] as const;
const BACKEND_METHODS = ['tryAcquire', 'extend', 'release', 'subscribe', 'ping', 'close'] as const;
const CAPABILITY_FLAGS = ['fifo', 'fencing', 'modes'] as const satisfies ReadonlyArray<keyof LockBackendCapabilities>;
const FENCING_VALUES = ['strict', 'per-node'] as const satisfies ReadonlyArray<LockBackendCapabilities['fencing']>;

/**
 * Marks options that `forRoot` has already checked (and parsed): they reach the factory as they are,
 * so they are not checked twice. A symbol key survives the copies the module builder makes.
 */
export const CHECKED_OPTIONS = Symbol('nestjs-distributed-lock:checked-options');

/** How the options the module resolves at bootstrap (forRoot's, or what a factory returned) are named in errors. */
const FACTORY_WHERE = 'LockModule';

/**
 * Checks the options of `LockModule.forRoot` or the object an async factory resolved to, and returns
 * them with `ttl` and `wait` in milliseconds (duration strings such as `'30s'` parsed).
 */
export function validateModuleOptions(options: unknown, where: string): Record<string, unknown> {
  let opts: Record<string, unknown>;
  try {
    opts = { ...validateOptionsObject(`${where} options`, options, MODULE_OPTION_NAMES) };
    if (opts.keyPrefix !== undefined) validateKeyPrefix(opts.keyPrefix);
    if (opts.ttl !== undefined) opts.ttl = validateTtlOption(opts.ttl, `${where} ttl`);
    if (opts.wait !== undefined) opts.wait = validateWaitOption(opts.wait, `${where} wait`);
    validateTelemetry(opts.telemetry, `${where} telemetry`);
    validateStaticModuleOptions(opts, where);
    // forRoot's own options reach the factory path without their extras: errorFilters here came from a factory.
    if (where === FACTORY_WHERE && opts.errorFilters !== undefined) {
      throw new InvalidLockOptionsError(
        `Invalid LockModule errorFilters from the options factory: it decides which providers the module has, so it is read ` +
          `when the module is defined; give it to LockModule.forRootAsync({ errorFilters, useFactory }) beside the factory`,
      );
    }
    if (opts.backend !== undefined) validateBackend(opts.backend, where);
  } catch (error) {
    // Nothing may stay open on bad input: close a backend the options came with.
    const backend = (options as { backend?: Partial<LockBackend> } | null | undefined)?.backend;
    if (backend && typeof backend.close === 'function') void backend.close().catch(() => undefined);
    throw error;
  }
  return opts;
}

/** Checks `isGlobal` and `errorFilters`, the options of forRoot and forRootAsync that shape the module itself. */
export function validateStaticModuleOptions(options: unknown, where: string): void {
  if (options === null || typeof options !== 'object') {
    throw new InvalidLockOptionsError(`Invalid ${where} options: expected an object, got ${describeValue(options)}`);
  }
  for (const name of STATIC_OPTION_NAMES) {
    const value = (options as Record<string, unknown>)[name];
    if (value !== undefined && typeof value !== 'boolean') {
      throw new InvalidLockOptionsError(`Invalid ${where} ${name}: expected a boolean, got ${describeValue(value)}`);
    }
  }
}

function validateBackend(backend: unknown, where: string): asserts backend is LockBackend {
  const candidate = backend as Record<string, unknown> | null;
  const missing =
    candidate === null || typeof candidate !== 'object'
      ? ['an object']
      : [
          ...(typeof candidate.name === 'string' ? [] : ['name']),
          ...BACKEND_METHODS.filter((method) => typeof candidate[method] !== 'function'),
        ];
  if (missing.length > 0) {
    throw new InvalidLockOptionsError(
      `Invalid ${where} backend: expected a LockBackend such as memoryBackend(), redisBackend(...) or postgresBackend(...), ` +
        `got ${describeValue(backend)} (missing ${missing.join(', ')})`,
    );
  }
  validateCapabilities(candidate!.capabilities, `${where} backend ${String(candidate!.name)}`);
}

/**
 * A backend's `capabilities`, when it declares them: an object of known flags with their allowed
 * values. Left out, they mean the full rules; a misspelt flag is refused rather than read as that.
 */
function validateCapabilities(capabilities: unknown, where: string): void {
  if (capabilities === undefined) return;
  const allowed = `{ fifo?: boolean, fencing?: ${FENCING_VALUES.map((v) => `'${v}'`).join(' | ')}, modes?: Array<${MODE_VALUES.map((v) => `'${v}'`).join(' | ')}> }`;
  if (capabilities === null || typeof capabilities !== 'object' || Array.isArray(capabilities)) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: capabilities must be ${allowed}, got ${describeValue(capabilities)}`,
    );
  }
  const flags = capabilities as Record<string, unknown>;
  const unknown = Object.keys(flags).filter((flag) => !(CAPABILITY_FLAGS as readonly string[]).includes(flag));
  if (unknown.length > 0) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: unknown capabilities ${unknown.join(', ')}; allowed: ${allowed}`,
    );
  }
  if (flags.fifo !== undefined && typeof flags.fifo !== 'boolean') {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: capabilities.fifo must be a boolean, got ${describeValue(flags.fifo)}`,
    );
  }
  if (flags.fencing !== undefined && !(FENCING_VALUES as readonly unknown[]).includes(flags.fencing)) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: capabilities.fencing must be ${FENCING_VALUES.map((v) => `'${v}'`).join(' or ')}, got ${describeValue(flags.fencing)}`,
    );
  }
  if (
    flags.modes !== undefined &&
    (!Array.isArray(flags.modes) || !flags.modes.every((mode) => (MODE_VALUES as readonly unknown[]).includes(mode)))
  ) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: capabilities.modes must be a list of ${MODE_VALUES.map((v) => `'${v}'`).join(' and ')}, got ${describeValue(flags.modes)}`,
    );
  }
}

const MODE_VALUES = ['shared', 'limit'] as const;

/** The service settings: defaults applied to checked options. */
export function resolveModuleSettings(options: unknown, backend: LockBackend): DistributedLockSettings {
  const checked = (options as { [CHECKED_OPTIONS]?: true } | undefined)?.[CHECKED_OPTIONS] === true;
  const opts = checked ? (options as Record<string, unknown>) : validateModuleOptions(options ?? {}, FACTORY_WHERE);
  return {
    backend,
    keyPrefix: opts.keyPrefix === undefined ? DEFAULT_KEY_PREFIX : (opts.keyPrefix as string),
    ttl: opts.ttl === undefined ? DEFAULT_TTL : (opts.ttl as number),
    wait: opts.wait === undefined ? DEFAULT_WAIT : (opts.wait as number),
    telemetry: telemetrySetting(opts.telemetry as boolean | LockTelemetryOptions | undefined),
  };
}
