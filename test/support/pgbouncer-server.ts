import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { freePort } from './free-port';

export interface PgBouncerOptions {
  /** The PostgreSQL server behind it. */
  upstream: { host: string; port: number };
  /** Databases it serves (same names upstream). */
  databases: string[];
  poolMode?: 'session' | 'transaction' | 'statement';
  /** Server connections per database and user: small, so that clients really share them. */
  poolSize?: number;
  /** The pgbouncer program; found in the usual places when not given. */
  binary?: string;
}

function pgbouncerBinary(): string {
  for (const candidate of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']) {
    if (existsSync(candidate)) return candidate;
  }
  return 'pgbouncer';
}

/** Polls until `port` accepts a connection, for at most `within` ms, or until `stop` is aborted. */
function waitForPort(port: number, within: number, stop: AbortSignal): Promise<void> {
  const until = Date.now() + within;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (stop.aborted) return;
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > until) reject(new Error(`PgBouncer did not listen on ${port} within ${within} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

const running = new Set<PgBouncerServer>();

/** Last resort when a test run dies without its afterAll: end what is still running. */
process.once('exit', () => {
  for (const server of running) server.kill();
});

/**
 * A PgBouncer of a test's own, on a free loopback port, with its own config in a temporary
 * directory, trust authentication, in transaction pooling mode by default. `stop()` ends it and
 * removes the directory.
 */
export class PgBouncerServer {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  /** Ends the process at once, without waiting (for the exit hook). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  static async start(options: PgBouncerOptions): Promise<PgBouncerServer> {
    const dir = mkdtempSync(join(tmpdir(), 'dl-pgbouncer-'));
    const port = await freePort();
    const asRoot = process.getuid?.() === 0;
    writeFileSync(join(dir, 'userlist.txt'), '"postgres" ""\n');
    writeFileSync(
      join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        ...options.databases.map(
          (db) => `${db} = host=${options.upstream.host} port=${options.upstream.port} dbname=${db}`,
        ),
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${join(dir, 'userlist.txt')}`,
        `pool_mode = ${options.poolMode ?? 'transaction'}`,
        `default_pool_size = ${options.poolSize ?? 2}`,
        'max_client_conn = 200',
        'admin_users = postgres',
        `logfile = ${join(dir, 'pgbouncer.log')}`,
        'ignore_startup_parameters = extra_float_digits',
      ].join('\n') + '\n',
    );
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(dir, uid, gid);
    }
    // PgBouncer refuses to run as root: -u switches to the postgres user.
    const args = [...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')];
    const binary = options.binary ?? pgbouncerBinary();
    const child = spawn(binary, args, { stdio: 'ignore' });
    // A program that cannot be started (not installed) is said as such, at once.
    const spawnFailed = new Promise<never>((_, reject) =>
      child.once('error', (error) =>
        reject(
          new Error(
            `could not start PgBouncer (${binary}): ${error.message}; install it with apt-get install -y pgbouncer`,
          ),
        ),
      ),
    );
    const server = new PgBouncerServer(port, dir, child);
    running.add(server);
    // Once the start has succeeded or failed, the polling stops (a program that could not start would
    // otherwise be polled for its port for the whole 10 s).
    const started = new AbortController();
    try {
      await Promise.race([
        waitForPort(port, 10_000, started.signal),
        spawnFailed,
        new Promise<never>((_, reject) =>
          child.once('exit', (code) => reject(new Error(`PgBouncer exited with code ${code}`))),
        ),
      ]);
      return server;
    } catch (error) {
      await server.stop();
      throw error;
    } finally {
      started.abort();
    }
  }

  async stop(): Promise<void> {
    running.delete(this);
    // pid is undefined when the program could not be started at all: nothing to end.
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
