import { randomBytes } from 'node:crypto';
import { postgresBackend } from '../../../lib/postgres';
import { describeLockBackendContract } from '../../contract/lock-backend.contract';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';

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
  // As a restore or a failover to a standby that never saw the lease would: the row is gone.
  evict: async (_backend, backendKey) => {
    await runSql(url, `DELETE FROM "${schema}".distributed_locks WHERE key = $1`, [backendKey]);
  },
  teardown: () => dropSchema(url, schema),
});
