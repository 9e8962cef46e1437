import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from './free-port';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The directory of PostgreSQL's server programs (initdb, pg_ctl, postgres). */
function postgresBinDir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return join(root, versions[0], 'bin');
  }
  return '';
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString()),
  };
}

const started = new Set<PrivatePostgres>();

/**
 * A PostgreSQL server of a test's own: initdb into a temporary directory, pg_ctl on a free loopback
 * port, trust authentication. For faults that the shared server must never see (restart, crash).
 * Run as root, the server programs run as the `postgres` user (initdb refuses root).
 */
export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
    private readonly asPostgres: boolean,
  ) {}

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** Connection string of a database on this server (default `postgres`). */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  static async start(): Promise<PrivatePostgres> {
    const bin = postgresBinDir();
    const user = postgresUser();
    const dir = mkdtempSync(join(tmpdir(), 'dl-pg-'));
    if (user) chownSync(dir, user.uid, user.gid);
    const port = await freePort();
    const server = new PrivatePostgres(dir, port, bin, user !== undefined);
    started.add(server);
    try {
      await server.exec('initdb', ['-D', server.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
      writeFileSync(
        join(server.dataDir, 'postgresql.auto.conf'),
        [
          `port = ${port}`,
          `listen_addresses = '127.0.0.1'`,
          `unix_socket_directories = '${dir}'`,
          'max_connections = 60',
          'shared_buffers = 16MB',
          'logging_collector = off',
        ].join('\n') + '\n',
      );
      await server.startServer();
      return server;
    } catch (error) {
      await server.stop();
      throw error;
    }
  }

  /** Starts the server again after `kill()` or a `stop` without cleanup. */
  async startServer(): Promise<void> {
    await this.exec('pg_ctl', ['-D', this.dataDir, '-l', join(this.dir, 'server.log'), '-w', '-t', '30', 'start']);
  }

  /** Restarts the server: `fast` shuts down cleanly, `immediate` is a crash (recovery at start). */
  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.exec('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '30', 'stop']);
    await this.startServer();
  }

  /** Stops the server (as a crash would) and keeps its data, for a later `startServer()`. */
  async halt(mode: 'fast' | 'immediate' = 'immediate'): Promise<void> {
    await this.exec('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '30', 'stop']);
  }

  /** Stops the server and removes its directory. Safe to call twice. */
  async stop(): Promise<void> {
    if (!started.delete(this)) return;
    await this.exec('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop']).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The command line that runs one of the server programs, as the postgres user when we are root. */
  command(program: string, args: string[]): [string, string[]] {
    const path = this.bin ? join(this.bin, program) : program;
    return this.asPostgres ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
  }

  private exec(program: string, args: string[]): Promise<unknown> {
    const path = this.bin ? join(this.bin, program) : program;
    if (this.bin && !existsSync(path)) {
      return Promise.reject(
        new Error(
          `could not start ${path}: no such file; install PostgreSQL's server programs with apt-get install -y postgresql`,
        ),
      );
    }
    const [file, argv] = this.command(program, args);
    return run(file, argv).catch((error: NodeJS.ErrnoException) => {
      // A program that cannot be started is said as such (and how to get it), not as a failed run.
      if (typeof error.code === 'string' && error.syscall?.startsWith('spawn')) {
        throw new Error(
          `could not start ${file}: ${error.message}; install PostgreSQL's server programs with apt-get install -y postgresql`,
        );
      }
      throw error;
    });
  }
}

/** Last resort when a test run dies without its afterAll: stop what is still running. */
process.once('exit', () => {
  for (const server of started) {
    try {
      const [file, argv] = server.command('pg_ctl', ['-D', server.dataDir, '-m', 'immediate', 'stop']);
      execFileSync(file, argv, { stdio: 'ignore' });
    } catch {
      // already stopped
    }
    rmSync(server.dir, { recursive: true, force: true });
  }
});
