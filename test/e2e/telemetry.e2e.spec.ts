import { Controller, Injectable, type INestApplication, Module, Param, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DistributedLock, LockModule, WithLock, currentLock, memoryBackend } from '../../lib';
import { OtelSdk } from '../support/otel-sdk';
import { RecordingBackend } from '../support/recording-backend';
import { sleep } from '../support/time';

/**
 * A real Nest app over HTTP with the OpenTelemetry SDK registered: the test starts a client span,
 * sends its context in a W3C `traceparent` header, and a middleware of the app does what
 * `@opentelemetry/instrumentation-http` does on the server side (extracts the context, starts the
 * request's SERVER span, runs the request in it). The lock's spans must be children of that span,
 * in the client's trace. The header is written and read by hand here, with the API only.
 */

/**
 * How long `pay` holds its order's lock: a test that needs a request to meet a held lock opens
 * the hold itself (`held` tells it the lock is held, `release` ends the work), so the order of
 * the requests does not rest on sleeps on a busy machine.
 */
let payHold: { held: () => void; release: Promise<void> } | undefined;

function holdPay(): { held: Promise<void>; release: () => void } {
  let held!: () => void;
  let release!: () => void;
  const heldPromise = new Promise<void>((resolve) => (held = resolve));
  payHold = { held, release: new Promise<void>((resolve) => (release = resolve)) };
  return { held: heldPromise, release };
}

@Injectable()
class OrderService {
  constructor(private readonly locks: DistributedLock) {}

  pay(id: string) {
    const hold = payHold;
    payHold = undefined;
    return this.locks.withLock(
      `order:${id}`,
      async (lock) => {
        if (hold) {
          hold.held();
          await hold.release;
        }
        return { id, fence: String(lock.fence) };
      },
      { metricName: 'orders.pay' },
    );
  }
}

@Controller('orders')
class OrderController {
  constructor(private readonly orders: OrderService) {}

  @Post(':id/pay')
  pay(@Param('id') id: string) {
    return this.orders.pay(id);
  }

  @Post(':id/ship')
  @WithLock((id: string) => `order:${id}`, { wait: 0 })
  ship(@Param('id') id: string) {
    return { id, fence: String(currentLock()!.fence) };
  }
}

const backend = new RecordingBackend(memoryBackend());

@Module({
  imports: [LockModule.forRoot({ keyPrefix: 'otel-e2e:', backend })],
  controllers: [OrderController],
  providers: [OrderService],
})
class AppModule {}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The server half of HTTP instrumentation: the request runs in a SERVER span whose parent came in the header. */
function serverSpans(req: IncomingMessage, res: ServerResponse, next: () => void): void {
  const header = TRACEPARENT.exec(String(req.headers.traceparent ?? ''));
  const parent = header
    ? trace.setSpanContext(context.active(), {
        traceId: header[1],
        spanId: header[2],
        traceFlags: parseInt(header[3], 16),
        isRemote: true,
      })
    : context.active();
  const span = trace
    .getTracer('http-server')
    .startSpan(`${req.method} ${req.url!.split('?')[0]}`, { kind: SpanKind.SERVER }, parent);
  res.on('finish', () => {
    span.setAttribute('http.response.status_code', res.statusCode);
    span.end();
  });
  context.with(trace.setSpan(parent, span), next);
}

describe('telemetry in a Nest app over HTTP (Express)', () => {
  let sdk: OtelSdk;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    sdk = OtelSdk.register();
    app = await NestFactory.create(AppModule, { logger: false });
    app.use(serverSpans);
    await app.listen(0, '127.0.0.1');
    url = await app.getUrl();
  });
  afterAll(async () => {
    await app.close();
    await sdk.unregister();
  });

  /** POSTs `path` inside a client span of the test, its context sent as `traceparent`. */
  function post(path: string): Promise<{ status: number; client: Span }> {
    return sdk.tracer().startActiveSpan(`client ${path}`, { kind: SpanKind.CLIENT }, async (client) => {
      const { traceId, spanId } = client.spanContext();
      const response = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { traceparent: `00-${traceId}-${spanId}-01` },
      });
      await response.arrayBuffer();
      client.end();
      return { status: response.status, client };
    });
  }

  it('the withLock span of a request is a child of the request’s server span, in the client’s trace', async () => {
    const { status, client } = await post('/orders/1/pay');
    expect(status).toBe(201);
    const [server] = sdk.finished('POST /orders/1/pay');
    const [lock] = sdk.finished('lock orders.pay');
    expect(server.parentSpanContext?.spanId).toBe(client.spanContext().spanId);
    expect(lock.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(lock.spanContext().traceId).toBe(client.spanContext().traceId);
    expect(lock.kind).toBe(SpanKind.INTERNAL);
    expect(lock.attributes).toMatchObject({
      'lock.name': 'orders.pay',
      'lock.backend': 'memory',
      'lock.outcome': 'acquired',
    });
    expect(lock.events.map((event) => event.name)).toEqual(['lock.acquired', 'lock.released']);
  });

  it('two requests paying one order: the second waits for the first, and both waits are counted', async () => {
    sdk.spans.reset();
    const hold = holdPay();
    const firstDone = post('/orders/2/pay');
    await hold.held;
    const secondDone = post('/orders/2/pay');
    // The second request waits in the queue for at least 50 ms before the first one's work ends.
    await backend.whenQueued('otel-e2e:order:2');
    await sleep(50);
    hold.release();
    const [first, second] = await Promise.all([firstDone, secondDone]);
    expect([first.status, second.status]).toEqual([201, 201]);
    const locks = sdk.finished('lock orders.pay');
    expect(locks).toHaveLength(2);
    const servers = sdk.finished('POST /orders/2/pay');
    // Each lock span belongs to its own request.
    expect(locks.map((span) => span.parentSpanContext?.spanId).sort()).toEqual(
      servers.map((span) => span.spanContext().spanId).sort(),
    );
    const metrics = await sdk.metrics();
    const waits = metrics.histogram('lock.wait.duration', { 'lock.name': 'orders.pay', 'lock.outcome': 'acquired' });
    expect(waits.count).toBe(3);
    // The second request's wait is counted: it waited the 50 ms it was held back (less timer rounding).
    expect(waits.sum).toBeGreaterThan(0.045);
    expect(metrics.sum('lock.held')).toBe(0);
  });

  it('a busy @WithLock route answers 409; its span is ERROR with the LockTimeoutError recorded', async () => {
    sdk.spans.reset();
    const hold = holdPay();
    const payingDone = post('/orders/3/pay');
    await hold.held;
    const shipping = await post('/orders/3/ship');
    hold.release();
    const paying = await payingDone;
    expect([paying.status, shipping.status]).toEqual([201, 409]);
    const [ship] = sdk.finished('lock OrderController.ship');
    const [server] = sdk.finished('POST /orders/3/ship');
    expect(ship.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(ship.attributes).toMatchObject({ 'lock.name': 'OrderController.ship', 'lock.outcome': 'busy' });
    expect(ship.status.code).toBe(SpanStatusCode.ERROR);
    expect(ship.events.map((event) => event.attributes?.['exception.type'])).toEqual(['LockTimeoutError']);
    expect(server.attributes['http.response.status_code']).toBe(409);
    const metrics = await sdk.metrics();
    expect(
      metrics.histogram('lock.wait.duration', { 'lock.name': 'OrderController.ship', 'lock.outcome': 'busy' }).count,
    ).toBe(1);
  });
});
