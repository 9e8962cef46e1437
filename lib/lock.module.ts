import { Inject, Logger, Module, type DynamicModule, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { LOCK_BACKEND, type LockBackend } from './backends/lock-backend';
import { memoryBackend } from './backends/memory/memory-lock.backend';
import { DistributedLock } from './distributed-lock';
import { DistributedLockService } from './distributed-lock.service';
import { LockErrorFilter } from './lock-error.filter';
import { errorText } from './lock.errors';
import type { LockModuleOptions } from './lock-module-options';
import { resolveModuleSettings, validateModuleOptions } from './lock-module-settings';
import {
  ConfigurableLockModule,
  LOCK_MODULE_ASYNC_OPTIONS_TYPE,
  LOCK_MODULE_OPTIONS,
  LOCK_MODULE_OPTIONS_TYPE,
} from './lock.module-definition';

/**
 * `LockModule.forRoot({ backend, keyPrefix, ttl, wait, isGlobal })` or `LockModule.forRootAsync(...)`.
 * Provides `DistributedLock` (inject it by type) and answers 409/503 for lock errors in HTTP handlers.
 * On application shutdown it stops the watchdogs, releases what this process holds and closes the
 * backend (which closes only the connections it opened itself).
 */
@Module({
  providers: [
    {
      provide: LOCK_BACKEND,
      useFactory: (options: LockModuleOptions | undefined): LockBackend => options?.backend ?? memoryBackend(),
      inject: [LOCK_MODULE_OPTIONS],
    },
    {
      provide: DistributedLock,
      useFactory: async (options: unknown, backend: LockBackend): Promise<DistributedLock> => {
        try {
          return new DistributedLockService(resolveModuleSettings(options, backend));
        } catch (error) {
          await backend.close().catch(() => undefined);
          throw error;
        }
      },
      inject: [LOCK_MODULE_OPTIONS, LOCK_BACKEND],
    },
    { provide: APP_FILTER, useClass: LockErrorFilter },
  ],
  exports: [DistributedLock, LOCK_BACKEND],
})
export class LockModule extends ConfigurableLockModule implements OnApplicationBootstrap, OnApplicationShutdown {
  constructor(
    private readonly locks: DistributedLock,
    @Inject(LOCK_BACKEND) private readonly backend: LockBackend,
  ) {
    super();
  }

  /**
   * Checks the backend once at start, without holding the start up: a backend that does not
   * answer is logged as a warning (lock calls then fail with LockBackendError until it answers).
   */
  onApplicationBootstrap(): void {
    this.backend.ping().catch((error: unknown) => {
      new Logger('DistributedLock').warn(
        `Lock backend ${this.backend.name} does not answer yet: ${errorText(error)}`,
      );
    });
  }

  static forRoot(options: typeof LOCK_MODULE_OPTIONS_TYPE = {}): DynamicModule {
    validateModuleOptions(options, 'LockModule.forRoot');
    return { ...super.forRoot(options), global: options.isGlobal === true };
  }

  /** `isGlobal` is honoured here too (the builder's extras alone would drop it for the async variant). */
  static forRootAsync(options: typeof LOCK_MODULE_ASYNC_OPTIONS_TYPE): DynamicModule {
    return { ...super.forRootAsync(options), global: options.isGlobal === true };
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.locks instanceof DistributedLockService) await this.locks.shutdown();
  }
}
