import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';

/** What a benchmark figure depends on besides the code: the machine, the servers and every package version. */
export interface MachineFacts {
  /** ISO 8601, when the facts were collected (the start of the run). */
  date: string;
  cpuModel: string;
  cpuCount: number;
  totalMemoryBytes: number;
  /** 1, 5 and 15 minute load averages when the run started: other work on a shared machine shows here. */
  loadAverage: number[];
  os: string;
  node: string;
  /** `redis_version` from INFO server, or null when no Redis answered. */
  redis: string | null;
  /** `SHOW server_version`, or null when no PostgreSQL answered. */
  postgres: string | null;
  /** This package and every package the benchmarks compare it with or drive it by, from their package.json. */
  packages: Record<string, string | null>;
  /** The commit the benchmarks ran from, with `+dirty` when the work tree had changes; null outside git. */
  commit: string | null;
}

/** The packages whose versions a result names: the anchors first, then what drives the benchmarks. */
export const BENCH_PACKAGES = [
  'redlock',
  'redis-semaphore',
  'advisory-lock',
  'ioredis',
  'pg',
  'autocannon',
  '@nestjs/core',
  '@nestjs/platform-express',
] as const;

/** The nearest package.json at or above `from` whose name is `name`, or null. */
function findPackageJson(from: string, name: string): { version?: string } | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (json.name === name) return json;
    }
    if (dirname(dir) === dir) return null;
  }
}

/** The installed version of `name` (a leading `v`, as redlock writes it, is dropped), or null when it is missing. */
export function packageVersion(name: string): string | null {
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    return null;
  }
  const version = findPackageJson(dirname(entry), name)?.version;
  return version ? version.replace(/^v/, '') : null;
}

/** The version of this package, from the package.json above the compiled benchmarks. */
export function ownVersion(): string | null {
  return findPackageJson(__dirname, 'nestjs-distributed-lock')?.version ?? null;
}

function gitCommit(): string | null {
  try {
    const run = (...args: string[]): string =>
      execFileSync('git', args, { cwd: __dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return `${run('rev-parse', '--short', 'HEAD')}${run('status', '--porcelain', '--untracked-files=no') ? '+dirty' : ''}`;
  } catch {
    return null;
  }
}

async function redisVersion(url: string): Promise<string | null> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? null;
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}

async function postgresVersion(url: string): Promise<string | null> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0].server_version;
  } catch {
    return null;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Collects the facts a result is read against. Both servers are asked whatever the benchmark uses, so
 * every results file says the same about the machine; a server that does not answer within a second is
 * recorded as null.
 */
export async function machineFacts({
  redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
} = {}): Promise<MachineFacts> {
  // Everything synchronous first (git runs a child process), so nothing blocks once a benchmark runs.
  const date = new Date().toISOString();
  const cores = cpus();
  const commit = gitCommit();
  const packages = {
    'nestjs-distributed-lock': ownVersion(),
    ...Object.fromEntries(BENCH_PACKAGES.map((name) => [name, packageVersion(name)])),
  };
  const [redis, postgres] = await Promise.all([redisVersion(redisUrl), postgresVersion(databaseUrl)]);
  return {
    date,
    cpuModel: cores[0]?.model.trim() ?? 'unknown',
    cpuCount: cores.length,
    totalMemoryBytes: totalmem(),
    loadAverage: loadavg().map((n) => Number(n.toFixed(2))),
    os: `${platform()} ${release()}`,
    node: process.version,
    redis,
    postgres,
    packages,
    commit,
  };
}
