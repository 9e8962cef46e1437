import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PgBouncerServer } from '../support/pgbouncer-server';
import { PrivatePostgres } from '../support/postgres-server';
import { RedisServerProcess } from '../support/redis-servers';

const run = promisify(execFile);

/**
 * What the tests need from the machine: a program that is not there is reported as such, at once,
 * with the command that installs it (not as a server that "did not listen" after a time-out).
 */
describe('test machine', () => {
  it('PgBouncer: a program that cannot be started is a spawn error', async () => {
    await expect(
      PgBouncerServer.start({
        upstream: { host: '127.0.0.1', port: 5432 },
        databases: ['test'],
        binary: '/nonexistent/pgbouncer',
      }),
    ).rejects.toThrow(
      /^could not start PgBouncer \(\/nonexistent\/pgbouncer\): spawn \/nonexistent\/pgbouncer ENOENT; install it with apt-get install -y pgbouncer$/,
    );
  });

  it('redis-server: a program that cannot be started is a spawn error', async () => {
    await expect(RedisServerProcess.start({ binary: '/nonexistent/redis-server' })).rejects.toThrow(
      /^could not start \/nonexistent\/redis-server: spawn \/nonexistent\/redis-server ENOENT; install it with apt-get install -y redis-server$/,
    );
  });

  it('PostgreSQL: a server program that is not there is said as such', async () => {
    const before = process.env.PG_BINDIR;
    process.env.PG_BINDIR = '/nonexistent/bin';
    try {
      await expect(PrivatePostgres.start()).rejects.toThrow(
        /^could not start \/nonexistent\/bin\/initdb: no such file; install PostgreSQL's server programs with apt-get install -y postgresql$/,
      );
    } finally {
      if (before === undefined) delete process.env.PG_BINDIR;
      else process.env.PG_BINDIR = before;
    }
  });

  it('npm test stops at once with one message naming what is missing and how to install it', async () => {
    const script = join(__dirname, '..', 'support', 'prepare-test-machine.js');
    const failed = await run(process.execPath, [script, '--check-only'], {
      env: { ...process.env, DL_PROGRAM_DIRS: '/nonexistent' },
      timeout: 20_000,
    }).then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error,
    );
    expect(failed?.code).toBe(1);
    const lines = failed!.stderr!.trim().split('\n');
    expect(lines[0]).toBe(
      'npm test cannot run: this machine lacks redis-server (for the quorum, Cluster, Sentinel and fault tests); ' +
        'redis-cli (for the Cluster tests); pgbouncer (for the PgBouncer tests); ' +
        "initdb (for the tests' private PostgreSQL servers); pg_ctl (for the tests' private PostgreSQL servers).",
    );
    expect(lines[1]).toBe('Install with: sudo apt-get install -y redis-server redis-tools pgbouncer postgresql');
    expect(lines[2]).toMatch(/^Or, as root, run bash \.ci\/redis\.sh && bash \.ci\/postgres\.sh, which installs/);
    expect(lines).toHaveLength(3);
  });

  it('the check passes on a machine that has everything (this one, after .ci/*.sh)', async () => {
    const script = join(__dirname, '..', 'support', 'prepare-test-machine.js');
    await expect(run(process.execPath, [script, '--check-only'], { timeout: 20_000 })).resolves.toMatchObject({
      stderr: '',
    });
  });
});
