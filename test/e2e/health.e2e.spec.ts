import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { LockModule, memoryBackend, type LockBackend } from '../../lib';
import { postgresBackend } from '../../lib/postgres';
import { redisBackend } from '../../lib/redis';
import { LockHealthIndicator } from '../../lib/terminus';
import { freePort } from '../support/free-port';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../support/postgres-database';
import { sharedRedisOptions, testRunPrefix } from '../support/shared-redis';

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly locks: LockHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.locks.isHealthy('locks', { timeout: 1_000 })]);
  }
}

function appModule(backend: LockBackend) {
  @Module({
    imports: [TerminusModule.forRoot({ logger: false }), LockModule.forRoot({ backend })],
    controllers: [HealthController],
    providers: [LockHealthIndicator],
  })
  class HealthAppModule {}
  return HealthAppModule;
}

const schema = uniqueSchemaName('dl_health');
afterAll(() => dropSchema(sharedDatabaseUrl(), schema));

/** A port nobody listens on, and a password that must never reach a response. */
const SECRET = 'do-not-show-me';

describe.each([
  [
    'memory',
    () => memoryBackend(),
    async () => {
      const backend = memoryBackend();
      await backend.close();
      return backend;
    },
  ],
  [
    'redis',
    () => redisBackend({ connection: sharedRedisOptions(testRunPrefix('health')) }),
    async () =>
      redisBackend({
        connection: { host: '127.0.0.1', port: await freePort(), password: SECRET },
        commandTimeout: 300,
      }),
  ],
  [
    'postgres',
    () => postgresBackend({ connection: sharedDatabaseUrl(), schema }),
    async () =>
      postgresBackend({ connection: `postgres://postgres:${SECRET}@127.0.0.1:${await freePort()}/test`, schema }),
  ],
] as const)('LockHealthIndicator in a terminus health check over HTTP, on %s', (kind, up, down) => {
  let app: INestApplication | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  async function get(backend: LockBackend): Promise<{ status: number; body: Record<string, unknown> }> {
    app = await NestFactory.create(appModule(backend), { logger: false });
    await app.listen(0, '127.0.0.1');
    const response = await fetch(`${await app.getUrl()}/health`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  it('reports up, with the backend kind and the leases held', async () => {
    // Once the backend has answered: on a busy server, the first connection and the schema's
    // creation can take longer than the check's 1 s timeout (the check then reports down, rightly).
    const backend = up();
    await backend.ping();
    const { status, body } = await get(backend);
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'ok', info: { locks: { status: 'up', backend: kind, held: 0 } } });
  });

  it('reports down with a message and no credentials when the backend does not answer', async () => {
    const { status, body } = await get(await down());
    expect(status).toBe(503);
    expect(body).toMatchObject({
      status: 'error',
      error: { locks: { status: 'down', backend: kind, message: expect.any(String) } },
    });
    expect(JSON.stringify(body)).not.toContain(SECRET);
  });
});
