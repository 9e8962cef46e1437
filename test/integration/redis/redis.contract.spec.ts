import { redisBackend } from '../../../lib';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';
import { describeLockModelProperty } from '../../property/lock-model.property';
import { redisModelTarget } from '../../property/lock-model.targets';

const prefix = testRunPrefix('contract');

describeLockBackendContract('redis', {
  create: () => redisBackend({ connection: sharedRedisOptions(prefix) }),
  teardown: async () => {
    await deleteSharedKeys(prefix);
  },
});

describeLockModelProperty('redis', redisModelTarget());
