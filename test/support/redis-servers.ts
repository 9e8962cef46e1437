import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port';
import { eventually } from './time';

const running = new Set<ChildProcess>();
// Whatever happens to the test process, no server it spawned outlives it.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A program the tests need could not be started at all (not installed, not executable). */
export class SpawnError extends Error {
  constructor(program: string, cause: Error, debianPackage: string) {
    super(`could not start ${program}: ${cause.message}; install it with apt-get install -y ${debianPackage}`);
    this.name = 'SpawnError';
  }
}

/** One `redis-server` process on a loopback port, without persistence (no RDB, no AOF). */
export class RedisServerProcess {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly args: string[],
    private readonly sentinel: boolean,
    private readonly binary: string,
  ) {}

  /** Starts a server; `args` are extra `redis-server` options; `config` lines go into its config file. */
  static async start(
    options: { args?: string[]; config?: string[]; sentinel?: boolean; binary?: string } = {},
  ): Promise<RedisServerProcess> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'ndl-redis-'));
      writeFileSync(join(dir, 'redis.conf'), (options.config ?? []).join('\n') + '\n');
      const server = new RedisServerProcess(
        port,
        dir,
        options.args ?? [],
        options.sentinel === true,
        options.binary ?? 'redis-server',
      );
      try {
        await server.launch();
        return server;
      } catch (error) {
        lastError = error;
        await server.stop();
        if (error instanceof SpawnError) break; // a program that cannot be started will not start on a retry
      }
    }
    throw lastError;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  /** An admin client for the test itself (the caller disconnects it). */
  admin(): Redis {
    return new Redis({
      host: '127.0.0.1',
      port: this.port,
      maxRetriesPerRequest: 1,
      retryStrategy: () => 100,
      lazyConnect: false,
      // A disconnect while reconnecting to a server a test killed waits this long for a socket
      // that has already closed (2 s by default, which keeps the test process alive).
      disconnectTimeout: 50,
    });
  }

  /** `kill -9`: the server dies at once, with everything in memory. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    running.delete(child);
  }

  /** Starts the server again on the same port, empty (nothing was persisted). */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Kills the server (if running) and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const args = [
      join(this.dir, 'redis.conf'),
      ...(this.sentinel ? ['--sentinel'] : []),
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      ...(this.sentinel ? [] : ['--save', '', '--appendonly', 'no']),
      '--logfile',
      '',
      ...this.args,
    ];
    const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`redis-server on port ${this.port} did not start within 10 s:\n${output.slice(-2000)}`)),
        10_000,
      );
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        if (/Ready to accept connections|Sentinel ID is|Running mode=sentinel/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      const fail = (error: Error): void => {
        clearTimeout(timer);
        reject(error);
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('error', (error) => {
        running.delete(child);
        if (this.child === child) this.child = undefined;
        fail(new SpawnError(this.binary, error, 'redis-server'));
      });
      child.once('exit', (code) => {
        running.delete(child);
        if (this.child === child) this.child = undefined;
        fail(new Error(`redis-server on port ${this.port} exited with ${code}:\n${output.slice(-2000)}`));
      });
    });
    // Keep draining its output so the pipe never fills.
    child.stdout!.resume();
    child.stderr!.resume();
    await eventually(
      async () => {
        const probe = new Redis({
          port: this.port,
          host: '127.0.0.1',
          lazyConnect: true,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
        });
        probe.on('error', () => undefined);
        try {
          await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          probe.disconnect();
        }
      },
      { within: 5_000, what: `redis-server on port ${this.port} to answer` },
    );
  }
}

/** Runs `redis-cli` with `args`; resolves with its output, rejects on a non-zero exit. Bounded in time. */
export function redisCli(args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new SpawnError('redis-cli', error, 'redis-tools'));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`redis-cli ${args.join(' ')} exited with ${code}: ${output.slice(-2000)}`));
    });
  });
}

/** A set of spawned servers that a suite stops together in `afterAll`, whatever happened. */
export class SpawnedRedis {
  readonly servers: RedisServerProcess[] = [];
  private readonly clients: Redis[] = [];

  async server(options?: Parameters<typeof RedisServerProcess.start>[0]): Promise<RedisServerProcess> {
    const server = await RedisServerProcess.start(options);
    this.servers.push(server);
    return server;
  }

  /** An admin client on `server`, disconnected by `stopAll`. */
  admin(server: RedisServerProcess): Redis {
    const client = server.admin();
    client.on('error', () => undefined);
    this.clients.push(client);
    return client;
  }

  /**
   * A Cluster of `masters` masters with one replica each, created with `redis-cli --cluster create`,
   * resolved once every node agrees the cluster is ok and every replica is in sync.
   */
  async cluster(masters = 3): Promise<RedisServerProcess[]> {
    const nodes = await Promise.all(
      Array.from({ length: masters * 2 }, () =>
        this.server({
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'],
        }),
      ),
    );
    await redisCli([
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      '1',
      '--cluster-yes',
    ]);
    const admins = nodes.map((n) => this.admin(n));
    await eventually(
      async () => {
        for (const admin of admins) {
          const info = (await admin.cluster('INFO')) as string;
          if (!info.includes('cluster_state:ok')) return false;
          const replication = await admin.info('replication');
          if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false;
        }
        return true;
      },
      { within: 30_000, every: 100, what: 'the cluster to be ok with replicas in sync' },
    );
    return nodes;
  }

  async stopAll(): Promise<void> {
    // Clients first, while their servers still answer the close: a client left connected to a stopped
    // server is reconnecting, and its disconnect then waits 2 s for a socket that never closes.
    for (const client of this.clients.splice(0)) client.disconnect();
    await Promise.all(this.servers.splice(0).map((s) => s.stop()));
  }
}
