import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { postgresBackend } from '../../../lib/postgres';
import { dropSchema, runSql, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';

const run = promisify(execFile);
const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_multiproc');
const root = join(__dirname, '..', '..', '..');

afterAll(() => dropSchema(url, schema));

it('keeps app instances in separate processes mutually exclusive on the same keys, with fences in grant order', async () => {
  const keys = ['alpha', 'beta'];
  const processes = 4;
  const rounds = 25;
  // The schema exists before the instances start, as after a deploy's migration step.
  const setup = postgresBackend({ connection: url, schema, applicationName: 'dl-test-contender' });
  await setup.ready();
  await setup.close();
  await runSql(
    url,
    `CREATE TABLE "${schema}".resource (key text PRIMARY KEY, n integer NOT NULL, last_fence bigint NOT NULL)`,
  );
  await runSql(url, `INSERT INTO "${schema}".resource SELECT unnest($1::text[]), 0, 0`, [keys]);

  const outputs = await Promise.all(
    Array.from({ length: processes }, () =>
      run(
        process.execPath,
        [
          '-r',
          join(root, 'test/support/transpile-on-require.js'),
          join(root, 'test/support/postgres-contender.process.ts'),
          url,
          schema,
          String(rounds),
          keys.join(','),
        ],
        { cwd: root, timeout: 90_000, killSignal: 'SIGKILL' },
      ),
    ),
  );
  const reports = outputs.map(
    ({ stdout }) =>
      JSON.parse(stdout.trim().split('\n').pop()!) as { done: number; fenceRejected: number; errors: string[] },
  );
  expect(reports.flatMap((r) => r.errors)).toEqual([]);
  expect(reports.reduce((sum, r) => sum + r.fenceRejected, 0)).toBe(0);
  expect(reports.map((r) => r.done)).toEqual(Array(processes).fill(rounds));
  const counters = await runSql<{ total: string }>(url, `SELECT sum(n) AS total FROM "${schema}".resource`);
  // Any overlap of two holders would have lost an increment.
  expect(Number(counters[0].total)).toBe(processes * rounds);
}, 120_000);
