import { memoryBackend, type LockBackend } from 'nestjs-distributed-lock';

/** A memory-only app: neither ioredis nor pg is installed. */
export function createLockBackend(): LockBackend {
  return memoryBackend();
}
