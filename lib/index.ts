/** `nestjs-distributed-lock`: the module, the service, `@WithLock`, errors, the memory backend and the backend SPI. */
export { LockModule } from './lock.module';
export type { LockModuleOptions, LockTelemetryOptions } from './lock-module-options';
export type { LockOptionsFactory } from './lock.module-definition';
export { DistributedLock } from './distributed-lock';
export type {
  AcquireOptions,
  HeldLock,
  HeldLocks,
  LockGuard,
  MultiLockGuard,
  TryAcquireOptions,
  WithLockOptions,
} from './distributed-lock';
export { WithLock } from './decorators/with-lock.decorator';
export type { LockKey, WithLockDecoratorOptions } from './decorators/with-lock.decorator';
export { currentLock } from './lock-context';
export { InvalidLockOptionsError, LockBackendError, LockError, LockLostError, LockTimeoutError } from './lock.errors';
export { LockErrorFilter } from './filters/lock-error.filter';
export type { LockErrorCode, LockErrorReply } from './filters/lock-error-reply';
export { LOCK_BACKEND, LockBackend } from './backends/lock-backend';
export type {
  AcquireResult,
  ExtendItem,
  HandOff,
  HeldWith,
  LeaseMode,
  LeaseModeKind,
  LockBackendCapabilities,
  LockEvent,
  QueueOptions,
  ReleaseResult,
} from './backends/lock-backend';
export { memoryBackend } from './backends/memory/memory-lock.backend';
export type { MemoryLockBackend } from './backends/memory/memory-lock.backend';
// The Redis and PostgreSQL backends are exported from `nestjs-distributed-lock/redis` and
// `nestjs-distributed-lock/postgres` (lib/redis.ts, lib/postgres.ts), so that the types of this entry
// never mention ioredis or pg.
