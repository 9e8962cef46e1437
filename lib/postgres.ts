/** `nestjs-distributed-lock/postgres`: the PostgreSQL backend (a lease table, PgBouncer-safe). */
export { postgresBackend, PostgresLockBackend } from './backends/postgres/postgres-lock.backend';
export type { PostgresBackendOptions, PostgresDurability } from './backends/postgres/postgres-lock.options';
export { postgresLockSchemaSql } from './backends/postgres/postgres-lock.schema';
export { DEFAULT_POSTGRES_SCHEMA, DEFAULT_POSTGRES_TABLE } from './backends/postgres/postgres-lock.names';
export type { PostgresLockTableOptions } from './backends/postgres/postgres-lock.names';
