import { Injectable, Logger, Module, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  DistributedLock,
  InvalidLockOptionsError,
  LOCK_BACKEND,
  LockLostError,
  LockModule,
  memoryBackend,
  type LockModuleOptions,
  type LockOptionsFactory,
} from '../../lib';
import { RecordingBackend } from '../support/recording-backend';

@Injectable()
class OrderService {
  constructor(readonly locks: DistributedLock) {}
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
    const guard = (await locks.tryAcquire('cart'))!;
    expect(backend.calls[0]).toMatchObject({ method: 'tryAcquire', key: 'shop:cart' });
    expect(guard.expiresAt - guard.acquiredAt).toBeLessThanOrEqual(1_234);
    expect(guard.expiresAt - guard.acquiredAt).toBeGreaterThan(1_100);
    await expect(locks.acquire('cart')).rejects.toThrow(/not acquired within 0 ms/);
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

  it('takes options from an injected factory, a class or an existing provider', async () => {
    const fromFactory = await boot([
      LockModule.forRootAsync({
        imports: [SettingsModule],
        inject: [LockSettings],
        useFactory: (settings: LockSettings) => ({ ...settings.createLockOptions(), keyPrefix: 'from-factory:' }),
      }),
    ]);
    const fromClass = await boot([LockModule.forRootAsync({ imports: [SettingsModule], useClass: LockSettings })]);
    const fromExisting = await boot([LockModule.forRootAsync({ imports: [SettingsModule], useExisting: LockSettings })]);
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

  it('warns at start when the backend does not answer, without failing the start', async () => {
    const backend = new RecordingBackend(memoryBackend());
    backend.fail.add('ping');
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot({ backend })] }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      await app.init();
      await new Promise((resolve) => setImmediate(resolve));
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/^Lock backend memory does not answer yet: injected failure: ping/));
      await app.close();
    } finally {
      warn.mockRestore();
    }
  });

  describe('bad options', () => {
    it.each([
      [{ ttl: 0 }, /Invalid LockModule\.forRoot ttl: expected an integer number of milliseconds from 1 to 2147483647/],
      [{ ttl: 2 ** 31 }, /from 1 to 2147483647 \(2\^31-1, the timer limit\), got 2147483648/],
      [{ wait: -5 }, /Invalid LockModule\.forRoot wait: expected a number of milliseconds >= 0/],
      [{ keyPrefix: 42 }, /Invalid keyPrefix: expected a string of at most 256 UTF-8 bytes/],
      [{ backend: {} }, /Invalid LockModule\.forRoot backend: expected a LockBackend .*missing name, tryAcquire/],
      [{ isGlobal: 'yes' }, /Invalid LockModule\.forRoot isGlobal: expected a boolean, got "yes"/],
      [{ timeout: 5 }, /unknown option "timeout"; allowed: backend, keyPrefix, ttl, wait, isGlobal/],
      ['redis://localhost', /Invalid LockModule\.forRoot options: expected an object/],
    ])('forRoot(%p) throws InvalidLockOptionsError', (options, message) => {
      expect(() => LockModule.forRoot(options as never)).toThrow(InvalidLockOptionsError);
      expect(() => LockModule.forRoot(options as never)).toThrow(message);
    });

    it('forRoot closes the backend it was given when the other options are wrong', () => {
      const backend = memoryBackend();
      expect(() => LockModule.forRoot({ backend, ttl: -1 })).toThrow(InvalidLockOptionsError);
      return expect(backend.ping()).rejects.toThrow(/closed/);
    });

    it('forRootAsync rejects at bootstrap, naming the bad option, and closes the backend', async () => {
      const backend = memoryBackend();
      await expect(boot([LockModule.forRootAsync({ useFactory: () => ({ backend, wait: Number.NaN }) })])).rejects.toThrow(
        /Invalid LockModule wait: expected a number of milliseconds >= 0 .* got NaN/,
      );
      await expect(backend.ping()).rejects.toThrow(/closed/);
    });
  });
});
