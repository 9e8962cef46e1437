import { DistributedLockService } from '../../lib/distributed-lock.service';
import { LockBackendError, memoryBackend, type LockBackend } from '../../lib';

/**
 * A backend whose attempts take effect and then fail on the way back (a reply lost to a timeout or
 * a cut connection): the service must give back what the attempt may hold, with or without a signal,
 * whatever the backend does about it itself.
 */
function grantsThenFails(inner: LockBackend): LockBackend & { failNext: number } {
  const backend = Object.create(inner) as LockBackend & { failNext: number };
  backend.failNext = 0;
  backend.tryAcquire = async (...args: Parameters<LockBackend['tryAcquire']>) => {
    const result = await inner.tryAcquire(...args);
    if (backend.failNext > 0) {
      backend.failNext--;
      throw new Error('the reply was lost');
    }
    return result;
  };
  return backend;
}

describe('an attempt that took effect and then failed', () => {
  it.each([
    ['without a signal', undefined],
    ['with a signal', new AbortController().signal],
  ])('is given back by the service (%s): the key is free for the next caller at once', async (_name, signal) => {
    const backend = grantsThenFails(memoryBackend());
    const locks = new DistributedLockService({ backend, keyPrefix: '', ttl: 30_000, wait: 0 });
    const other = new DistributedLockService({ backend, keyPrefix: '', ttl: 30_000, wait: 0 });
    try {
      backend.failNext = 1;
      await expect(locks.withLock('k', () => 'ran', { signal })).rejects.toBeInstanceOf(LockBackendError);
      backend.failNext = 1;
      await expect(locks.acquire('k2', { signal })).rejects.toBeInstanceOf(LockBackendError);
      // The give-backs go out in the background; the next caller waits a moment at most, not a TTL.
      expect(await other.withLock('k', () => 'next', { wait: 1_000 })).toBe('next');
      const guard = await other.acquire('k2', { wait: 1_000 });
      expect(guard.key).toBe('k2');
    } finally {
      await locks.shutdown();
      await other.shutdown();
      await backend.close();
    }
  });
});
