import {
  Catch,
  Controller,
  Module,
  Post,
  UseFilters,
  type ArgumentsHost,
  type DynamicModule,
  type ExceptionFilter,
  type INestApplication,
} from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA } from '@nestjs/common/constants';
import { NestFactory } from '@nestjs/core';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { io, type Socket } from 'socket.io-client';
import { DistributedLock, LockModule, LockTimeoutError, memoryBackend, WithLock } from '../../lib';
import { RecordingBackend } from '../support/recording-backend';
import { RecordingLogger } from './recording-logger';

let reportsRun = 0;

@WebSocketGateway()
class ReportGateway {
  @SubscribeMessage('report')
  @WithLock('report', { wait: 0 })
  report(): { event: string; data: string } {
    reportsRun++;
    return { event: 'report', data: 'ran' };
  }
}

/** A filter of the gateway's own, for the test that it wins over the module's. */
@Catch(LockTimeoutError)
class OwnBusyFilter implements ExceptionFilter {
  catch(error: LockTimeoutError, host: ArgumentsHost): void {
    host.switchToWs().getClient<Socket>().emit('busy', { mine: true, key: error.key });
  }
}

@WebSocketGateway()
@UseFilters(new OwnBusyFilter())
class OwnFilterGateway {
  @SubscribeMessage('report')
  @WithLock('report', { wait: 0 })
  report(): string {
    return 'ran';
  }
}

@Controller('reports')
class ReportController {
  @Post()
  @WithLock('report', { wait: 0 })
  create(): { ran: true } {
    return { ran: true };
  }
}

@Module({})
class GatewayModule {
  static register(gateway: new () => object, backend: RecordingBackend, errorFilters?: boolean): DynamicModule {
    return {
      module: GatewayModule,
      imports: [LockModule.forRoot({ backend, ...(errorFilters === undefined ? {} : { errorFilters }) })],
      providers: [gateway],
      controllers: [ReportController],
    };
  }
}

/** The first `event` the client receives, or a rejection after 5 s. */
function next(socket: Socket, event: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" event within 5 s`)), 5_000);
    socket.once(event, (body: unknown) => {
      clearTimeout(timer);
      resolve(body);
    });
  });
}

/** A real Nest app on socket.io (@nestjs/platform-socket.io) on 127.0.0.1, and a real socket.io client. */
describe('a busy lock in a socket.io gateway', () => {
  let app: INestApplication | undefined;
  let socket: Socket | undefined;
  let logger: RecordingLogger;
  let backend: RecordingBackend;

  async function start(gateway: new () => object, errorFilters?: boolean): Promise<Socket> {
    backend = new RecordingBackend(memoryBackend());
    logger = new RecordingLogger();
    app = await NestFactory.create(GatewayModule.register(gateway, backend, errorFilters), { logger });
    await app.listen(0, '127.0.0.1');
    socket = io(await app.getUrl(), { transports: ['websocket'], reconnection: false });
    await next(socket, 'connect');
    reportsRun = 0;
    return socket;
  }

  afterEach(async () => {
    socket?.close();
    await app?.close();
    socket = undefined;
    app = undefined;
  });

  it('sends an exception event with LOCK_BUSY, the key and retryIn, and logs no error', async () => {
    const client = await start(ReportGateway);
    const held = (await app!.get(DistributedLock).tryAcquire('report'))!;
    const exception = next(client, 'exception');
    client.emit('report', { id: 7 });
    const body = await exception;
    expect(body).toEqual({
      status: 'error',
      code: 'LOCK_BUSY',
      message: 'Lock "report" is busy: not acquired within 0 ms',
      key: 'report',
      retryIn: expect.any(Number),
      cause: { pattern: 'report', data: { id: 7 } },
    });
    expect((body as { retryIn: number }).retryIn).toBeGreaterThan(0);
    expect((body as { retryIn: number }).retryIn).toBeLessThanOrEqual(30_000);
    expect(reportsRun).toBe(0);
    expect(logger.at('error')).toEqual([]);
    // Free again, the handler answers as usual.
    await app!.get(DistributedLock).release(held);
    const reply = next(client, 'report');
    client.emit('report', { id: 8 });
    expect(await reply).toBe('ran');
  });

  it('sends LOCK_BACKEND_UNAVAILABLE without the cause, and logs the cause once', async () => {
    const client = await start(ReportGateway);
    backend.fail.add('tryAcquire');
    const exception = next(client, 'exception');
    client.emit('report', {});
    expect(await exception).toEqual({
      status: 'error',
      code: 'LOCK_BACKEND_UNAVAILABLE',
      message: 'Lock backend memory is unavailable',
      cause: { pattern: 'report', data: {} },
    });
    expect(logger.at('error')).toHaveLength(1);
    expect(logger.at('error', /Lock backend memory failed: injected failure: tryAcquire/)).toHaveLength(1);
  });

  it("lets the gateway's own filter win, and leaves the gateway's filter metadata as it was after start", async () => {
    const before = Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, OwnFilterGateway) as unknown[];
    const client = await start(OwnFilterGateway);
    expect(Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, OwnFilterGateway)).toEqual(before);
    expect(Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, ReportGateway)).toBeUndefined();
    await app!.get(DistributedLock).tryAcquire('report');
    const busy = next(client, 'busy');
    client.emit('report', {});
    expect(await busy).toEqual({ mine: true, key: 'report' });
  });

  it("with errorFilters: false leaves errors to Nest's defaults: Internal server error on the socket, 500 over HTTP", async () => {
    const client = await start(ReportGateway, false);
    await app!.get(DistributedLock).tryAcquire('report');
    const exception = next(client, 'exception');
    client.emit('report', { id: 7 });
    expect(await exception).toEqual({
      status: 'error',
      message: 'Internal server error',
      cause: { pattern: 'report', data: { id: 7 } },
    });
    expect(logger.at('error', /LockTimeoutError: Lock "report" is busy/)).toHaveLength(1);
    const response = await fetch(`${await app!.getUrl()}/reports`, { method: 'POST' });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ statusCode: 500, message: 'Internal server error' });
  });
});
