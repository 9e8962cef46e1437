import { redisBackend } from '../../../lib';
import { describeGiveUpContract } from '../../contract/give-up.contract';
import { describeLockBackendContract, type ContractTarget } from '../../contract/lock-backend.contract';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../../support/shared-redis';

const prefix = testRunPrefix('contract');

const target: ContractTarget = {
  create: () => redisBackend({ connection: sharedRedisOptions(prefix) }),
  teardown: async () => {
    await deleteSharedKeys(prefix);
  },
};

describeLockBackendContract('redis', target);
describeGiveUpContract('redis', target);
