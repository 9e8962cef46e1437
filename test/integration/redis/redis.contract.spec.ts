import { Redis } from 'ioredis';
import { redisBackend } from '../../../lib/redis';
import { redisLockKeys } from '../../../lib/backends/redis/redis-key-layout';
import { describeGiveUpContract } from '../../contract/give-up.contract';
import { describeLockBackendContract, type ContractTarget } from '../../contract/lock-backend.contract';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';
import { describeLockModelProperty } from '../../property/lock-model.property';
import { redisModelTarget } from '../../property/lock-model.targets';

const prefix = testRunPrefix('contract');

const target: ContractTarget = {
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
};

describeLockBackendContract('redis', target);
describeGiveUpContract('redis', target);
describeLockModelProperty('redis', redisModelTarget());
