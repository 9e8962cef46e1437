import { randomBytes } from 'node:crypto';
import { postgresBackend } from '../../../lib';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { describeLockModelProperty } from '../../property/lock-model.property';
import { postgresModelTarget } from '../../property/lock-model.targets';

const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_contract');

describeLockBackendContract('postgres', {
  create: async () => {
    const backend = postgresBackend({
      connection: url,
      schema,
      applicationName: `dl-contract-${randomBytes(3).toString('hex')}`,
    });
    await backend.ready();
    return backend;
  },
  teardown: () => dropSchema(url, schema),
});

describeLockModelProperty('postgres', postgresModelTarget());
