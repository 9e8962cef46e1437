import type { DistributedLock } from '../../lib';
import type { LockUnderTest } from './lock-bench.harness';

/** The library under test: `acquire` and `release` of a DistributedLock. */
export function serviceLock(locks: DistributedLock, wait = 60_000): LockUnderTest {
  return async (key) => {
    const guard = await locks.acquire(key, { wait });
    return () => locks.release(guard);
  };
}
