import { Injectable, type INestApplication } from '@nestjs/common';
import { ExternalContextCreator } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { DistributedLock, LockModule, LockTimeoutError, WithLock } from '../../lib';
import { RecordingLogger } from './recording-logger';

@Injectable()
class ReportResolver {
  @WithLock('report', { wait: 0 })
  report(): string {
    return 'ran';
  }
}

/**
 * GraphQL resolvers are called through Nest's ExternalContextCreator, which @nestjs/graphql uses
 * with the context type 'graphql' (other libraries use it with types of their own). The module's filter steps aside there: Nest's own handler for such contexts logs
 * the error and rethrows it unchanged, for the GraphQL server to report.
 */
describe('a busy lock in a GraphQL-style external context', () => {
  let app: INestApplication;
  let logger: RecordingLogger;

  beforeEach(async () => {
    logger = new RecordingLogger();
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot()],
      providers: [ReportResolver],
    }).compile();
    app = moduleRef.createNestApplication({ logger });
    await app.init();
  });
  afterEach(() => app.close());

  it('rejects the resolver call with the LockTimeoutError itself, logged by Nest as an ERROR', async () => {
    const resolver = app.get(ReportResolver);
    const call = app
      .get(ExternalContextCreator)
      .create(
        resolver,
        resolver.report,
        'report',
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
        'graphql',
      ) as () => Promise<unknown>;
    await expect(call()).resolves.toBe('ran');
    await app.get(DistributedLock).tryAcquire('report');
    const error = await call().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as LockTimeoutError).key).toBe('report');
    expect(logger.at('error', /LockTimeoutError: Lock "report" is busy[\s\S]*ExceptionsHandler/)).toHaveLength(1);
  });
});
