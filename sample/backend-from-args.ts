import { memoryBackend, type LockBackend } from '../lib';
import { postgresBackend } from '../lib/postgres';
import { redisBackend } from '../lib/redis';

export const BACKEND_NAMES = ['memory', 'redis', 'postgres'] as const;

/**
 * Builds the backend the demo runs on, from its name. Connection settings come from the
 * environment: REDIS_URL (default redis://127.0.0.1:6379) and DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/test).
 */
export function backendFromName(name: string): LockBackend {
  switch (name) {
    case 'memory':
      return memoryBackend();
    case 'redis':
      return redisBackend({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
    case 'postgres':
      return postgresBackend({ connection: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' });
    default:
      throw new Error(`Unknown --backend "${name}"; choose one of: ${BACKEND_NAMES.join(', ')}`);
  }
}
