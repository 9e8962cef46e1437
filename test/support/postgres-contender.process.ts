/**
 * One app instance of the multi-process test: takes the given keys in turn with withLock, and under
 * each lock does a read-modify-write of a counter that only mutual exclusion keeps exact, fenced by
 * the lock's fence. Prints one JSON line with what it saw.
 *
 * argv: databaseUrl schema rounds key[,key...]
 */
import { Pool } from 'pg';
import { DistributedLockService } from '../../lib';
import { postgresBackend } from '../../lib/postgres';
import { sleep } from './time';

async function main(): Promise<void> {
  const [url, schema, roundsText, keyList] = process.argv.slice(2);
  const keys = keyList.split(',');
  const rounds = Number(roundsText);
  const backend = postgresBackend({
    connection: url,
    schema,
    applicationName: 'dl-test-contender',
    recheckInterval: 100,
  });
  const locks = new DistributedLockService({ backend, keyPrefix: 'mp:', ttl: 5_000, wait: 30_000 });
  const resource = new Pool({ connectionString: url, max: 2, application_name: 'dl-test-contender' });
  resource.on('error', () => undefined);
  let done = 0;
  let fenceRejected = 0;
  const errors: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const key = keys[(i + process.pid) % keys.length];
    try {
      await locks.withLock(key, async (lock) => {
        const { rows } = await resource.query(`SELECT n FROM "${schema}".resource WHERE key = $1`, [key]);
        await sleep(2);
        const written = await resource.query(
          `UPDATE "${schema}".resource SET n = $2, last_fence = $3 WHERE key = $1 AND last_fence < $3`,
          [key, Number(rows[0].n) + 1, lock.fence.toString()],
        );
        if (written.rowCount !== 1) fenceRejected++;
        done++;
      });
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  await locks.shutdown();
  await resource.end();
  process.stdout.write(`${JSON.stringify({ done, fenceRejected, errors })}\n`);
}

main().catch((error: unknown) => {
  process.stdout.write(`${JSON.stringify({ done: 0, fenceRejected: 0, errors: [String(error)] })}\n`);
  process.exitCode = 1;
});
