import { Redis } from 'ioredis';
import { redisBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';

const prefix = testRunPrefix('contract');

describeLockBackendContract('redis', {
  create: () => redisBackend({ connection: sharedRedisOptions(prefix) }),
  // As an eviction or a FLUSHALL would: the lease key is gone.
  evict: async (_backend, backendKey) => {
    const redis = new Redis(sharedRedisOptions(prefix));
    try {
      await redis.del(redisLockKeys(backendKey).lease);
    } finally {
      redis.disconnect();
    }
  },
  teardown: async () => {
    await deleteSharedKeys(prefix);
  },
});
