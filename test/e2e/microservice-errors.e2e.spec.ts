import { Controller, Module, type DynamicModule, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, EventPattern, MessagePattern, Transport, type ClientProxy } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { DistributedLock, LockModule, memoryBackend, WithLock, type LockGuard } from '../../lib';
import { freePort } from '../support/free-port';
import { RecordingBackend } from '../support/recording-backend';
import { RecordingLogger } from './recording-logger';

let reportsRun = 0;
let eventsRun = 0;

@Controller()
class ReportController {
  @MessagePattern('report')
  @WithLock('report', { wait: 0 })
  report(): { ran: true } {
    reportsRun++;
    return { ran: true };
  }

  @EventPattern('report.requested')
  @WithLock('report', { wait: 0 })
  onReportRequested(): void {
    eventsRun++;
  }
}

@Module({})
class ReportModule {
  static register(backend: RecordingBackend, errorFilters?: boolean): DynamicModule {
    return {
      module: ReportModule,
      imports: [LockModule.forRoot({ backend, ...(errorFilters === undefined ? {} : { errorFilters }) })],
      controllers: [ReportController],
    };
  }
}

/** The error a `send` rejected with, as the TCP client received it. */
async function sendError(client: ClientProxy, pattern: string): Promise<unknown> {
  return firstValueFrom(client.send(pattern, {})).then(
    (reply: unknown) => ({ resolvedWith: reply }),
    (error: unknown) => error,
  );
}

/** A real TCP microservice on 127.0.0.1 and a real `ClientProxy` talking to it. */
describe.each([
  ['the module filters (default)', undefined],
  ['errorFilters: false', false],
])('a busy lock in a TCP microservice, %s', (_name, errorFilters) => {
  let app: INestMicroservice;
  let client: ClientProxy;
  let backend: RecordingBackend;
  let logger: RecordingLogger;
  let held: LockGuard;

  beforeEach(async () => {
    backend = new RecordingBackend(memoryBackend());
    logger = new RecordingLogger();
    const port = await freePort();
    app = await NestFactory.createMicroservice(ReportModule.register(backend, errorFilters), {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port },
      logger,
    });
    await app.listen();
    client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
    await client.connect();
    held = (await app.get(DistributedLock).tryAcquire('report'))!;
    expect(held).not.toBeNull();
    reportsRun = 0;
    eventsRun = 0;
  });

  afterEach(async () => {
    await client.close();
    await app.close();
  });

  if (errorFilters === undefined) {
    it('answers @MessagePattern with LOCK_BUSY, the key and retryIn, and logs no error', async () => {
      const error = await sendError(client, 'report');
      expect(error).toEqual({
        status: 'error',
        code: 'LOCK_BUSY',
        message: 'Lock "report" is busy: not acquired within 0 ms',
        key: 'report',
        retryIn: expect.any(Number),
      });
      // The holder took the key with the default 30 s TTL moments ago.
      expect((error as { retryIn: number }).retryIn).toBeGreaterThan(0);
      expect((error as { retryIn: number }).retryIn).toBeLessThanOrEqual(30_000);
      expect(reportsRun).toBe(0);
      expect(logger.at('error')).toEqual([]);
      expect(logger.at('warn')).toEqual([]);
      // The same client gets the handler's reply once the key is free.
      await app.get(DistributedLock).release(held);
      await expect(firstValueFrom(client.send('report', {}))).resolves.toEqual({ ran: true });
    });

    it('answers LOCK_BACKEND_UNAVAILABLE without the cause, and logs the cause once', async () => {
      backend.fail.add('tryAcquire');
      const error = await sendError(client, 'report');
      expect(error).toEqual({
        status: 'error',
        code: 'LOCK_BACKEND_UNAVAILABLE',
        message: 'Lock backend memory is unavailable',
      });
      expect(JSON.stringify(error)).not.toContain('injected failure');
      expect(logger.at('error')).toHaveLength(1);
      expect(logger.at('error', /Lock backend memory failed: injected failure: tryAcquire/)).toHaveLength(1);
    });

    it('ends a busy @EventPattern with a debug line, no error log', async () => {
      client.emit('report.requested', {}).subscribe();
      await logger.waitFor('debug', /Lock "report" is busy: not acquired within 0 ms: answered LOCK_BUSY/);
      expect(eventsRun).toBe(0);
      expect(logger.at('error')).toEqual([]);
    });
  } else {
    it("leaves @MessagePattern to Nest's default: Internal server error, and an ERROR log with the stack", async () => {
      const error = await sendError(client, 'report');
      expect(error).toEqual({ status: 'error', message: 'Internal server error' });
      expect(logger.at('error', /LockTimeoutError: Lock "report" is busy[\s\S]*at /)).toHaveLength(1);
    });
  }
});

describe('a busy lock in a hybrid app (HTTP + TCP microservice, inheritAppConfig)', () => {
  it('answers the microservice client with LOCK_BUSY', async () => {
    const port = await freePort();
    const app = await NestFactory.create(ReportModule.register(new RecordingBackend(memoryBackend())), {
      logger: new RecordingLogger(),
    });
    app.connectMicroservice(
      { transport: Transport.TCP, options: { host: '127.0.0.1', port } },
      { inheritAppConfig: true },
    );
    await app.startAllMicroservices();
    await app.init();
    const client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
    try {
      await app.get(DistributedLock).tryAcquire('report');
      expect(await sendError(client, 'report')).toMatchObject({ status: 'error', code: 'LOCK_BUSY', key: 'report' });
    } finally {
      await client.close();
      await app.close();
    }
  });
});
