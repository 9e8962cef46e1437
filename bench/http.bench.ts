import 'reflect-metadata';
import { Controller, Get, type INestApplication, Module, Param } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { LockModule, WithLock, memoryBackend, type LockBackend } from '../lib';
import { redisBackend } from '../lib/redis';
import { lockScriptKeys, redisLockKeys } from '../lib/backends/redis/redis-key-layout';
import { newLockToken } from '../lib/lock-token';
import { lockScripts } from '../lib/backends/redis/redis-lock.scripts';
import { BENCH_OPTIONS, resultsWriter } from './harness/results-file';

/**
 * `npm run bench:http [-- --seconds S --rounds R --connections C --json <file> --quick]`: what `@WithLock` costs an Express
 * route, with autocannon on loopback. Each request takes a key of its own (no contention: the cost of
 * the lock itself). Routes are measured in the same run, interleaved, for several rounds:
 * - memory: `@WithLock` on the memory backend against the same route without a lock;
 * - Redis: `@WithLock` on the Redis backend against a route that makes the same two round trips with
 *   bare ioredis (SET NX PX, then DEL), the floor of any Redis lock; and, in the same rounds, a
 *   route that runs this library's two scripts (acquire, release) through bare ioredis, with none of
 *   the library's JavaScript: what is left between it and `@WithLock` is the library's own cost in
 *   the process, what is between it and SET/DEL is the scripts' cost on the Redis server.
 * --quick makes the defaults 1 s per route and 2 rounds.
 */

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `bench-http:${randomBytes(4).toString('hex')}:`;
const bare = new Redis(redisUrl);
const scripts = lockScripts();

@Controller()
class RoutesController {
  @Get('plain/:id')
  plain(@Param('id') id: string) {
    return { id };
  }

  @Get('locked/:id')
  @WithLock((id: string) => `http:${id}`, { wait: 0 })
  locked(@Param('id') id: string) {
    return { id };
  }

  @Get('bare/:id')
  async bareRedis(@Param('id') id: string) {
    const key = `${prefix}bare:${id}`;
    await bare.set(key, '1', 'PX', 30_000, 'NX');
    await bare.del(key);
    return { id };
  }

  @Get('scripts/:id')
  async scripts(@Param('id') id: string) {
    const keys = lockScriptKeys(redisLockKeys(`${prefix}scripts:${id}`));
    // A token as the library draws it, then the publish mode ("p") and the fence floor (0).
    const token = `${newLockToken()}p0`;
    await bare.evalsha(scripts.acquire.sha, scripts.acquire.numberOfKeys, ...keys, token, 30_000);
    await bare.evalsha(scripts.release.sha, scripts.release.numberOfKeys, ...keys, token);
    return { id };
  }
}

function appModule(backend: LockBackend) {
  @Module({ imports: [LockModule.forRoot({ backend, keyPrefix: prefix })], controllers: [RoutesController] })
  class HttpBenchModule {}
  return HttpBenchModule;
}

interface RouteFigures {
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

/** One round of the HTTP benchmark: the routes of one backend, as the JSON results keep it. */
export interface HttpRound {
  backend: string;
  round: number;
  /** The route without a lock ('plain') or with bare ioredis ('bare'). */
  baseline: string;
  /** The order the routes ran in this round. */
  order: string[];
  baselineRoute: RouteFigures;
  lockedRoute: RouteFigures;
  /** @WithLock req/s ÷ baseline req/s. */
  ratio: number;
  /** Redis: the route that runs the library's two scripts through bare ioredis, and its req/s ÷ baseline req/s. */
  scriptsRoute?: RouteFigures;
  scriptsRatio?: number;
}

async function measure(url: string, route: string, seconds: number, connections: number): Promise<RouteFigures> {
  let counter = 0;
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, path: `/${route}/${counter++}` }) }],
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${route}: ${result.non2xx} non-2xx answers and ${result.errors} errors`);
  }
  return {
    requestsPerSecond: result.requests.average,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
  };
}

async function compare(
  name: string,
  backend: LockBackend,
  baseline: string,
  options: { seconds: number; rounds: number; connections: number },
  /** Also measure the route running the library's scripts through bare ioredis (Redis only). */
  withScripts = false,
): Promise<{ printed: Array<Record<string, string | number>>; rounds: HttpRound[] }> {
  const app: INestApplication = await NestFactory.create(appModule(backend), { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const url = await app.getUrl();
  const rows: Array<Record<string, string | number>> = [];
  const rounds: HttpRound[] = [];
  try {
    // A short warm-up of every route, not counted.
    const routes = withScripts ? [baseline, 'scripts', 'locked'] : [baseline, 'locked'];
    for (const route of routes) await measure(url, route, 1, options.connections);
    for (let round = 1; round <= options.rounds; round++) {
      // The order alternates, so no route always runs on a warmer process.
      const order = round % 2 === 1 ? routes : [...routes].reverse();
      const figures: Record<string, RouteFigures> = {};
      for (const route of order) figures[route] = await measure(url, route, options.seconds, options.connections);
      const baselineRps = figures[baseline].requestsPerSecond;
      const result: HttpRound = {
        backend: name,
        round,
        baseline,
        order,
        baselineRoute: figures[baseline],
        lockedRoute: figures.locked,
        ratio: figures.locked.requestsPerSecond / baselineRps,
        ...(withScripts
          ? { scriptsRoute: figures.scripts, scriptsRatio: figures.scripts.requestsPerSecond / baselineRps }
          : {}),
      };
      rounds.push(result);
      rows.push({
        backend: name,
        round,
        [`${baseline} req/s`]: Math.round(baselineRps),
        ...(result.scriptsRatio !== undefined
          ? {
              'scripts only req/s': Math.round(figures.scripts.requestsPerSecond),
              'scripts ratio': result.scriptsRatio.toFixed(3),
            }
          : {}),
        '@WithLock req/s': Math.round(figures.locked.requestsPerSecond),
        ratio: result.ratio.toFixed(3),
      });
    }
  } finally {
    await app.close();
  }
  return { printed: rows, rounds };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ...BENCH_OPTIONS,
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string', default: '32' },
    },
  });
  const save = await resultsWriter('http', values);
  const options = {
    seconds: Number(values.seconds ?? (values.quick ? 1 : 5)),
    rounds: Number(values.rounds ?? (values.quick ? 2 : 4)),
    connections: Number(values.connections),
  };
  console.log(
    `HTTP overhead of @WithLock (Express, autocannon, ${options.connections} connections, ${options.seconds} s per route, ` +
      `${options.rounds} rounds interleaved, a key per request)`,
  );
  const memory = await compare('memory', memoryBackend(), 'plain', options);
  console.table(memory.printed);
  await bare.script('LOAD', scripts.acquire.lua);
  await bare.script('LOAD', scripts.release.lua);
  const redis = await compare('redis', redisBackend({ url: redisUrl }), 'bare', options, true);
  console.table(redis.printed);
  const mean = (rows: Array<Record<string, string | number>>, column = 'ratio'): string =>
    (rows.reduce((sum, row) => sum + Number(row[column]), 0) / rows.length).toFixed(3);
  console.log(
    `Mean ratio: memory ${mean(memory.printed)} × the route without a lock; Redis ${mean(redis.printed)} × bare ioredis (same two round trips).`,
  );
  console.log(
    `Redis, the library's two scripts through bare ioredis (no library code in the process): ${mean(redis.printed, 'scripts ratio')} × bare ioredis.`,
  );
  console.log('Targets: ≥ 0.95× in both.');
  save({
    settings: { ...options, framework: 'express', warmUpSeconds: 1 },
    rounds: [...memory.rounds, ...redis.rounds],
  });
  bare.disconnect();
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
