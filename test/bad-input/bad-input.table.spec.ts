import { createHook } from 'node:async_hooks';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Client, Pool } from 'pg';
import {
  InvalidLockOptionsError,
  LockBackendError,
  LockModule,
  memoryBackend,
  WithLock,
  type DistributedLock,
  type LockBackend,
  type LockGuard,
} from '../../lib';
import { DistributedLockService } from '../../lib/distributed-lock.service';
import { LOCK_SERVICE_PROPERTY } from '../../lib/lock.constants';
import { postgresBackend } from '../../lib/postgres';
import { redisBackend } from '../../lib/redis';
import { dropSchema, sharedDatabaseUrl } from '../support/postgres-database';
import { freePort } from '../support/free-port';

/**
 * The bad-input table: every row is one wrong thing a user can do, the typed error it must get and
 * the words of its message. After each row nothing may be left behind: no lock (the key can be
 * taken at once), no Redis key, no table row, no timer, no socket, no server connection.
 * `npm test` runs this file a second time under --detectOpenHandles.
 */

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = sharedDatabaseUrl();
const TIMER_LIMIT = 2 ** 31 - 1;
const schema = `dl_bad_${randomBytes(4).toString('hex')}`;
const appName = `dl-bad-${schema}`;

type BackendKind = 'memory' | 'redis' | 'postgres';
interface Ctx {
  locks: DistributedLock;
  backend: LockBackend;
  kind: BackendKind;
  /** A guard this row's service holds, for rows about guards. */
  held(): Promise<LockGuard>;
}

interface Row {
  name: string;
  /** Rows that need a service get one per backend kind listed here; others run alone. */
  on?: BackendKind[];
  run: (ctx: Ctx) => unknown;
  error?: new (...args: any[]) => Error;
  message?: RegExp;
}

const guardShaped = { key: 'k', token: 'a'.repeat(32), fence: 1n, acquiredAt: 0, expiresAt: 0 };
const all: BackendKind[] = ['memory', 'redis', 'postgres'];
const invalid = (name: string, run: Row['run'], message: RegExp, on: BackendKind[] = all): Row => ({
  name,
  on,
  run,
  error: InvalidLockOptionsError,
  message,
});
const accepted = (name: string, run: Row['run'], on: BackendKind[] = all): Row => ({ name, on, run });
const alone = (name: string, run: () => unknown, error: Row['error'], message: RegExp): Row => ({
  name,
  run,
  error,
  message,
});

/**
 * The first lock call on `backend`, which throws the row's error; that error never shows `secret`.
 * The service (and with it the backend) is shut down after, so the row can check what is left.
 */
async function firstLockCall(backend: LockBackend, keyPrefix: string, secret?: string): Promise<void> {
  const locks = new DistributedLockService({ backend, keyPrefix, ttl: 1_000, wait: 0 });
  try {
    await locks.tryAcquire('k');
  } catch (error) {
    if (secret !== undefined) expect(String((error as Error).message)).not.toContain(secret);
    throw error;
  } finally {
    await locks.shutdown();
  }
}

/**
 * An instance of a class whose `@WithLock` key function returns a list of keys (by default the two
 * arguments), with `locks` where Nest would inject it.
 */
function transfer(locks: DistributedLock, keys: (a: string, b: string) => unknown = (a, b) => [a, b]) {
  class Transfer {
    @WithLock(keys as (a: string, b: string) => string[])
    async run(_from: string, _to: string): Promise<string> {
      return 'moved';
    }
  }
  return Object.assign(new Transfer(), { [LOCK_SERVICE_PROPERTY]: locks });
}

let closedPort = 0;
beforeAll(async () => {
  closedPort = await freePort();
});

const rows: Row[] = [
  // Keys
  invalid('empty key', (c) => c.locks.tryAcquire(''), /Invalid lock key: .* got an empty string/),
  invalid('number as key', (c) => c.locks.acquire(42 as never), /Invalid lock key: .* got 42 \(number\)/),
  invalid('key with NUL', (c) => c.locks.withLock('a\u0000b', () => 1), /with a NUL character/),
  invalid('key of 10 kB', (c) => c.locks.tryAcquire('x'.repeat(10_240)), /at most 1024 UTF-8 bytes.* of 10240 bytes/),
  invalid('key with an unpaired surrogate', (c) => c.locks.tryAcquire('\udc00'), /unpaired surrogate/),
  accepted('key with CR/LF', (c) =>
    c.locks.withLock('line\r\nbreak', (held) => expect(held.key).toBe('line\r\nbreak')),
  ),
  accepted('key with emoji', (c) => c.locks.withLock('🔒 lock', (held) => expect(held.key).toBe('🔒 lock'))),
  accepted('key of exactly 1024 bytes', (c) => c.locks.withLock('é'.repeat(512), () => undefined)),
  // TTL and wait
  invalid(
    'ttl 0',
    (c) => c.locks.tryAcquire('k', { ttl: 0 }),
    /Invalid ttl: expected an integer number of milliseconds from 1 to 2147483647/,
  ),
  invalid('ttl NaN', (c) => c.locks.acquire('k', { ttl: Number.NaN }), /Invalid ttl: .* got NaN/),
  invalid('ttl Infinity', (c) => c.locks.withLock('k', () => 1, { ttl: Infinity }), /Invalid ttl: .* got Infinity/),
  invalid('ttl 1.5', (c) => c.locks.tryAcquire('k', { ttl: 1.5 }), /Invalid ttl: .* got 1\.5/),
  invalid(
    'ttl over the timer limit',
    (c) => c.locks.tryAcquire('k', { ttl: TIMER_LIMIT + 1 }),
    /\(2\^31-1, the timer limit\), got 2147483648/,
  ),
  accepted('ttl at the timer limit', async (c) => {
    const guard = (await c.locks.tryAcquire('limit', { ttl: TIMER_LIMIT }))!;
    await c.locks.release(guard);
  }),
  invalid('wait -1', (c) => c.locks.acquire('k', { wait: -1 }), /Invalid wait: expected a number of milliseconds >= 0/),
  invalid('wait NaN', (c) => c.locks.withLock('k', () => 1, { wait: Number.NaN }), /Invalid wait: .* got NaN/),
  invalid(
    'signal that is not an AbortSignal',
    (c) => c.locks.acquire('k', { signal: 'stop' as never }),
    /Invalid signal: expected an AbortSignal/,
  ),
  invalid(
    'unknown option',
    (c) => c.locks.acquire('k', { retries: 3 } as never),
    /unknown option "retries"; allowed: ttl, wait, signal, metricName, mode, limit/,
  ),
  invalid(
    'metricName that is empty',
    (c) => c.locks.withLock('k', () => 1, { metricName: '' }),
    /Invalid withLock metricName: expected a non-empty string of at most 255 UTF-8 bytes.*got an empty string/,
  ),
  invalid(
    'metricName that is a number',
    (c) => c.locks.tryAcquire('k', { metricName: 7 as never }),
    /Invalid tryAcquire metricName: expected a non-empty string .* \(a name such as 'orders\.pay', not a key with an id in it\), got 7 \(number\)/,
    ['memory'],
  ),
  invalid(
    'work that is not a function',
    (c) => c.locks.withLock('k', null as never),
    /Invalid withLock work: expected a function, got null/,
  ),
  // Lists of keys (multi-key locks)
  invalid(
    'empty key list',
    (c) => c.locks.tryAcquire([]),
    /Invalid tryAcquire keys: expected a list of 1 to 32 distinct keys, got an empty list/,
  ),
  invalid(
    'key list with a duplicate',
    (c) => c.locks.withLock(['k', 'j', 'k'], () => 1),
    /Invalid withLock keys: expected a list of 1 to 32 distinct keys, but "k" is listed more than once/,
  ),
  invalid(
    'key list of 33 keys',
    (c) => c.locks.acquire(['k', ...Array.from({ length: 32 }, (_, i) => `k${i}`)]),
    /Invalid acquire keys: expected a list of 1 to 32 distinct keys, got 33 keys/,
  ),
  invalid(
    'key list with a number inside',
    (c) => c.locks.acquire(['k', 42 as never]),
    /Invalid lock key: .* got 42 \(number\) \(item 1 of the acquire key list\)/,
  ),
  invalid(
    'key list with an empty key inside',
    (c) => c.locks.withLock(['k', ''], () => 1),
    /Invalid lock key: .* got an empty string \(item 1 of the withLock key list\)/,
  ),
  invalid(
    'key list with bad options',
    (c) => c.locks.acquire(['k', 'j'], { wait: -1 }),
    /Invalid wait: expected a number of milliseconds >= 0/,
  ),
  accepted('key list of 32 keys', async (c) => {
    const keys = ['k', ...Array.from({ length: 31 }, (_, i) => `k${i}`)];
    await c.locks.withLock(keys, (held) => expect(held.keys).toEqual([...keys].sort()));
    const set = (await c.locks.tryAcquire(keys))!;
    expect(set.locks).toHaveLength(32);
    await c.locks.release(set);
  }),
  // Shared and limited locks
  invalid(
    'limit 0',
    (c) => c.locks.withLock('k', () => 1, { limit: 0 }),
    /Invalid withLock limit: expected an integer from 1 to 10000 .*got 0/,
  ),
  invalid(
    'limit 1.5',
    (c) => c.locks.acquire('k', { limit: 1.5 }),
    /Invalid acquire limit: expected an integer from 1 to 10000 .*got 1\.5/,
  ),
  invalid('limit -4', (c) => c.locks.tryAcquire('k', { limit: -4 }), /Invalid tryAcquire limit: .*got -4/),
  invalid('limit 10001', (c) => c.locks.tryAcquire('k', { limit: 10_001 }), /Invalid tryAcquire limit: .*got 10001/),
  invalid('limit NaN', (c) => c.locks.acquire('k', { limit: Number.NaN }), /Invalid acquire limit: .*got NaN/),
  invalid(
    'limit as a string',
    (c) => c.locks.withLock('k', () => 1, { limit: '4' as never }),
    /Invalid withLock limit: .*got "4"/,
  ),
  invalid(
    "mode 'read'",
    (c) => c.locks.acquire('k', { mode: 'read' as never }),
    /Invalid acquire mode: expected 'exclusive' \(the default: one holder\) or 'shared' .*got "read"/,
  ),
  invalid(
    "limit with mode 'shared'",
    (c) => c.locks.withLock('k', () => 1, { mode: 'shared', limit: 4 }),
    /limit \(4\) cannot be combined with mode 'shared'/,
  ),
  invalid(
    'limit on a key held exclusively',
    async (c) => c.locks.tryAcquire((await c.held()).key, { limit: 2 }),
    /Lock "held-[0-9a-f]+" is held with exclusive, and this call asked for limit 2/,
  ),
  invalid(
    'limit that disagrees with the limit the key is held with',
    async (c) => {
      const guard = (await c.locks.tryAcquire('k', { limit: 3 }))!;
      try {
        await c.locks.acquire('k', { limit: 2, wait: 1_000 });
      } finally {
        await c.locks.release(guard);
      }
    },
    /Lock "k" is held with limit 3, and this call asked for limit 2: every caller of a limited key must give the same limit/,
  ),
  invalid(
    'exclusive withLock inside a shared hold of the same key',
    (c) => c.locks.withLock('k', () => c.locks.withLock('k', () => 1, { wait: 60_000 }), { mode: 'shared' }),
    /withLock\("k"\) asked for exclusive inside a hold of the same key with shared: it would wait for its own hold to end/,
  ),
  alone(
    'limit on a backend that does not keep limits',
    async () => {
      // A third party's backend that keeps exclusive locks only (as the Redis quorum does).
      const backend = Object.assign(memoryBackend(), {
        capabilities: { fifo: true, fencing: 'strict' as const, modes: [] as const },
      });
      const locks = new DistributedLockService({ backend, keyPrefix: 'bad:', ttl: 1_000, wait: 0 });
      try {
        await locks.withLock('k', () => 1, { limit: 2 });
      } finally {
        await locks.shutdown();
      }
    },
    InvalidLockOptionsError,
    /The memory backend does not support limit: it keeps exclusive locks only/,
  ),
  invalid(
    'multi-key guard without locks',
    (c) => c.locks.release({ keys: [], locks: [], fence: () => 0n } as never),
    /expected a MultiLockGuard with at least one lock, got none/,
  ),
  invalid(
    'multi-key guard with a forged lock',
    async (c) => {
      const set = (await c.locks.tryAcquire(['k', 'j']))!;
      try {
        await c.locks.extend({ ...set, locks: [set.locks[0], { ...set.locks[1], token: 'x' }] } as never);
      } finally {
        await c.locks.release(set);
      }
    },
    /Invalid guard: .* but its token is "x"/,
  ),
  invalid(
    '@WithLock key function returning a list with a duplicate',
    (c) => transfer(c.locks).run('k', 'k'),
    /Invalid @WithLock key on Transfer\.run: the key function returned a bad list: .*"k" is listed more than once/,
  ),
  invalid(
    '@WithLock key function returning an empty list',
    (c) => transfer(c.locks, () => []).run('k', 'j'),
    /Invalid @WithLock key on Transfer\.run: the key function returned a bad list: .*got an empty list/,
  ),
  invalid(
    '@WithLock key function returning a list with a number inside',
    (c) => transfer(c.locks).run('k', 7 as never),
    /the key function returned a bad list: Invalid lock key: .* got 7 \(number\) \(item 1 of the withLock key list\)/,
  ),
  // Guards
  invalid('guard null', (c) => c.locks.release(null as never), /Invalid guard: expected a LockGuard/),
  invalid(
    'guard without token',
    (c) => c.locks.extend({ ...guardShaped, token: undefined } as never),
    /but its token is undefined/,
  ),
  invalid(
    'guard without fence',
    (c) => c.locks.release({ ...guardShaped, fence: undefined } as never),
    /but its fence is undefined/,
  ),
  invalid(
    'guard with a string fence',
    (c) => c.locks.release({ ...guardShaped, fence: '1' } as never),
    /but its fence is "1"/,
  ),
  invalid(
    'guard from another DistributedLock',
    async (c) => {
      const other = new DistributedLockService({ backend: memoryBackend(), keyPrefix: 'other:', ttl: 1_000, wait: 0 });
      const foreign = (await other.tryAcquire('k'))!;
      try {
        await c.locks.release(foreign);
      } finally {
        await other.shutdown();
      }
    },
    /issued by another DistributedLock/,
  ),
  accepted('forged guard with a random token: a no-op that frees nothing', async (c) => {
    const real = await c.held();
    await c.locks.release({ ...real, token: randomBytes(16).toString('hex') });
    expect(await c.locks.extend({ ...real, token: randomBytes(16).toString('hex') })).toBe(false);
    expect(await c.locks.tryAcquire(real.key)).toBeNull();
    await c.locks.release(real);
  }),
  invalid('extend with ttl 0', async (c) => c.locks.extend(await c.held(), 0), /Invalid ttl: .* got 0/),
  // The decorator
  alone(
    'forRoot backend claiming a mode no backend has',
    () =>
      LockModule.forRoot({
        backend: Object.assign(memoryBackend(), { capabilities: { modes: ['shared', 'semaphore'] } }) as never,
      }),
    InvalidLockOptionsError,
    /capabilities\.modes must be a list of 'shared' and 'limit', got an array/,
  ),
  alone(
    '@WithLock on a getter',
    () => WithLock('k')({}, 'value', { get: () => 1 }),
    InvalidLockOptionsError,
    /can only decorate methods/,
  ),
  alone(
    "@WithLock onBusy 'queue'",
    () => WithLock('k', { onBusy: 'queue' as never }),
    InvalidLockOptionsError,
    /expected 'throw' or 'skip'/,
  ),
  alone(
    '@WithLock metricName of 300 bytes',
    () => WithLock('k', { metricName: 'm'.repeat(300) }),
    InvalidLockOptionsError,
    /Invalid @WithLock metricName: expected a non-empty string of at most 255 UTF-8 bytes.* of 300 bytes/,
  ),
  alone(
    '@WithLock limit 0',
    () => WithLock('pdf-render', { limit: 0 }),
    InvalidLockOptionsError,
    /Invalid @WithLock limit: expected an integer from 1 to 10000 .*got 0/,
  ),
  alone(
    "@WithLock mode 'writer'",
    () => WithLock('catalog', { mode: 'writer' as never }),
    InvalidLockOptionsError,
    /Invalid @WithLock mode: expected 'exclusive' .* or 'shared' .*got "writer"/,
  ),
  alone(
    '@WithLock with an empty key list',
    () => WithLock([]),
    InvalidLockOptionsError,
    /Invalid @WithLock keys: expected a list of 1 to 32 distinct keys, got an empty list/,
  ),
  alone(
    '@WithLock without a key',
    () => WithLock(undefined as never),
    InvalidLockOptionsError,
    /Invalid @WithLock key/,
  ),
  alone(
    '@WithLock without LockModule',
    () => {
      class Orphan {
        @WithLock('orphan')
        async run(): Promise<void> {}
      }
      return new Orphan().run();
    },
    InvalidLockOptionsError,
    /import LockModule\.forRoot/,
  ),
  // Module options
  alone(
    'forRoot ttl -1',
    () => LockModule.forRoot({ ttl: -1 }),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRoot ttl/,
  ),
  alone(
    'forRoot backend that is a string',
    () => LockModule.forRoot({ backend: 'redis://x' as never }),
    InvalidLockOptionsError,
    /expected a LockBackend/,
  ),
  alone(
    'forRoot backend with a misspelt capability',
    () =>
      LockModule.forRoot({ backend: Object.assign(memoryBackend(), { capabilities: { fence: 'per-node' } }) as never }),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRoot backend memory: unknown capabilities fence; allowed: \{ fifo\?: boolean, fencing\?: 'strict' \| 'per-node', modes\?: Array<'shared' \| 'limit'> \}/,
  ),
  alone(
    'forRoot backend with capabilities.fencing "weak"',
    () =>
      LockModule.forRoot({
        backend: Object.assign(memoryBackend(), { capabilities: { fifo: false, fencing: 'weak' } }) as never,
      }),
    InvalidLockOptionsError,
    /capabilities\.fencing must be 'strict' or 'per-node', got "weak"/,
  ),
  alone(
    'forRoot keyPrefix with NUL',
    () => LockModule.forRoot({ keyPrefix: 'a\u0000' }),
    InvalidLockOptionsError,
    /Invalid keyPrefix: .*NUL/,
  ),
  alone(
    'forRoot options as an array',
    () => LockModule.forRoot([] as never),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRoot options: expected an object/,
  ),
  alone(
    "forRoot telemetry 'yes'",
    () => LockModule.forRoot({ telemetry: 'yes' as never }),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRoot telemetry: expected true, false or an object \{ metrics\?: boolean, traces\?: boolean, recordKey\?: boolean \}, got "yes"/,
  ),
  alone(
    'forRoot telemetry with an unknown flag',
    () => LockModule.forRoot({ telemetry: { spans: false } as never }),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRoot telemetry: unknown option "spans"; allowed: metrics, traces, recordKey/,
  ),
  alone(
    "forRoot telemetry.metrics 'off'",
    () => LockModule.forRoot({ telemetry: { metrics: 'off' as never } }),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRoot telemetry\.metrics: expected a boolean, got "off"; allowed: true, false or an object/,
  ),
  alone(
    'forRootAsync factory returning telemetry 1',
    async () => {
      const app = await Test.createTestingModule({
        imports: [LockModule.forRootAsync({ useFactory: () => ({ telemetry: 1 as never }) })],
      }).compile();
      await app.close();
    },
    InvalidLockOptionsError,
    /Invalid LockModule telemetry: expected true, false or an object .*, got 1/,
  ),
  alone(
    'forRootAsync errorFilters that is a string',
    () => LockModule.forRootAsync({ errorFilters: 'false' as never, useFactory: () => ({}) }),
    InvalidLockOptionsError,
    /Invalid LockModule\.forRootAsync errorFilters: expected a boolean, got "false"/,
  ),
  // Redis backend options
  alone(
    'redisBackend url that is not redis://',
    () => redisBackend({ url: 'http://127.0.0.1:6379' }),
    InvalidLockOptionsError,
    /must be a string starting with redis:\/\/ or rediss:\/\//,
  ),
  alone(
    'redisBackend commandTimeout 0',
    () => redisBackend({ url: REDIS_URL, commandTimeout: 0 }),
    InvalidLockOptionsError,
    /commandTimeout must be an integer number of milliseconds/,
  ),
  alone(
    'redisBackend quorum of 2',
    () => redisBackend({ quorum: [REDIS_URL, REDIS_URL] }),
    InvalidLockOptionsError,
    /odd number \(at least 3\)/,
  ),
  alone(
    'redisBackend client that is not ioredis',
    () => redisBackend({ client: {} as never }),
    InvalidLockOptionsError,
    /client must be an ioredis Redis or Cluster instance/,
  ),
  alone(
    'redisBackend unknown option',
    () => redisBackend({ host: 'x' } as never),
    InvalidLockOptionsError,
    /Invalid redisBackend options/,
  ),
  alone(
    'Redis down at start',
    async () => {
      const backend = redisBackend({ url: `redis://127.0.0.1:${closedPort}` });
      await firstLockCall(backend, 'down:');
    },
    LockBackendError,
    new RegExp(`cannot reach (Redis at )?127\\.0\\.0\\.1:${'\\d+'}`),
  ),
  alone(
    'Redis with a user it does not have, the password never shown',
    async () => {
      const backend = redisBackend({ url: `${REDIS_URL.replace('redis://', 'redis://nobody:s3cret-pw@')}` });
      await firstLockCall(backend, 'auth:', 's3cret-pw');
    },
    LockBackendError,
    /Lock backend redis failed/,
  ),
  // PostgreSQL backend options
  alone(
    'postgresBackend table with a quote',
    () => postgresBackend({ connection: DATABASE_URL, table: 'locks"; drop' }),
    InvalidLockOptionsError,
    /Invalid postgresBackend table: expected an identifier/,
  ),
  alone(
    'postgresBackend pool and connection',
    () => postgresBackend({ connection: DATABASE_URL, pool: new Pool() }),
    InvalidLockOptionsError,
    /give exactly one of `pool`/,
  ),
  alone(
    'postgresBackend statementTimeout 0',
    () => postgresBackend({ connection: DATABASE_URL, statementTimeout: 0 }),
    InvalidLockOptionsError,
    /Invalid postgresBackend statementTimeout/,
  ),
  alone(
    "postgresBackend durability 'fast'",
    () => postgresBackend({ connection: DATABASE_URL, durability: 'fast' as never }),
    InvalidLockOptionsError,
    /expected 'full' or 'relaxed'/,
  ),
  alone(
    'PostgreSQL down at start',
    async () => {
      const backend = postgresBackend({
        connection: `postgres://postgres:pw-hidden@127.0.0.1:${closedPort}/test`,
        applicationName: appName,
      });
      await firstLockCall(backend, 'down:', 'pw-hidden');
    },
    LockBackendError,
    /cannot reach PostgreSQL at 127\.0\.0\.1:\d+, database "test", user "postgres"/,
  ),
  alone(
    'PostgreSQL with a user that does not exist',
    async () => {
      const url = new URL(DATABASE_URL);
      url.username = 'no_such_user_dl';
      const backend = postgresBackend({ connection: url.toString(), schema, applicationName: appName });
      await firstLockCall(backend, 'auth:');
    },
    LockBackendError,
    /user "no_such_user_dl".*role "no_such_user_dl" does not exist/,
  ),
  alone(
    'PostgreSQL table missing with migrate: false, the SQL shown',
    async () => {
      const backend = postgresBackend({
        connection: DATABASE_URL,
        schema: `${schema}_missing`,
        migrate: false,
        applicationName: appName,
      });
      await firstLockCall(backend, 'missing:');
    },
    LockBackendError,
    /missing .* and migrate is false\. Create them with this SQL .*\n.*CREATE TABLE IF NOT EXISTS/s,
  ),
];

/** Timers and sockets created while a row runs, and not yet gone: what the row left behind. */
class ResourceTracker {
  private readonly alive = new Map<number, string>();
  private creating = false;
  private readonly hook = createHook({
    init: (id, type) => {
      if (!this.creating || !(type === 'Timeout' || type.startsWith('TCP') || type === 'PIPEWRAP')) return;
      const stack = new Error().stack!.split('\n').slice(5, 10).join(' < ');
      // Jest's own reporter ticks in this process (--runInBand); it is not the row's.
      if (!/node_modules\/(@jest|jest-)/.test(stack)) this.alive.set(id, `${type} ${stack}`);
    },
    destroy: (id) => {
      this.alive.delete(id);
    },
  });

  start(): void {
    this.alive.clear();
    this.creating = true;
    this.hook.enable();
  }

  /** Stops counting new resources; the ones counted are still watched until `close()`. */
  stopCreating(): void {
    this.creating = false;
  }

  left(): string[] {
    return [...this.alive.values()].sort();
  }

  close(): void {
    this.hook.disable();
  }
}

async function settle(ms = 50): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

describe('bad input', () => {
  let admin: Redis;
  let pg: Client;

  beforeAll(async () => {
    admin = new Redis(REDIS_URL);
    pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
  });
  afterAll(async () => {
    admin.disconnect();
    await pg.end();
    await dropSchema(DATABASE_URL, schema);
  });

  type Case = [string, Row, BackendKind | undefined];
  const cases = rows.flatMap((row): Case[] =>
    row.on ? row.on.map((kind): Case => [`${row.name} (${kind})`, row, kind]) : [[row.name, row, undefined]],
  );

  it('has at least 40 rows across the service, the decorator, module and backend options', () => {
    expect(rows.length).toBeGreaterThanOrEqual(40);
  });

  it.each(cases)('%s', async (_name, row, kind) => {
    const prefix = `bad:${randomBytes(4).toString('hex')}:`;
    const tracker = new ResourceTracker();

    tracker.start();
    let ctx: Ctx | undefined;
    if (kind) {
      const backend =
        kind === 'memory'
          ? memoryBackend()
          : kind === 'redis'
            ? redisBackend({ url: REDIS_URL })
            : postgresBackend({ connection: DATABASE_URL, schema, applicationName: appName });
      const locks = new DistributedLockService({ backend, keyPrefix: prefix, ttl: 5_000, wait: 200 });
      ctx = {
        locks,
        backend,
        kind,
        held: async () => (await locks.tryAcquire(`held-${randomBytes(2).toString('hex')}`))!,
      };
    }

    let outcome: unknown;
    try {
      await (ctx ? row.run(ctx) : row.run(undefined as never));
    } catch (error) {
      outcome = error;
    }
    if (row.error) {
      expect(outcome).toBeInstanceOf(row.error);
      expect((outcome as Error).message).toMatch(row.message!);
    } else {
      expect(outcome).toBeUndefined();
    }

    if (ctx) {
      // Nothing held: every key this row touched is free at once, then the service shuts down.
      expect(await ctx.locks.tryAcquire('k', { ttl: 1_000 })).not.toBeNull();
      await (ctx.locks as DistributedLockService).shutdown();
    }
    tracker.stopCreating();
    await settle();
    // No timer or socket of the row is still there (a Redis or PostgreSQL connection left open
    // keeps its socket); the shared servers may have other clients, so they are not counted there.
    const left = tracker.left();
    tracker.close();
    expect(left).toEqual([]);
    expect(await admin.keys(`*${prefix}*`)).toEqual([]);
    const leftRows = await pg
      .query(`SELECT count(*)::int AS n FROM "${schema}".distributed_locks WHERE key LIKE $1 AND token IS NOT NULL`, [
        `${prefix}%`,
      ])
      .catch(() => ({ rows: [{ n: 0 }] }));
    expect(leftRows.rows[0].n).toBe(0);
    const sessions = await pg.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE $1`, [
      `${appName}%`,
    ]);
    expect(sessions.rows[0].n).toBe(0);
  });
});
