import { randomBytes } from 'node:crypto';
import { postgresBackend } from '../../../lib/postgres';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';

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
