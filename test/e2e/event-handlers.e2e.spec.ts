import { Injectable, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Test } from '@nestjs/testing';
import { DistributedLock, LockModule, LockTimeoutError, WithLock } from '../../lib';
import { RecordingLogger } from './recording-logger';

@Injectable()
class ReportListener {
  runs = 0;

  @OnEvent('report.requested')
  @WithLock('report', { wait: 0 })
  onRequested(): void {
    this.runs++;
  }

  @OnEvent('report.strict', { suppressErrors: false })
  @WithLock('report', { wait: 0 })
  onStrict(): void {
    this.runs++;
  }

  @OnEvent('report.optional')
  @WithLock('report', { wait: 0, onBusy: 'skip' })
  onOptional(): void {
    this.runs++;
  }
}

/** @OnEvent handlers of @nestjs/event-emitter 3.1 under @WithLock, in a real EventEmitterModule app, the key held. */
describe('a busy lock in an @OnEvent handler', () => {
  let app: INestApplication;
  let events: EventEmitter2;
  let listener: ReportListener;
  let logger: RecordingLogger;

  beforeEach(async () => {
    logger = new RecordingLogger();
    const moduleRef = await Test.createTestingModule({
      imports: [EventEmitterModule.forRoot(), LockModule.forRoot()],
      providers: [ReportListener],
    }).compile();
    app = moduleRef.createNestApplication({ logger });
    await app.init();
    events = app.get(EventEmitter2);
    listener = app.get(ReportListener);
    expect(await app.get(DistributedLock).tryAcquire('report')).not.toBeNull();
  });
  afterEach(() => app.close());

  it('is logged as an ERROR with its stack by event-emitter, and emitAsync resolves', async () => {
    await expect(events.emitAsync('report.requested')).resolves.toEqual([undefined]);
    expect(listener.runs).toBe(0);
    const errors = logger.at('error');
    expect(errors).toHaveLength(1);
    expect(errors[0].text).toMatch(
      /^Lock "report" is busy: not acquired within 0 ms LockTimeoutError: Lock "report" is busy[\s\S]* at [\s\S]* Event$/,
    );
  });

  it('is logged the same after a plain emit, which returns before the handler ends', async () => {
    expect(events.emit('report.requested')).toBe(true);
    await logger.waitFor('error', /Lock "report" is busy/);
    expect(listener.runs).toBe(0);
  });

  it('rejects emitAsync with LockTimeoutError under suppressErrors: false, and logs nothing', async () => {
    const error = await events.emitAsync('report.strict').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(error).toMatchObject({ key: 'report', waited: expect.any(Number) });
    expect(logger.at('error')).toEqual([]);
  });

  it("with onBusy: 'skip' does not run the handler, logs a debug line only, and emitAsync resolves", async () => {
    await expect(events.emitAsync('report.optional')).resolves.toEqual([undefined]);
    expect(listener.runs).toBe(0);
    expect(logger.at('error')).toEqual([]);
    expect(logger.at('debug', /ReportListener\.onOptional skipped: lock "report" is busy/)).toHaveLength(1);
  });
});
