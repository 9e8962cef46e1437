import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { memoryBackend } from '../../lib';
import { AppModule } from '../../sample/app.module';
import { RecordingBackend } from '../support/recording-backend';

/** The demo app over real HTTP, on both of Nest's HTTP platforms. */
describe.each([
  ['Express', () => new ExpressAdapter()],
  ['Fastify', () => new FastifyAdapter()],
])('counter app on %s', (_platform, adapter) => {
  let app: INestApplication;
  let url: string;
  let backend: RecordingBackend;
  /** The counter store is shared by every app in the process: each test counts under its own name. */
  let run = 0;
  const unique = (name: string): string => `${name}-${_platform}-${++run}`;

  const post = async (
    path: string,
  ): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | null }> => {
    const response = await fetch(`${url}${path}`, { method: 'POST' });
    return {
      status: response.status,
      body: (await response.json()) as Record<string, unknown>,
      retryAfter: response.headers.get('retry-after'),
    };
  };
  const count = async (name: string): Promise<number> =>
    ((await (await fetch(`${url}/counters/${name}`)).json()) as { value: number }).value;

  beforeEach(async () => {
    backend = new RecordingBackend(memoryBackend());
    app = await NestFactory.create(AppModule.register(backend), adapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    url = await app.getUrl();
  });
  afterEach(() => app.close());

  it('loses no update across 50 concurrent read-modify-write requests under @WithLock', async () => {
    const name = unique('locked');
    const results = await Promise.all(Array.from({ length: 50 }, () => post(`/counters/${name}/safe`)));
    expect(results.map((r) => r.status)).toEqual(new Array(50).fill(201));
    expect(await count(name)).toBe(50);
    const fences = results.map((r) => BigInt(r.body.fence as string));
    expect(new Set(fences).size).toBe(50);
  });

  it('shows the lost updates of the same work without a lock', async () => {
    const name = unique('unlocked');
    await Promise.all(Array.from({ length: 50 }, () => post(`/counters/${name}/unsafe`)));
    expect(await count(name)).toBeLessThan(50);
  });

  it('answers 409 with the key to the losers when the handler does not wait', async () => {
    const name = unique('eager');
    const results = await Promise.all(Array.from({ length: 50 }, () => post(`/counters/${name}/now`)));
    const won = results.filter((r) => r.status === 201);
    const lost = results.filter((r) => r.status === 409);
    expect(won.length + lost.length).toBe(50);
    expect(won.length).toBeGreaterThanOrEqual(1);
    expect(lost.length).toBeGreaterThanOrEqual(1);
    expect(lost[0].body).toEqual({
      statusCode: 409,
      error: 'Conflict',
      key: `counter:${name}`,
      message: `Lock "counter:${name}" is busy: not acquired within 0 ms`,
    });
    expect(await count(name)).toBe(won.length);
    // The holder's lease (the default 30 s TTL) had that long left at most, in whole seconds.
    for (const loser of lost) expect(Number(loser.retryAfter)).toBeGreaterThanOrEqual(1);
    for (const loser of lost) expect(Number(loser.retryAfter)).toBeLessThanOrEqual(30);
  });

  it('answers 503 without internals when the backend fails', async () => {
    backend.fail.add('tryAcquire');
    const result = await post('/counters/down/safe');
    expect(result).toEqual({
      status: 503,
      body: { statusCode: 503, error: 'Service Unavailable', message: 'Lock backend memory is unavailable' },
      retryAfter: null,
    });
  });

  it('keeps other errors on the default path', async () => {
    const response = await fetch(`${url}/counters/x/missing`, { method: 'POST' });
    expect(response.status).toBe(404);
  });
});
