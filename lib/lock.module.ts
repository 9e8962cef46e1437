import {
  Inject,
  Logger,
  Module,
  type DynamicModule,
  type OnApplicationBootstrap,
  type OnModuleInit,
  type Provider,
} from '@nestjs/common';
import { APP_FILTER, DiscoveryModule, DiscoveryService, MetadataScanner } from '@nestjs/core';
import { LOCK_BACKEND, type LockBackend } from './backends/lock-backend';
import { memoryBackend } from './backends/memory/memory-lock.backend';
import { DistributedLock } from './distributed-lock';
import { DistributedLockService } from './distributed-lock.service';
import { LockErrorFilter } from './filters/lock-error.filter';
import { LockGatewayFilters } from './filters/lock-gateway-filters';
import { errorText } from './lock.errors';
import { unsupportedModeUses } from './mode-support.check';
import type { LockModuleOptions } from './lock-module-options';
import {
  CHECKED_OPTIONS,
  resolveModuleSettings,
  validateModuleOptions,
  validateStaticModuleOptions,
} from './lock-module-settings';
import {
  ConfigurableLockModule,
  LOCK_MODULE_ASYNC_OPTIONS_TYPE,
  LOCK_MODULE_OPTIONS,
  LOCK_MODULE_OPTIONS_TYPE,
} from './lock.module-definition';

/**
 * The module's error filters: `LockErrorFilter` for HTTP and microservice handlers (a global filter)
 * and on WebSocket gateways (which Nest gives no global filters).
 */
const ERROR_FILTER_PROVIDERS: Provider[] = [{ provide: APP_FILTER, useClass: LockErrorFilter }, LockGatewayFilters];

/** The module as the builder defined it, global when asked, with the error filters unless turned off. */
function withStaticOptions(
  definition: DynamicModule,
  options: { isGlobal?: boolean; errorFilters?: boolean },
): DynamicModule {
  return {
    ...definition,
    global: options.isGlobal === true,
    providers: [...(definition.providers ?? []), ...(options.errorFilters === false ? [] : ERROR_FILTER_PROVIDERS)],
  };
}

/**
 * `LockModule.forRoot({ backend, keyPrefix, ttl, wait, isGlobal, errorFilters })` or `LockModule.forRootAsync(...)`.
 * Provides `DistributedLock` (inject it by type) and answers lock errors of HTTP, microservice and
 * WebSocket handlers in their transport's terms (`errorFilters: false` leaves that to Nest's defaults).
 * On application shutdown it stops the watchdogs, releases what this process holds and closes the
 * backend (which closes only the connections it opened itself).
 */
@Module({
  imports: [DiscoveryModule],
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
  ],
  exports: [DistributedLock, LOCK_BACKEND],
})
export class LockModule extends ConfigurableLockModule implements OnModuleInit, OnApplicationBootstrap {
  // The service shuts itself down (its own onApplicationShutdown); the module only checks at start.
  constructor(
    @Inject(LOCK_BACKEND) private readonly backend: LockBackend,
    private readonly locks: DistributedLock,
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
  ) {
    super();
  }

  /**
   * Refuses, before the app serves anything, `@WithLock` methods that ask this module's backend for
   * a mode it does not keep (`InvalidLockOptionsError` naming them); the backend is closed first.
   */
  async onModuleInit(): Promise<void> {
    const refused = unsupportedModeUses(this.discovery, this.scanner, this.locks, this.backend);
    if (!refused) return;
    await (this.locks as DistributedLockService).shutdown();
    throw refused;
  }

  /**
   * Checks the backend once at start, without holding the start up: a backend that does not
   * answer is logged as a warning (lock calls then fail with LockBackendError until it answers).
   */
  onApplicationBootstrap(): void {
    this.backend.ping().catch((error: unknown) => {
      new Logger('DistributedLock').warn(`Lock backend ${this.backend.name} does not answer yet: ${errorText(error)}`);
    });
  }

  static forRoot(options: typeof LOCK_MODULE_OPTIONS_TYPE = {}): DynamicModule {
    // Checked once, here, so that bad options fail where they are written; the factory takes them as they are.
    const checked = validateModuleOptions(options, 'LockModule.forRoot');
    // The options provider gets only the lock options, whatever the builder of this Nest version keeps.
    const { isGlobal: _isGlobal, errorFilters: _errorFilters, ...lockOptions } = checked;
    return withStaticOptions(
      super.forRoot({ ...lockOptions, [CHECKED_OPTIONS]: true } as typeof LOCK_MODULE_OPTIONS_TYPE),
      options,
    );
  }

  /**
   * `isGlobal` and `errorFilters` are honoured here too, beside `useFactory` / `useClass` /
   * `useExisting` (the builder's extras alone would drop them for the async variant in some Nest versions).
   */
  static forRootAsync(options: typeof LOCK_MODULE_ASYNC_OPTIONS_TYPE): DynamicModule {
    validateStaticModuleOptions(options, 'LockModule.forRootAsync');
    return withStaticOptions(super.forRootAsync(options), options);
  }
}
