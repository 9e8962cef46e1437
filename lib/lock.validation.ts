import type { LeaseMode } from './backends/lock-backend';
import { MAX_KEY_BYTES, MAX_KEY_PREFIX_BYTES, MAX_LOCK_LIMIT, MAX_TIMER_DELAY } from './lock.constants';
import { InvalidLockOptionsError } from './lock.errors';

/** A short, safe rendering of a value for error messages (long strings are cut, control characters escaped). */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `${JSON.stringify(shown)}${value.length > 40 ? ` (${value.length} characters)` : ''}`;
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  return `an object`;
}

const KEY_RULE = `a non-empty string of at most ${MAX_KEY_BYTES} UTF-8 bytes, without NUL characters or unpaired surrogates`;

function checkKeyText(what: string, value: unknown, maxBytes: number, rule: string, allowEmpty: boolean): string {
  if (typeof value !== 'string') {
    throw new InvalidLockOptionsError(
      `Invalid ${what}: expected ${rule}, got ${describeValue(value)} (${typeof value})`,
    );
  }
  if (value.length === 0 && !allowEmpty) {
    throw new InvalidLockOptionsError(`Invalid ${what}: expected ${rule}, got an empty string`);
  }
  if (value.includes('\u0000')) {
    throw new InvalidLockOptionsError(
      `Invalid ${what}: expected ${rule}, got ${describeValue(value)} with a NUL character`,
    );
  }
  if (!value.isWellFormed()) {
    throw new InvalidLockOptionsError(
      `Invalid ${what}: expected ${rule}, got ${describeValue(value)} with an unpaired surrogate (not valid Unicode)`,
    );
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: most keys are too short to need counting.
  const bytes = value.length * 3 <= maxBytes ? 0 : Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) {
    throw new InvalidLockOptionsError(
      `Invalid ${what}: expected ${rule}, got ${describeValue(value)} of ${bytes} bytes`,
    );
  }
  return value;
}

export function validateKey(key: unknown): string {
  return checkKeyText('lock key', key, MAX_KEY_BYTES, KEY_RULE, false);
}

export function validateKeyPrefix(prefix: unknown): string {
  return checkKeyText(
    'keyPrefix',
    prefix,
    MAX_KEY_PREFIX_BYTES,
    `a string of at most ${MAX_KEY_PREFIX_BYTES} UTF-8 bytes, without NUL characters or unpaired surrogates`,
    true,
  );
}

const METRIC_NAME_BYTES = 255;

/** A `metricName`: the `lock.name` of a call's metrics and span; a name of the call site, never an id. */
export function validateMetricName(name: unknown, where = 'metricName'): string {
  return checkKeyText(
    where,
    name,
    METRIC_NAME_BYTES,
    `a non-empty string of at most ${METRIC_NAME_BYTES} UTF-8 bytes, without NUL characters or unpaired surrogates (a name such as 'orders.pay', not a key with an id in it)`,
    false,
  );
}

const TELEMETRY_OPTIONS = ['metrics', 'traces', 'recordKey'] as const;

/** The module's `telemetry` option: a boolean, or an object of boolean flags. */
export function validateTelemetry(
  telemetry: unknown,
  where: string,
): boolean | Partial<Record<(typeof TELEMETRY_OPTIONS)[number], boolean>> | undefined {
  if (telemetry === undefined || typeof telemetry === 'boolean') return telemetry;
  const rule = `true, false or an object { ${TELEMETRY_OPTIONS.map((name) => `${name}?: boolean`).join(', ')} }`;
  const opts = validateOptionsObject(where, telemetry, TELEMETRY_OPTIONS, rule);
  for (const name of TELEMETRY_OPTIONS) {
    if (opts[name] !== undefined && typeof opts[name] !== 'boolean') {
      throw new InvalidLockOptionsError(
        `Invalid ${where}.${name}: expected a boolean, got ${describeValue(opts[name])}; allowed: ${rule}`,
      );
    }
  }
  return opts as Partial<Record<(typeof TELEMETRY_OPTIONS)[number], boolean>>;
}

export function validateTtl(ttl: unknown, where = 'ttl'): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TIMER_DELAY) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: expected an integer number of milliseconds from 1 to ${MAX_TIMER_DELAY} (2^31-1, the timer limit), got ${describeValue(ttl)}`,
    );
  }
  return ttl;
}

export function validateMinHold(minHold: unknown, where = 'minHold'): number {
  if (typeof minHold !== 'number' || !Number.isInteger(minHold) || minHold < 0 || minHold > MAX_TIMER_DELAY) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: expected an integer number of milliseconds from 0 to ${MAX_TIMER_DELAY} (2^31-1, the timer limit), got ${describeValue(minHold)}`,
    );
  }
  return minHold;
}

export function validateWait(wait: unknown, where = 'wait'): number {
  if (typeof wait !== 'number' || Number.isNaN(wait) || wait < 0) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: expected a number of milliseconds >= 0 (0 = one attempt, Infinity = no limit), got ${describeValue(wait)}`,
    );
  }
  return wait;
}

/** What a duration string may look like: `'30000'` (ms), `'500ms'`, `'30s'`, `'1.5m'`, `'1h'`. */
const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const DURATION_RULE =
  "or a string of digits with an optional unit ms, s, m or h, such as '30000', '500ms', '30s', '2m' or '1h'";

/**
 * A module-level duration in milliseconds. Numbers pass through unchanged; strings, as read from the
 * environment (`ConfigService.get` returns strings), are parsed: digits are milliseconds, and a unit
 * ms, s, m or h may follow; `'Infinity'` too when `allowInfinity`. The result is checked by the
 * caller exactly like a number given directly; a string that is no duration is an
 * InvalidLockOptionsError that names it and the forms allowed.
 */
export function parseDuration(value: unknown, where: string, allowInfinity: boolean): unknown {
  if (typeof value !== 'string') return value;
  if (allowInfinity && value === 'Infinity') return Number.POSITIVE_INFINITY;
  const match = DURATION_PATTERN.exec(value);
  if (match === null) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: expected a number of milliseconds ${DURATION_RULE}${allowInfinity ? ", or 'Infinity'" : ''}, got ${
        value.length === 0 ? 'an empty string' : describeValue(value)
      }`,
    );
  }
  return Number(match[1]) * DURATION_UNITS[match[2] ?? 'ms'];
}

/** `validateTtl` for a module option that may also be a duration string. */
export function validateTtlOption(ttl: unknown, where: string): number {
  const ms = parseDuration(ttl, where, false);
  return typeof ttl === 'string' ? fromString(ttl, () => validateTtl(ms, where)) : validateTtl(ms, where);
}

/** `validateWait` for a module option that may also be a duration string. */
export function validateWaitOption(wait: unknown, where: string): number {
  const ms = parseDuration(wait, where, true);
  return typeof wait === 'string' ? fromString(wait, () => validateWait(ms, where)) : validateWait(ms, where);
}

/** Runs a check on a value parsed from `text`; its error also names the string the value came from. */
function fromString(text: string, check: () => number): number {
  try {
    return check();
  } catch (error) {
    if (error instanceof InvalidLockOptionsError) {
      throw new InvalidLockOptionsError(`${error.message} (parsed from the string ${describeValue(text)})`);
    }
    throw error;
  }
}

/**
 * A call's `mode` and `limit` options, as the backend's lease mode: undefined for exclusive (the
 * default, `mode: 'exclusive'`), `{ kind: 'shared' }` for `mode: 'shared'`, `{ kind: 'limit' }` for
 * `limit: n`. `limit` with `mode: 'shared'` is refused: a limited key's holders are neither readers
 * nor writers.
 */
export function validateLeaseMode(mode: unknown, limit: unknown, where: string): LeaseMode | undefined {
  if (mode !== undefined && mode !== 'exclusive' && mode !== 'shared') {
    throw new InvalidLockOptionsError(
      `Invalid ${where} mode: expected 'exclusive' (the default: one holder) or 'shared' (any number of shared holders, never with an exclusive one), got ${describeValue(mode)}`,
    );
  }
  if (limit === undefined) return mode === 'shared' ? SHARED_MODE : undefined;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LOCK_LIMIT) {
    throw new InvalidLockOptionsError(
      `Invalid ${where} limit: expected an integer from 1 to ${MAX_LOCK_LIMIT} (the most holders of the key at once), got ${describeValue(limit)}`,
    );
  }
  if (mode !== undefined) {
    throw new InvalidLockOptionsError(
      `Invalid ${where} options: limit (${limit}) cannot be combined with mode '${mode}'; a limited key's holders share it up to the limit, so give one or the other`,
    );
  }
  return { kind: 'limit', limit };
}

const SHARED_MODE: LeaseMode = Object.freeze({ kind: 'shared' });

export function validateSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) {
    throw new InvalidLockOptionsError(
      `Invalid signal: expected an AbortSignal or undefined, got ${describeValue(signal)}`,
    );
  }
  return signal;
}

/**
 * Checks that `options` is undefined or a plain object whose keys are all in `allowed`. `expected`
 * describes the object in the message when it is not one (default: "an object with any of …").
 */
export function validateOptionsObject(
  where: string,
  options: unknown,
  allowed: readonly string[],
  expected = `an object with any of ${allowed.join(', ')}`,
): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidLockOptionsError(`Invalid ${where}: expected ${expected}, got ${describeValue(options)}`);
  }
  const unknown = Object.keys(options).filter((name) => !allowed.includes(name));
  if (unknown.length > 0) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: unknown option ${unknown.map((name) => `"${name}"`).join(', ')}; allowed: ${allowed.join(', ')}`,
    );
  }
  return options as Record<string, unknown>;
}

const TOKEN_PATTERN = /^[0-9a-f]{32}$/;

/** The fields of a guard, checked: key, a 32-hex-digit token and a bigint fence. */
export function validateGuardShape(guard: unknown): { key: string; token: string; fence: bigint } {
  const rule = 'a LockGuard returned by tryAcquire or acquire (key: string, token: 32 hex digits, fence: bigint)';
  if (guard === null || typeof guard !== 'object') {
    throw new InvalidLockOptionsError(`Invalid guard: expected ${rule}, got ${describeValue(guard)}`);
  }
  const { key, token, fence } = guard as Record<string, unknown>;
  if (typeof key !== 'string') {
    throw new InvalidLockOptionsError(`Invalid guard: expected ${rule}, but its key is ${describeValue(key)}`);
  }
  validateKey(key);
  if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) {
    throw new InvalidLockOptionsError(`Invalid guard: expected ${rule}, but its token is ${describeValue(token)}`);
  }
  if (typeof fence !== 'bigint') {
    throw new InvalidLockOptionsError(`Invalid guard: expected ${rule}, but its fence is ${describeValue(fence)}`);
  }
  return { key, token, fence };
}
