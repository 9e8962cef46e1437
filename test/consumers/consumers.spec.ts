import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../support/postgres-database';
import { deleteSharedKeys, SHARED_REDIS_URL, testRunPrefix } from '../support/shared-redis';

/**
 * The package as users get it: `npm pack`, then a plain `npm install` of the tarball (no
 * --legacy-peer-deps) into apps laid out as `nest new` makes them, outside this repository (so
 * nothing resolves from its node_modules). Each app compiles with its CLI's tsconfig, boots, and
 * answers a busy @WithLock route with 409, on Express and on Fastify.
 *
 * - nest12-esm: CLI 12 (ES modules, TypeScript 6, nodenext, strict, isolatedModules), Nest 12, memory
 *   backend; also compiled with strict + skipLibCheck: false with neither ioredis nor pg installed;
 *   runs the conformance kit (`nestjs-distributed-lock/testing`) under vitest.
 * - nest11-cjs: CLI 11 (CommonJS, TypeScript 5.9, nodenext), Nest 11, the Redis and PostgreSQL
 *   backends from their subpaths; also compiled with node10 module resolution (typesVersions).
 *
 * Installs use npm's cache (~/.npm) and prefer what it holds; the run prints how long each took.
 */
const ROOT = resolve(__dirname, '..', '..');
const HERE = __dirname;
const INSTALL_TIMEOUT = 10 * 60_000;
const COMPILE_TIMEOUT = 3 * 60_000;

/** The environment for npm and the apps: without the npm_* variables of the `npm run` that started us. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!name.startsWith('npm_') && name !== 'INIT_CWD') env[name] = value;
  return { ...env, ...extra };
}

/** Runs a command to its end, bounded in time; rejects with its output when it fails. */
function run(command: string, args: string[], cwd: string, timeout: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${command}: ${error.message}`));
    });
    // 'close': the output is whole by then, which 'exit' does not wait for.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(output);
      else
        reject(
          new Error(
            `${command} ${args.join(' ')} (in ${cwd}) ${signal ? `was killed (${signal}, limit ${timeout} ms)` : `exited with ${code}`}:\n${output.slice(-6000)}`,
          ),
        );
    });
  });
}

const timings: string[] = [];

async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    timings.push(`${what}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
}

let workDir: string;
let tarball: string;
let packedFiles: string[];

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'ndl-consumers-'));
  // prepack builds dist/ first, so the tarball is what `npm publish` would upload.
  const packed = await timed('npm pack', () =>
    run('npm', ['pack', '--json', '--pack-destination', workDir], ROOT, COMPILE_TIMEOUT),
  );
  const [{ filename, files }] = JSON.parse(packed.slice(packed.indexOf('[\n'))) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  tarball = join(workDir, filename);
  packedFiles = files.map((f) => f.path);
}, COMPILE_TIMEOUT);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  console.log(`consumer apps, times on this machine:\n  ${timings.join('\n  ')}`);
});

/** Copies the app's files (its own beside the shared sources of test/consumers/app) and installs it. */
async function installApp(name: string): Promise<string> {
  const dir = join(workDir, name);
  cpSync(join(HERE, 'app'), dir, { recursive: true });
  cpSync(join(HERE, name), dir, { recursive: true });
  await timed(`${name}: npm install`, () =>
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], dir, INSTALL_TIMEOUT),
  );
  return dir;
}

function tsc(dir: string, project: string, what: string, extra: string[] = []): Promise<string> {
  return timed(what, () =>
    run(
      process.execPath,
      [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project, ...extra],
      dir,
      COMPILE_TIMEOUT,
    ),
  );
}

interface RunningApp {
  url: string;
  stop(): Promise<void>;
}

/** Starts `node dist/main.js` and waits for the URL it prints (bounded). */
async function boot(dir: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<RunningApp> {
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, join(dir, 'dist', 'main.js')], {
    cwd: dir,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`the app did not start within 30 s:\n${output}`)), 30_000);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the app exited at start:\n${output}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output += `${line}\n`;
      const match = /listening at (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1].replace('[::1]', '127.0.0.1'));
      }
    });
  }).catch(async (error: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw error;
  });
  return {
    url,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function call(url: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { method, signal: AbortSignal.timeout(25_000) });
  return { status: response.status, body: await response.json() };
}

/** Holds order 1 in one request; a second request on the busy order gets 409; the lock is free after. */
async function expectBusyRouteAnswers409(app: RunningApp, backend: string): Promise<void> {
  expect(await call(`${app.url}/health`)).toEqual({ status: 200, body: { backend, answers: true } });
  expect(await call(`${app.url}/identity`)).toEqual({
    status: 200,
    body: {
      requireAndImportSameLibrary: true,
      injectedIsTheImportedClass: true,
      libraryModuleIsTheImportedOne: true,
      librarySeesTheAppsNestCommon: true,
      librarySeesTheAppsNestCore: true,
    },
  });
  const holder = call(`${app.url}/orders/1/hold`, 'POST');
  let holding = false;
  for (let i = 0; i < 100 && !holding; i++) {
    holding = (await call(`${app.url}/orders/1/holding`)).body.holding === true;
    if (!holding) await new Promise((r) => setTimeout(r, 100));
  }
  expect(holding).toBe(true);
  const busy = await call(`${app.url}/orders/1/hold`, 'POST');
  expect(busy).toEqual({
    status: 409,
    body: {
      statusCode: 409,
      error: 'Conflict',
      message: expect.stringMatching(/^Lock "order:1" is busy/),
      key: 'order:1',
    },
  });
  expect(await call(`${app.url}/orders/1/release`, 'POST')).toEqual({ status: 201, body: { released: true } });
  const held = await holder;
  expect(held).toEqual({ status: 201, body: { id: '1', fence: expect.stringMatching(/^\d+$/) } });
  // Released after the route: the next request gets it, with a greater fence.
  const next = call(`${app.url}/orders/1/hold`, 'POST');
  for (let i = 0; i < 100 && (await call(`${app.url}/orders/1/release`, 'POST')).body.released !== true; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const again = await next;
  expect(again.status).toBe(201);
  expect(BigInt(again.body.fence)).toBeGreaterThan(BigInt(held.body.fence));
}

/** Every module a .d.ts of the package imports, following relative imports from `entry`. */
function declarationImports(entry: string): Set<string> {
  const seen = new Set<string>();
  const modules = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
      if (!spec.startsWith('.')) modules.add(spec);
      else
        for (const candidate of [
          `${resolve(dirname(file), spec)}.d.ts`,
          join(resolve(dirname(file), spec), 'index.d.ts'),
        ]) {
          if (existsSync(candidate)) {
            visit(candidate);
            break;
          }
        }
    }
  };
  visit(entry);
  return modules;
}

describe('the tarball', () => {
  it('holds package.json, README.md, CHANGELOG.md, per module of lib/ its .js, .d.ts and .js.map, and the SQL and Lua files of lib/', () => {
    const modules = packedFiles.filter((f) => f.endsWith('.js') && f.startsWith('dist/')).map((f) => f.slice(0, -3));
    expect(modules.length).toBeGreaterThan(30);
    const scripts = readdirSync(join(ROOT, 'lib'), { recursive: true, encoding: 'utf8' })
      .filter((f) => /\.(sql|lua)$/.test(f))
      .map((f) => `dist/${f.split('\\').join('/')}`);
    const expected = [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      ...modules.flatMap((m) => [`${m}.js`, `${m}.d.ts`, `${m}.js.map`]),
      ...scripts,
    ];
    expect([...packedFiles].sort()).toEqual(expected.sort());
    for (const entry of ['dist/index', 'dist/redis', 'dist/postgres', 'dist/testing']) expect(modules).toContain(entry);
  });
});

describe('Nest 12 app, ES modules, as CLI 12 lays it out', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await installApp('nest12-esm');
  }, INSTALL_TIMEOUT + COMPILE_TIMEOUT);

  it('installs without ioredis or pg, and the root types import neither', () => {
    const pkg = join(dir, 'node_modules', 'nestjs-distributed-lock');
    expect(existsSync(join(pkg, 'dist', 'index.js'))).toBe(true);
    expect(existsSync(join(dir, 'node_modules', 'ioredis'))).toBe(false);
    expect(existsSync(join(dir, 'node_modules', 'pg'))).toBe(false);
    const imported = [...declarationImports(join(pkg, 'dist', 'index.d.ts'))];
    expect(imported.filter((m) => /^(ioredis|pg)(\/|$)/.test(m))).toEqual([]);
    expect(imported.filter((m) => !/^(@nestjs\/(common|core)(\/|$)|node:)/.test(m))).toEqual([]);
  });

  it('ships source maps that carry their sources', () => {
    const dist = join(dir, 'node_modules', 'nestjs-distributed-lock', 'dist');
    const maps = readdirSync(dist, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(30);
    for (const file of maps) {
      const map = JSON.parse(readFileSync(join(dist, file), 'utf8')) as {
        sources: string[];
        sourcesContent?: string[];
      };
      expect(map.sourcesContent?.length).toBe(map.sources.length);
      expect(map.sourcesContent!.every((text) => text.length > 0)).toBe(true);
    }
  });

  it(
    'compiles with the CLI 12 tsconfig (TypeScript 6, nodenext, isolatedModules, emitDecoratorMetadata)',
    async () => {
      await tsc(dir, 'tsconfig.build.json', 'nest12-esm: tsc (CLI tsconfig)');
      expect(existsSync(join(dir, 'dist', 'main.js'))).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it(
    'compiles with strict: true and skipLibCheck: false, neither ioredis nor pg installed',
    async () => {
      await tsc(dir, 'tsconfig.strict.json', 'nest12-esm: tsc (strict, skipLibCheck false)');
    },
    COMPILE_TIMEOUT,
  );

  it(
    'runs the conformance kit from nestjs-distributed-lock/testing under vitest, on the memory backend',
    async () => {
      // Type-checks the spec against the kit's published types (vitest's functions as its test API), then runs it.
      await tsc(dir, 'tsconfig.json', 'nest12-esm: tsc (the vitest spec, noEmit)', ['--noEmit']);
      const printed = await timed('nest12-esm: vitest run (the conformance kit)', () =>
        run(
          process.execPath,
          [join(dir, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter', 'verbose'],
          dir,
          COMPILE_TIMEOUT,
        ),
      );
      // eslint-disable-next-line no-control-regex -- the terminal colours vitest prints
      const output = printed.replace(/\x1b\[[0-9;]*m/g, '');
      expect(output).toContain(
        'LockBackend contract: memory (vitest) > declares the capabilities the suite is run for (fifo, fencing strict, modes shared, limit)',
      );
      expect(output).toContain('lease modes against a model: memory (vitest) > keeps rule 7 for limited locks');
      expect(output).toContain('not checked (the target has no evict)');
      expect(output).toContain(
        'lock model with the real scheduler: memory (vitest) > never leaves a key to a token that gave up',
      );
      const passed = /Tests\s+(\d+) passed \((\d+)\)/.exec(output);
      expect(passed && passed[1] === passed[2] && Number(passed[1]) >= 40).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it.each(['express', 'fastify'])(
    'boots on %s and answers a busy @WithLock route with 409',
    async (platform) => {
      const app = await boot(dir, { PLATFORM: platform, LOCK_TTL: '30s', LOCK_WAIT: '0' });
      try {
        await expectBusyRouteAnswers409(app, 'memory');
      } finally {
        await app.stop();
      }
    },
    90_000,
  );

  it('maps a stack trace inside the library to its TypeScript lines (--enable-source-maps)', async () => {
    const app = await boot(dir, { PLATFORM: 'express' }, ['--enable-source-maps']);
    try {
      const { body } = await call(`${app.url}/library-stack`);
      expect(body.stack).toMatch(/^InvalidLockOptionsError: Invalid lock key/);
      expect(body.stack).toMatch(/node_modules\/nestjs-distributed-lock\/lib\/lock\.validation\.ts:\d+:\d+/);
    } finally {
      await app.stop();
    }
  }, 90_000);
});

describe('Nest 11 app, CommonJS, as CLI 11 lays it out, on the Redis and PostgreSQL backends', () => {
  let dir: string;
  const prefix = testRunPrefix('consumer');
  const schema = uniqueSchemaName('consumer');

  beforeAll(async () => {
    dir = await installApp('nest11-cjs');
  }, INSTALL_TIMEOUT + COMPILE_TIMEOUT);

  afterAll(async () => {
    await deleteSharedKeys(prefix);
    await deleteSharedKeys(`{${prefix}`);
    await dropSchema(sharedDatabaseUrl(), schema);
  });

  it(
    'compiles with the CLI 11 tsconfig (TypeScript 5.9, nodenext, CommonJS)',
    async () => {
      await tsc(dir, 'tsconfig.build.json', 'nest11-cjs: tsc (CLI tsconfig)');
      expect(existsSync(join(dir, 'dist', 'main.js'))).toBe(true);
    },
    COMPILE_TIMEOUT,
  );

  it('loads the conformance kit without fast-check installed, and names the install when a model case runs', async () => {
    expect(existsSync(join(dir, 'node_modules', 'fast-check'))).toBe(false);
    // The kit's cases registered through a minimal runner, then the model case run: it needs fast-check.
    const script = [
      "const kit = require('nestjs-distributed-lock/testing');",
      "const { memoryBackend } = require('nestjs-distributed-lock');",
      'const cases = [];',
      'const api = { describe: (n, b) => b(), it: (n, b) => cases.push(b), expect: () => ({}), beforeEach() {}, afterEach() {}, afterAll() {} };',
      "kit.describeLockModelProperty(api, { name: 'memory', create: () => memoryBackend() });",
      "cases[0]().then(() => console.log('no error'), (e) => console.log(e.message));",
    ].join('\n');
    const output = await run(process.execPath, ['-e', script], dir, COMPILE_TIMEOUT);
    expect(output).toContain('the model tests need the "fast-check" package (version 4), an optional peer dependency');
    expect(output).toContain('npm install --save-dev fast-check@4');
  });

  it(
    'compiles the subpath imports with node10 module resolution too',
    async () => {
      await tsc(dir, 'tsconfig.node10.json', 'nest11-cjs: tsc (node10 resolution)');
    },
    COMPILE_TIMEOUT,
  );

  it.each([
    ['express', 'redis'],
    ['fastify', 'postgres'],
  ])(
    'boots on %s with the %s backend and answers a busy @WithLock route with 409',
    async (platform, store) => {
      const app = await boot(dir, {
        PLATFORM: platform,
        LOCK_STORE: store,
        LOCK_PREFIX: prefix,
        LOCK_SCHEMA: schema,
        LOCK_TTL: '30000',
        LOCK_WAIT: '0',
        REDIS_URL: SHARED_REDIS_URL,
        DATABASE_URL: sharedDatabaseUrl(),
      });
      try {
        await expectBusyRouteAnswers409(app, store);
      } finally {
        await app.stop();
      }
    },
    90_000,
  );
});
