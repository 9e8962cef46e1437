/** `nestjs-distributed-lock/postgres`: the PostgreSQL backend (a lease table, PgBouncer-safe). */
export { postgresBackend } from './backends/postgres/postgres-backend.factory';
// The backend class is a type only: postgresBackend() makes it.
export type { PostgresLockBackend } from './backends/postgres/postgres-lock.backend';
export type { PostgresBackendOptions, PostgresDurability } from './backends/postgres/postgres-lock.options';
export { postgresLockSchemaSql } from './backends/postgres/postgres-lock.schema';
export type { PostgresLockTableOptions } from './backends/postgres/postgres-lock.names';
