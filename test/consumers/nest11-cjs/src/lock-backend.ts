import type { LockBackend } from 'nestjs-distributed-lock';
import { postgresBackend } from 'nestjs-distributed-lock/postgres';
import { redisBackend } from 'nestjs-distributed-lock/redis';

/** The backends behind their subpaths: Redis or PostgreSQL, by LOCK_STORE. */
export function createLockBackend(): LockBackend {
  if (process.env.LOCK_STORE === 'postgres') {
    return postgresBackend({ connection: process.env.DATABASE_URL!, schema: process.env.LOCK_SCHEMA });
  }
  return redisBackend({ url: process.env.REDIS_URL });
}
