export { LockModule } from './lock.module';
export type { LockModuleOptions } from './lock-module-options';
export { LOCK_MODULE_OPTIONS } from './lock.module-definition';
export type { LockOptionsFactory } from './lock.module-definition';
export { DistributedLock } from './distributed-lock';
export type { AcquireOptions, HeldLock, LockGuard, TryAcquireOptions, WithLockOptions } from './distributed-lock';
export { DistributedLockService } from './distributed-lock.service';
export { WithLock } from './decorators/with-lock.decorator';
export type { LockKey, WithLockDecoratorOptions } from './decorators/with-lock.decorator';
export { currentLock } from './lock-context';
export {
  InvalidLockOptionsError,
  LockBackendError,
  LockError,
  LockLostError,
  LockTimeoutError,
} from './lock.errors';
export { LockErrorFilter } from './lock-error.filter';
export { LOCK_BACKEND } from './backends/lock-backend';
export type { AcquireResult, ExtendItem, LockBackend, LockEvent, QueueOptions } from './backends/lock-backend';
export { memoryBackend, MemoryLockBackend } from './backends/memory/memory-lock.backend';
export { DEFAULT_KEY_PREFIX, DEFAULT_TTL, DEFAULT_WAIT, MAX_KEY_BYTES, MAX_TIMER_DELAY } from './lock.constants';
export { redisBackend } from './backends/redis/redis-backend.factory';
export type { RedisBackendOptions, RedisQuorumNode } from './backends/redis/redis-backend.options';
export type { ReplicaAcknowledgement } from './backends/redis/redis-lock.backend';
export { RedisLockBackend } from './backends/redis/redis-lock.backend';
export { RedisQuorumLockBackend } from './backends/redis/redis-quorum.backend';
export { postgresBackend, PostgresLockBackend } from './backends/postgres/postgres-lock.backend';
export type { PostgresBackendOptions, PostgresDurability } from './backends/postgres/postgres-lock.options';
export { postgresLockSchemaSql, DEFAULT_POSTGRES_SCHEMA, DEFAULT_POSTGRES_TABLE } from './backends/postgres/postgres-lock.schema';
export type { PostgresLockTableOptions } from './backends/postgres/postgres-lock.schema';
