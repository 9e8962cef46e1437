import { MAX_KEY_BYTES, MAX_KEY_PREFIX_BYTES, MAX_TIMER_DELAY } from './lock.constants';
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
    throw new InvalidLockOptionsError(`Invalid ${what}: expected ${rule}, got ${describeValue(value)} (${typeof value})`);
  }
  if (value.length === 0 && !allowEmpty) {
    throw new InvalidLockOptionsError(`Invalid ${what}: expected ${rule}, got an empty string`);
  }
  if (value.includes('\u0000')) {
    throw new InvalidLockOptionsError(`Invalid ${what}: expected ${rule}, got ${describeValue(value)} with a NUL character`);
  }
  if (!value.isWellFormed()) {
    throw new InvalidLockOptionsError(
      `Invalid ${what}: expected ${rule}, got ${describeValue(value)} with an unpaired surrogate (not valid Unicode)`,
    );
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) {
    throw new InvalidLockOptionsError(`Invalid ${what}: expected ${rule}, got ${describeValue(value)} of ${bytes} bytes`);
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

export function validateSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) {
    throw new InvalidLockOptionsError(`Invalid signal: expected an AbortSignal or undefined, got ${describeValue(signal)}`);
  }
  return signal;
}

/** Checks that `options` is undefined or a plain object whose keys are all in `allowed`. */
export function validateOptionsObject(where: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidLockOptionsError(
      `Invalid ${where}: expected an object with any of ${allowed.join(', ')}, got ${describeValue(options)}`,
    );
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw new InvalidLockOptionsError(`Invalid ${where}: unknown option "${name}"; allowed: ${allowed.join(', ')}`);
    }
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
