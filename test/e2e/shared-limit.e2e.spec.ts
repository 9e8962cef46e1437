import { Controller, Get, Injectable, Module, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLock, LockModule, memoryBackend, WithLock, type LockBackend } from '../../lib';

/**
 * `@WithLock` with `mode: 'shared'` and with `limit`, on real Nest apps over HTTP: catalog reads
 * share the key and a rebuild runs alone; renders run at most two at once. Every request records
 * when its method ran, and the test checks the overlaps.
 */

interface Run {
  what: 'read' | 'rebuild' | 'render';
  start: number;
  end: number;
  fence: bigint;
}

@Injectable()
class Runs {
  readonly log: Run[] = [];

  async record(what: Run['what'], ms: number): Promise<{ fence: string }> {
    const run: Run = { what, start: performance.now(), end: Infinity, fence: currentLock()!.fence };
    this.log.push(run);
    await sleep(ms);
    run.end = performance.now();
    return { fence: String(run.fence) };
  }
}

@Controller()
class CatalogController {
  constructor(private readonly runs: Runs) {}

  @Get('catalog')
  @WithLock('catalog', { mode: 'shared', wait: 20_000 })
  read() {
    return this.runs.record('read', 30);
  }

  @Post('catalog/rebuild')
  @WithLock('catalog', { wait: 20_000 })
  rebuild() {
    return this.runs.record('rebuild', 30);
  }

  @Post('render')
  @WithLock('pdf-render', { limit: 2, wait: 20_000 })
  render() {
    return this.runs.record('render', 30);
  }
}

@Module({})
class CatalogModule {
  static register(backend: LockBackend) {
    return {
      module: CatalogModule,
      imports: [LockModule.forRoot({ backend, keyPrefix: 'catalog-e2e:' })],
      controllers: [CatalogController],
      providers: [Runs],
    };
  }
}

const overlapping = (log: readonly Run[], run: Run): Run[] =>
  log.filter((other) => other !== run && other.start < run.end && run.start < other.end);

/** The most runs of `log` in progress at one moment. */
function mostAtOnce(log: readonly Run[]): number {
  const points = log.flatMap((run) => [
    { at: run.start, delta: 1 },
    { at: run.end, delta: -1 },
  ]);
  points.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let most = 0;
  for (const point of points) most = Math.max(most, (now += point.delta));
  return most;
}

describe.each([
  ['Express', () => new ExpressAdapter()],
  ['Fastify', () => new FastifyAdapter()],
] as const)('@WithLock shared and limited on %s, memory backend', (_platform, adapter) => {
  let app: INestApplication;
  let url: string;

  beforeEach(async () => {
    app = await NestFactory.create(CatalogModule.register(memoryBackend()), adapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    url = await app.getUrl();
  });

  afterEach(() => app.close());

  it('serves reads together and a rebuild alone', async () => {
    const requests = Array.from({ length: 24 }, (_, i) =>
      i % 6 === 3 ? fetch(`${url}/catalog/rebuild`, { method: 'POST' }) : fetch(`${url}/catalog`),
    );
    const answers = await Promise.all(requests);
    expect(answers.map((answer) => answer.status).filter((status) => status >= 300)).toEqual([]);
    const log = app.get(Runs).log;
    expect(log).toHaveLength(24);
    for (const rebuild of log.filter((run) => run.what === 'rebuild')) expect(overlapping(log, rebuild)).toEqual([]);
    // Reads did share the key: some read ran while another did.
    expect(log.filter((run) => run.what === 'read').some((read) => overlapping(log, read).length > 0)).toBe(true);
  });

  it('runs at most two renders at once, each with its own fence', async () => {
    const answers = await Promise.all(Array.from({ length: 10 }, () => fetch(`${url}/render`, { method: 'POST' })));
    expect(answers.map((answer) => answer.status)).toEqual(Array.from({ length: 10 }, () => 201));
    const log = app.get(Runs).log;
    expect(mostAtOnce(log)).toBe(2);
    expect(new Set(log.map((run) => run.fence)).size).toBe(10);
  });
});
