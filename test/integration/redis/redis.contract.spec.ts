import { redisBackend } from '../../../lib/redis';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';

const prefix = testRunPrefix('contract');

describeLockBackendContract('redis', {
  create: () => redisBackend({ connection: sharedRedisOptions(prefix) }),
  teardown: async () => {
    await deleteSharedKeys(prefix);
  },
});
