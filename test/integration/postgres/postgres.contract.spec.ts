import { randomBytes } from 'node:crypto';
import { postgresBackend } from '../../../lib/postgres';
import { describeGiveUpContract } from '../../contract/give-up.contract';
import { describeLockBackendContract, type ContractTarget } from '../../contract/lock-backend.contract';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { describeLockModelProperty } from '../../property/lock-model.property';
import { postgresModelTarget } from '../../property/lock-model.targets';

const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_contract');

const target: ContractTarget = {
  create: async () => {
    const backend = postgresBackend({
      connection: url,
      schema,
      applicationName: `dl-contract-${randomBytes(3).toString('hex')}`,
    });
    await backend.ready();
    return backend;
  },
  // As a restore or a failover to a standby that never saw the lease would: the row is gone.
  evict: async (_backend, backendKey) => {
    await runSql(url, `DELETE FROM "${schema}".distributed_locks WHERE key = $1`, [backendKey]);
  },
  teardown: () => dropSchema(url, schema),
};

describeLockBackendContract('postgres', target);
describeGiveUpContract('postgres', target);
describeLockModelProperty('postgres', postgresModelTarget());
