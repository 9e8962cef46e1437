import { Injectable, Logger, Module, type INestApplicationContext } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import {
  DistributedLock,
  InvalidLockOptionsError,
  LOCK_BACKEND,
  LockBackend,
  LockErrorFilter,
  LockLostError,
  LockModule,
  LockTimeoutError,
  memoryBackend,
  WithLock,
  type LockModuleOptions,
  type LockOptionsFactory,
} from '../../lib';
import { driftMargin } from '../../lib/lock.constants';
import { toEpochMs } from '../../lib/lock-clock';
import { LOCK_MODULE_OPTIONS } from '../../lib/lock.module-definition';
import { LatencyBackend } from '../../lib/testing/latency-backend';
import { RecordingBackend } from '../support/recording-backend';

/**
 * A guard of a lease of `ttl` whose attempt started no earlier than `before` (epoch ms on the
 * service's clock): it ends no later than `ttl` after it was handed out, and no earlier than `ttl`
 * less the drift margin after `before`, however long the attempt took.
 */
function expectLeaseOf(guard: { acquiredAt: number; expiresAt: number }, ttl: number, before: number): void {
  expect(guard.expiresAt - guard.acquiredAt).toBeLessThanOrEqual(ttl);
  expect(guard.expiresAt).toBeGreaterThanOrEqual(before + ttl - driftMargin(ttl));
}

@Injectable()
class OrderService {
  constructor(readonly locks: DistributedLock) {}
}

/** Injects the backend by its type, as a provider of a user's app would (no @Inject). */
@Injectable()
class BackendHealth {
  constructor(readonly backend: LockBackend) {}
}

@Injectable()
class LockSettings implements LockOptionsFactory {
  createLockOptions(): LockModuleOptions {
    return { keyPrefix: 'from-class:' };
  }
}

@Module({ providers: [LockSettings], exports: [LockSettings] })
class SettingsModule {}

/** A feature module that does not import LockModule: it sees DistributedLock only when global. */
@Module({ providers: [OrderService], exports: [OrderService] })
class FeatureModule {}

async function boot(imports: unknown[]): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule({ imports: imports as never[] }).compile();
  return moduleRef.init();
}

describe('LockModule', () => {
  it('provides DistributedLock on the memory backend by default, injected by type', async () => {
    @Module({ imports: [LockModule.forRoot()], providers: [OrderService] })
    class AppModule {}
    const app = await boot([AppModule]);
    const locks = app.get(OrderService).locks;
    expect(locks).toBeInstanceOf(DistributedLock);
    expect(app.get(LOCK_BACKEND).name).toBe('memory');
    const guard = await locks.tryAcquire('order:1');
    expect(guard?.key).toBe('order:1');
    await app.close();
  });

  it('applies keyPrefix, ttl and wait from forRoot', async () => {
    const backend = new RecordingBackend(memoryBackend());
    const app = await boot([LockModule.forRoot({ backend, keyPrefix: 'shop:', ttl: 1_234, wait: 0 })]);
    const locks = app.get(DistributedLock);
    const before = toEpochMs(performance.now());
    const guard = (await locks.tryAcquire('cart'))!;
    expect(backend.calls[0]).toMatchObject({ method: 'tryAcquire', key: 'shop:cart' });
    expectLeaseOf(guard, 1_234, before);
    await expect(locks.acquire('cart')).rejects.toThrow(/not acquired within 0 ms/);
    await app.close();
  });

  it('names the wait the caller asked for in the busy message, however long the backend took to answer', async () => {
    // Every call takes 10 ms in and 10 ms out: one attempt with wait 0 takes about 20 ms.
    const backend = new LatencyBackend(memoryBackend(), () => 1);
    const app = await boot([LockModule.forRoot({ backend, wait: 0 })]);
    const locks = app.get(DistributedLock);
    await locks.tryAcquire('slow');
    backend.maxDelay = 10;
    const busy = await locks.acquire('slow').catch((error: unknown) => error);
    expect(busy).toBeInstanceOf(LockTimeoutError);
    expect((busy as LockTimeoutError).message).toBe('Lock "slow" is busy: not acquired within 0 ms');
    expect((busy as LockTimeoutError).wait).toBe(0);
    expect((busy as LockTimeoutError).waited).toBeGreaterThanOrEqual(15);
    backend.maxDelay = 0;
    await app.close();
  });

  it.each([
    ['forRoot', () => LockModule.forRoot({ isGlobal: true })],
    ['forRootAsync + useFactory', () => LockModule.forRootAsync({ isGlobal: true, useFactory: () => ({}) })],
  ])('is global with isGlobal through %s', async (_name, lockModule) => {
    const app = await boot([lockModule(), FeatureModule]);
    expect(app.get(OrderService).locks).toBeInstanceOf(DistributedLock);
    await app.close();
  });

  it('is not global without isGlobal', async () => {
    await expect(boot([LockModule.forRootAsync({ useFactory: () => ({}) }), FeatureModule])).rejects.toThrow(
      /OrderService/,
    );
  });

  it('injects the backend by its type, LockBackend, which is also the LOCK_BACKEND token', async () => {
    const backend = memoryBackend();
    @Module({ imports: [LockModule.forRoot({ backend })], providers: [BackendHealth] })
    class AppModule {}
    const app = await boot([AppModule]);
    expect(app.get(BackendHealth).backend).toBe(backend);
    expect(app.get(LOCK_BACKEND)).toBe(backend);
    await app.close();
  });

  it('takes ttl and wait as strings, as a factory reads them from the environment', async () => {
    const env: Record<string, string> = { LOCK_TTL: '30000', LOCK_WAIT: '250ms' };
    const app = await boot([
      LockModule.forRootAsync({ useFactory: () => ({ ttl: env.LOCK_TTL, wait: env.LOCK_WAIT }) }),
    ]);
    const locks = app.get(DistributedLock);
    const before = toEpochMs(performance.now());
    const guard = (await locks.tryAcquire('env'))!;
    expectLeaseOf(guard, 30_000, before);
    // The wait was 250 ms: a busy key gives up after it (not after the 5 s default).
    const timeout = await locks.acquire('env').catch((error: unknown) => error);
    expect(timeout).toBeInstanceOf(LockTimeoutError);
    expect((timeout as LockTimeoutError).waited).toBeGreaterThanOrEqual(250);
    expect((timeout as LockTimeoutError).wait).toBe(250); // not the default wait
    await app.close();

    for (const [ttl, ms] of [
      ['2s', 2_000],
      ['1.5m', 90_000],
      ['1h', 3_600_000],
      ['750ms', 750],
    ] as const) {
      const other = await boot([LockModule.forRoot({ ttl, wait: 'Infinity' })]);
      const startedFrom = toEpochMs(performance.now());
      const held = (await other.get(DistributedLock).tryAcquire('unit'))!;
      expectLeaseOf(held, ms, startedFrom);
      await other.close();
    }
  });

  it('takes options from an injected factory, a class or an existing provider', async () => {
    const fromFactory = await boot([
      LockModule.forRootAsync({
        imports: [SettingsModule],
        inject: [LockSettings],
        useFactory: (settings: LockSettings) => ({ ...settings.createLockOptions(), keyPrefix: 'from-factory:' }),
      }),
    ]);
    const fromClass = await boot([LockModule.forRootAsync({ imports: [SettingsModule], useClass: LockSettings })]);
    const fromExisting = await boot([
      LockModule.forRootAsync({ imports: [SettingsModule], useExisting: LockSettings }),
    ]);
    for (const [app, prefix] of [
      [fromFactory, 'from-factory:'],
      [fromClass, 'from-class:'],
      [fromExisting, 'from-class:'],
    ] as const) {
      const backend = app.get(LOCK_BACKEND);
      const locks = app.get(DistributedLock);
      const guard = (await locks.tryAcquire('k'))!;
      // The key reached the backend with the configured prefix.
      expect(await backend.extend(`${prefix}k`, guard.token, 1_000)).toBe(true);
      await app.close();
    }
  });

  it('releases what it holds, aborts running work and closes the backend at shutdown', async () => {
    const backend = new RecordingBackend(memoryBackend());
    const app = await boot([LockModule.forRoot({ backend })]);
    const locks = app.get(DistributedLock);
    const guard = (await locks.tryAcquire('held'))!;
    let signal: AbortSignal | undefined;
    let markRunning!: () => void;
    const running = new Promise<void>((resolve) => (markRunning = resolve));
    const work = locks.withLock('working', async (held) => {
      signal = held.signal;
      markRunning();
      await new Promise((resolve) => held.signal.addEventListener('abort', resolve, { once: true }));
    });
    await running;
    const closeSpy = jest.spyOn(backend, 'close');
    await app.close();
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(LockLostError);
    await expect(work).rejects.toBeInstanceOf(LockLostError);
    const released = backend.calls.filter((c) => c.method === 'release').map((c) => c.token);
    expect(released).toEqual(expect.arrayContaining([guard.token]));
    expect(released).toHaveLength(2);
    expect(closeSpy).toHaveBeenCalledTimes(1);
  });

  it('refuses at start a @WithLock that asks its backend for a mode it does not keep, naming the methods, and closes the backend', async () => {
    @Injectable()
    class Renders {
      @WithLock('pdf-render', { limit: 4 })
      async render() {
        return 1;
      }

      @WithLock('catalog', { mode: 'shared' })
      async read() {
        return 2;
      }

      @WithLock('catalog')
      async rebuild() {
        return 3;
      }
    }
    // A backend that keeps exclusive locks only, as a third party's (or the Redis quorum) does.
    const exclusiveOnly = (): LockBackend =>
      Object.assign(memoryBackend(), { capabilities: { fifo: true, fencing: 'strict', modes: [] } }) as LockBackend;
    const backend = exclusiveOnly();
    @Module({ imports: [LockModule.forRoot({ backend })], providers: [Renders] })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    let failure: unknown;
    try {
      await moduleRef.init();
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(InvalidLockOptionsError);
    expect((failure as Error).message).toBe(
      'The memory backend keeps exclusive locks only, and @WithLock asks for more on Renders.render (limit 4), ' +
        "Renders.read (mode 'shared'): use a backend that keeps that mode (memory, Redis, PostgreSQL), or drop the option",
    );
    // The backend was closed: nothing stays open.
    await expect(backend.ping()).rejects.toThrow(/closed/);
    // Nest's close of a context whose init failed rejects with that failure.
    await expect(moduleRef.close()).rejects.toBeInstanceOf(InvalidLockOptionsError);

    // The same methods on a backend that keeps both modes start, and run.
    @Module({ imports: [LockModule.forRoot()], providers: [Renders] })
    class FullModule {}
    const app = await boot([FullModule]);
    expect(await app.get(Renders).render()).toBe(1);
    expect(await app.get(Renders).read()).toBe(2);
    await app.close();
  });

  it('warns at start when the backend does not answer, without failing the start', async () => {
    const backend = new RecordingBackend(memoryBackend());
    backend.fail.add('ping');
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot({ backend })] }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      await app.init();
      await new Promise((resolve) => setImmediate(resolve));
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(/^Lock backend memory does not answer yet: injected failure: ping/),
      );
      await app.close();
    } finally {
      warn.mockRestore();
    }
  });

  it.each([
    ['forRoot', (errorFilters?: boolean) => LockModule.forRoot(errorFilters === undefined ? {} : { errorFilters })],
    [
      'forRootAsync',
      (errorFilters?: boolean) =>
        LockModule.forRootAsync({ ...(errorFilters === undefined ? {} : { errorFilters }), useFactory: () => ({}) }),
    ],
  ])('registers LockErrorFilter for the app through %s unless errorFilters is false', (_name, lockModule) => {
    const filterProviders = (definition: ReturnType<typeof lockModule>) =>
      (definition.providers ?? []).filter((p) => typeof p === 'object' && 'provide' in p && p.provide === APP_FILTER);
    expect(filterProviders(lockModule())).toEqual([{ provide: APP_FILTER, useClass: LockErrorFilter }]);
    expect(filterProviders(lockModule(true))).toHaveLength(1);
    expect(filterProviders(lockModule(false))).toEqual([]);
  });

  it('keeps isGlobal and errorFilters out of the options the service is made from', async () => {
    const definition = LockModule.forRoot({ keyPrefix: 'p:', isGlobal: true, errorFilters: false });
    const options = (definition.providers ?? []).find(
      (p) => typeof p === 'object' && 'provide' in p && p.provide === LOCK_MODULE_OPTIONS,
    );
    expect(options).toEqual({ provide: LOCK_MODULE_OPTIONS, useValue: { keyPrefix: 'p:' } });
    const app = await boot([definition]);
    expect((await app.get(DistributedLock).tryAcquire('k'))?.key).toBe('k');
    await app.close();
  });

  describe('bad options', () => {
    it.each([
      [{ ttl: 0 }, /Invalid LockModule\.forRoot ttl: expected an integer number of milliseconds from 1 to 2147483647/],
      [{ ttl: 2 ** 31 }, /from 1 to 2147483647 \(2\^31-1, the timer limit\), got 2147483648/],
      [{ wait: -5 }, /Invalid LockModule\.forRoot wait: expected a number of milliseconds >= 0/],
      [{ keyPrefix: 42 }, /Invalid keyPrefix: expected a string of at most 256 UTF-8 bytes/],
      [{ backend: {} }, /Invalid LockModule\.forRoot backend: expected a LockBackend .*missing name, tryAcquire/],
      [{ isGlobal: 'yes' }, /Invalid LockModule\.forRoot isGlobal: expected a boolean, got "yes"/],
      [{ errorFilters: 'off' }, /Invalid LockModule\.forRoot errorFilters: expected a boolean, got "off"/],
      [{ errorFilters: 0 }, /Invalid LockModule\.forRoot errorFilters: expected a boolean, got 0/],
      [
        { timeout: 5 },
        /unknown option "timeout"; allowed: backend, keyPrefix, ttl, wait, telemetry, isGlobal, errorFilters$/,
      ],
      ['redis://localhost', /Invalid LockModule\.forRoot options: expected an object/],
      [
        { ttl: '30x' },
        /Invalid LockModule\.forRoot ttl: expected a number of milliseconds or a string of digits with an optional unit ms, s, m or h, .* got "30x"/,
      ],
      [{ ttl: '' }, /Invalid LockModule\.forRoot ttl: .* got an empty string/],
      [{ ttl: ' 30s' }, /Invalid LockModule\.forRoot ttl: .* got " 30s"/],
      [{ ttl: '-5' }, /Invalid LockModule\.forRoot ttl: .* got "-5"/],
      [{ ttl: 'Infinity' }, /Invalid LockModule\.forRoot ttl: .* got "Infinity"/],
      [{ ttl: '0.5' }, /from 1 to 2147483647 \(2\^31-1, the timer limit\), got 0\.5 \(parsed from the string "0\.5"\)/],
      [{ ttl: '1000h' }, /got 3600000000 \(parsed from the string "1000h"\)/],
      [{ wait: '5 s' }, /Invalid LockModule\.forRoot wait: .* or 'Infinity', got "5 s"/],
    ])('forRoot(%p) throws InvalidLockOptionsError', (options, message) => {
      expect(() => LockModule.forRoot(options as never)).toThrow(InvalidLockOptionsError);
      expect(() => LockModule.forRoot(options as never)).toThrow(message);
    });

    it.each([
      [{ errorFilters: 'no' }, /Invalid LockModule\.forRootAsync errorFilters: expected a boolean, got "no"/],
      [{ isGlobal: 1 }, /Invalid LockModule\.forRootAsync isGlobal: expected a boolean, got 1/],
      [undefined, /Invalid LockModule\.forRootAsync options: expected an object, got undefined/],
    ])('forRootAsync(%p) throws InvalidLockOptionsError', (extras, message) => {
      const define = () =>
        LockModule.forRootAsync(
          extras === undefined ? (undefined as never) : { ...(extras as object), useFactory: () => ({}) },
        );
      expect(define).toThrow(InvalidLockOptionsError);
      expect(define).toThrow(message);
    });

    it('forRootAsync rejects errorFilters returned by the factory at bootstrap, saying where it belongs', async () => {
      await expect(
        boot([LockModule.forRootAsync({ useFactory: () => ({ errorFilters: false }) as never })]),
      ).rejects.toThrow(
        /Invalid LockModule errorFilters from the options factory: .* give it to LockModule\.forRootAsync\(\{ errorFilters, useFactory \}\) beside the factory/,
      );
    });

    it('forRootAsync rejects a ttl string that is no duration at bootstrap, naming it', async () => {
      await expect(boot([LockModule.forRootAsync({ useFactory: () => ({ ttl: '30 seconds' }) })])).rejects.toThrow(
        /Invalid LockModule ttl: expected a number of milliseconds or a string .* got "30 seconds"/,
      );
    });

    it('forRoot closes the backend it was given when the other options are wrong', () => {
      const backend = memoryBackend();
      expect(() => LockModule.forRoot({ backend, ttl: -1 })).toThrow(InvalidLockOptionsError);
      return expect(backend.ping()).rejects.toThrow(/closed/);
    });

    it('forRootAsync rejects at bootstrap, naming the bad option, and closes the backend', async () => {
      const backend = memoryBackend();
      await expect(
        boot([LockModule.forRootAsync({ useFactory: () => ({ backend, wait: Number.NaN }) })]),
      ).rejects.toThrow(/Invalid LockModule wait: expected a number of milliseconds >= 0 .* got NaN/);
      await expect(backend.ping()).rejects.toThrow(/closed/);
    });
  });
});
