import { Inject, Logger, Optional } from '@nestjs/common';
import { PROPERTY_DEPS_METADATA } from '@nestjs/common/constants';
import { DistributedLock } from '../distributed-lock';
import { LOCK_SERVICE_PROPERTY, SKIP_WHEN_BUSY, WITH_LOCK_METADATA } from '../lock.constants';
import { errorText, InvalidLockOptionsError, LockTimeoutError } from '../lock.errors';
import {
  describeValue,
  validateKey,
  validateLeaseMode,
  validateMetricName,
  validateMinHold,
  validateOptionsObject,
  validateTtl,
  validateWait,
} from '../lock.validation';
import { precheckOptions, WITH_LOCK_OPTIONS } from '../lock-call-options';
import { isKeyList, readKeyList } from '../multi-key-lock';

/**
 * The key of a `@WithLock` method: a string, a list of keys (a multi-key lock: all of them, taken in
 * sorted order), or a function of the method's arguments returning either (`this` is the instance).
 */
export type LockKey<TArgs extends unknown[] = any[]> =
  string | readonly string[] | ((this: any, ...args: TArgs) => string | readonly string[]);

export interface WithLockDecoratorOptions {
  /** Lease length in ms. Defaults to the module's `ttl`. */
  ttl?: number;
  /** How long to wait for a busy lock, in ms. Defaults to the module's `wait`. */
  wait?: number;
  /**
   * What happens when the lock is still busy after `wait`: `'throw'` (default) raises
   * `LockTimeoutError` (409 in HTTP handlers); `'skip'` returns `undefined` without running the
   * method, the usual choice for `@Cron` jobs that only one instance should run.
   */
  onBusy?: 'throw' | 'skip';
  /**
   * Keep the lease at least this long after the method started, in ms (see `WithLockOptions.minHold`):
   * with `@Cron` on several instances, set it below the cron interval and above the clock skew and
   * lag between instances, so that an instance firing a little later finds the key busy and skips.
   */
  minHold?: number;
  /**
   * The `lock.name` of the method's metrics and span (OpenTelemetry). Default `'Class.method'`, the
   * class and method decorated: one name per call site, whatever the key.
   */
  metricName?: string;
  /** `'shared'` for readers; `'exclusive'` (the default) for writers. See `WithLockOptions.mode`. */
  mode?: 'exclusive' | 'shared';
  /** At most this many holders at once across the fleet. See `WithLockOptions.limit`. */
  limit?: number;
}

export interface WithLockMetadata extends WithLockDecoratorOptions {
  key: LockKey;
}

type AnyKeyWithLock = (key: string | readonly string[], fn: () => unknown, options: object) => Promise<unknown>;

const OPTION_NAMES = ['ttl', 'wait', 'onBusy', 'minHold', 'metricName', 'mode', 'limit'] as const;
const logger = new Logger('DistributedLock');

/**
 * Runs the method under a distributed lock: acquired before, extended while it runs, released
 * after; the method becomes async. Reentrant: a locked method calling another method locked on the
 * same key runs it inside the same hold. `currentLock()` gives the method the fence and signal.
 *
 * Put it above or below `@Get`, `@Post`, `@Cron`, `@OnEvent` and the like: their metadata is kept.
 * The class must be a Nest provider or controller in a module that can see `DistributedLock`
 * (import `LockModule`, or make it global).
 *
 * @example
 * \@WithLock((id: string) => `order:${id}`, { wait: 0 })
 * async pay(id: string) { ... }
 * \@Cron('0 3 * * *') \@WithLock('nightly-report', { wait: 0, onBusy: 'skip', minHold: 60_000 })
 * async report() { ... }
 */
export function WithLock(key: LockKey, options?: WithLockDecoratorOptions): MethodDecorator;
export function WithLock(options: WithLockMetadata): MethodDecorator;
export function WithLock(
  keyOrOptions: LockKey | WithLockMetadata,
  options?: WithLockDecoratorOptions,
): MethodDecorator {
  const metadata = readDecoratorOptions(keyOrOptions, options);
  return (target, propertyKey, descriptor) => {
    const original = descriptor.value as unknown;
    if (typeof original !== 'function') {
      throw new InvalidLockOptionsError(
        `@WithLock can only decorate methods: ${String(propertyKey)} is ${describeValue(original)}`,
      );
    }
    injectLockService(target);
    const className = target.constructor?.name ?? 'the class';
    const lockOptions = precheckOptions(
      'withLock',
      {
        ...(metadata.ttl === undefined ? {} : { ttl: metadata.ttl }),
        ...(metadata.wait === undefined ? {} : { wait: metadata.wait }),
        ...(metadata.minHold === undefined ? {} : { minHold: metadata.minHold }),
        metricName: metadata.metricName ?? `${className}.${String(propertyKey)}`,
        ...(metadata.mode === undefined ? {} : { mode: metadata.mode }),
        ...(metadata.limit === undefined ? {} : { limit: metadata.limit }),
        // A busy key is a skipped run, as the service's telemetry then records it.
        ...(metadata.onBusy === 'skip' ? { [SKIP_WHEN_BUSY]: true } : {}),
      },
      WITH_LOCK_OPTIONS,
    );

    const skipWhenBusy = metadata.onBusy === 'skip';
    // Not an async function: the method's promise is the one withLock returns, with no layer of its own.
    const wrapped = function (this: Record<PropertyKey, unknown>, ...args: unknown[]): Promise<unknown> {
      const locks = this?.[LOCK_SERVICE_PROPERTY];
      if (!(locks instanceof DistributedLock)) {
        return Promise.reject(
          new InvalidLockOptionsError(
            `@WithLock on ${className}.${String(propertyKey)} has no DistributedLock: import LockModule.forRoot(...) ` +
              `in the module that provides ${className} (or once with isGlobal: true), and let Nest create ${className} ` +
              `(a provider or controller, not "new ${className}()")`,
          ),
        );
      }
      let key: string | readonly string[];
      try {
        key = resolveKey(metadata.key, this, args, className, propertyKey);
      } catch (error) {
        return Promise.reject(error as Error);
      }
      // One call for a key and for a list of keys: the service tells them apart.
      const withLock = locks.withLock as AnyKeyWithLock;
      if (!skipWhenBusy)
        return withLock.call(
          locks,
          key,
          () => (original as (...a: unknown[]) => unknown).apply(this, args),
          lockOptions,
        );
      let started = false;
      return withLock
        .call(
          locks,
          key,
          () => {
            started = true;
            return (original as (...a: unknown[]) => unknown).apply(this, args);
          },
          lockOptions,
        )
        .catch((error: unknown) => {
          if (!started && error instanceof LockTimeoutError) {
            logger.debug(`${className}.${String(propertyKey)} skipped: lock "${error.key}" is busy`);
            return undefined;
          }
          throw error;
        });
    };
    Object.defineProperty(wrapped, 'name', { value: (original as { name: string }).name });
    // Decorators applied before this one (below it in the source) stored their metadata on the
    // original function; copy it so routes, @Cron and @OnEvent keep working.
    for (const metadataKey of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, original), wrapped);
    }
    Reflect.defineMetadata(WITH_LOCK_METADATA, metadata, wrapped);
    descriptor.value = wrapped as typeof descriptor.value;
    return descriptor;
  };
}

function readDecoratorOptions(keyOrOptions: unknown, options: unknown): WithLockMetadata {
  let key: unknown;
  let opts: Record<string, unknown>;
  if (typeof keyOrOptions === 'string' || typeof keyOrOptions === 'function' || Array.isArray(keyOrOptions)) {
    key = keyOrOptions;
    opts = validateOptionsObject('@WithLock options', options, OPTION_NAMES);
  } else if (keyOrOptions !== null && typeof keyOrOptions === 'object' && !Array.isArray(keyOrOptions)) {
    if (options !== undefined) {
      throw new InvalidLockOptionsError(
        'Invalid @WithLock call: pass either (key, options) or ({ key, ...options }), not both',
      );
    }
    const { key: k, ...rest } = keyOrOptions as Record<string, unknown>;
    key = k;
    opts = validateOptionsObject('@WithLock options', rest, OPTION_NAMES);
  } else {
    throw new InvalidLockOptionsError(
      `Invalid @WithLock key: expected a string, a function of the method's arguments, or { key, ttl?, wait?, onBusy?, minHold?, metricName?, mode?, limit? }, got ${describeValue(keyOrOptions)}`,
    );
  }
  if (typeof key === 'string') validateKey(key);
  else if (isKeyList(key)) key = readKeyList('@WithLock', key);
  else if (typeof key !== 'function') {
    throw new InvalidLockOptionsError(
      `Invalid @WithLock key: expected a string, a list of keys or a function of the method's arguments, got ${describeValue(key)}`,
    );
  }
  if (opts.ttl !== undefined) validateTtl(opts.ttl, '@WithLock ttl');
  if (opts.wait !== undefined) validateWait(opts.wait, '@WithLock wait');
  if (opts.minHold !== undefined) validateMinHold(opts.minHold, '@WithLock minHold');
  if (opts.metricName !== undefined) validateMetricName(opts.metricName, '@WithLock metricName');
  validateLeaseMode(opts.mode, opts.limit, '@WithLock');
  if (opts.onBusy !== undefined && opts.onBusy !== 'throw' && opts.onBusy !== 'skip') {
    throw new InvalidLockOptionsError(
      `Invalid @WithLock onBusy: expected 'throw' or 'skip', got ${describeValue(opts.onBusy)}`,
    );
  }
  return {
    key: key as LockKey,
    ttl: opts.ttl as number | undefined,
    wait: opts.wait as number | undefined,
    onBusy: (opts.onBusy as 'throw' | 'skip' | undefined) ?? 'throw',
    minHold: opts.minHold as number | undefined,
    metricName: opts.metricName as string | undefined,
    mode: opts.mode as 'exclusive' | 'shared' | undefined,
    limit: opts.limit as number | undefined,
  };
}

function resolveKey(
  key: LockKey,
  self: unknown,
  args: unknown[],
  className: string,
  method: PropertyKey,
): string | readonly string[] {
  if (typeof key !== 'function') return key;
  let value: unknown;
  try {
    value = key.apply(self, args);
  } catch (error) {
    throw new InvalidLockOptionsError(
      `Invalid @WithLock key on ${className}.${String(method)}: the key function threw: ${errorText(error)}`,
      { cause: error },
    );
  }
  if (isKeyList(value)) {
    try {
      return readKeyList('withLock', value);
    } catch (error) {
      throw new InvalidLockOptionsError(
        `Invalid @WithLock key on ${className}.${String(method)}: the key function returned a bad list: ${errorText(error)}`,
        { cause: error },
      );
    }
  }
  if (typeof value !== 'string') {
    throw new InvalidLockOptionsError(
      `Invalid @WithLock key on ${className}.${String(method)}: the key function must return a string or a list of keys, it returned ${describeValue(value)}`,
    );
  }
  return validateKey(value);
}

/** Has Nest inject `DistributedLock` into a hidden property of the class, optionally, once per class. */
function injectLockService(prototype: object): void {
  const ctor = prototype.constructor;
  const deps = (Reflect.getMetadata(PROPERTY_DEPS_METADATA, ctor) ?? []) as Array<{ key: PropertyKey }>;
  if (deps.some((dep) => dep.key === LOCK_SERVICE_PROPERTY)) return;
  Inject(DistributedLock)(prototype, LOCK_SERVICE_PROPERTY);
  Optional()(prototype, LOCK_SERVICE_PROPERTY);
}
