import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import {
  DistributedLock,
  LockBackendError,
  LockLostError,
  LockModule,
  LockTimeoutError,
  memoryBackend,
  WithLock,
  type LockGuard,
} from '../../../lib';
import { DistributedLockService } from '../../../lib/distributed-lock.service';
import { PACKAGE_NAME, PACKAGE_VERSION } from '../../../lib/lock.constants';
import { redisBackend } from '../../../lib/redis';
import { freePort } from '../../support/free-port';
import { OtelSdk, type MetricSnapshot } from '../../support/otel-sdk';
import { SpawnedRedis } from '../../support/redis-servers';
import { sleep } from '../../support/time';

/**
 * Telemetry with the real OpenTelemetry SDK, registered globally as an application does: a scripted
 * workload runs under one span the test started (as an HTTP request's span would be), then the
 * collected metrics and the exported spans are checked value by value.
 */

const aborted = (signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
/** Blocks the event loop, as synchronous CPU work does. */
function blockFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

@Injectable()
class Reports {
  runs = 0;

  @WithLock('nightly', { wait: 0, onBusy: 'skip' })
  async nightly(): Promise<string> {
    this.runs++;
    return 'ran';
  }

  @WithLock('nightly', { wait: 0 })
  async strict(): Promise<string> {
    return 'ran';
  }

  @WithLock((id: string) => `report:${id}`, { metricName: 'reports.one' })
  async one(id: string): Promise<string> {
    return id;
  }
}

const W = 'lock.wait.duration';
const H = 'lock.hold.duration';
const spanName = (name: string): string => `lock ${name}`;
const eventNames = (span: ReadableSpan): string[] => span.events.map((event) => event.name);

describe('telemetry through @opentelemetry/api, recorded by the real SDK', () => {
  let sdk: OtelSdk;
  beforeAll(() => {
    sdk = OtelSdk.register();
  });
  afterAll(async () => {
    await sdk.unregister();
  });

  describe('a scripted workload on the memory backend, under a request span', () => {
    const backend = memoryBackend();
    let app: INestApplicationContext;
    let locks: DistributedLock;
    let metrics: MetricSnapshot;
    let heldMidQueue: number;
    let heldMidQueueAll: number;
    let request: Span;
    const outcomes: Record<string, unknown> = {};

    beforeAll(async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [LockModule.forRoot({ backend, keyPrefix: 'otel:', errorFilters: false })],
        providers: [Reports],
      }).compile();
      app = await moduleRef.init();
      locks = app.get(DistributedLock);
      const reports = app.get(Reports);

      await sdk.tracer().startActiveSpan('request', async (span) => {
        request = span;
        // Two waiters on one key: the holder keeps it until both have queued.
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        const order: string[] = [];
        const holder = locks.withLock('queue', () => released.then(() => order.push('holder')), {
          metricName: 'workload.queue',
        });
        await sleep(20);
        const waiters = ['first', 'second'].map((who) =>
          locks.withLock('queue', () => order.push(who), { metricName: 'workload.queue', wait: 5_000 }),
        );
        await sleep(50);
        const mid = await sdk.metrics();
        heldMidQueue = mid.sum('lock.held', { 'lock.name': 'workload.queue' });
        heldMidQueueAll = mid.sum('lock.held');
        release();
        await Promise.all([holder, ...waiters]);
        outcomes.order = order;

        // @WithLock on a busy key: skipped (onBusy 'skip') and busy (the default, throw).
        const other = await locks.acquire('nightly', { metricName: 'workload.holder' });
        outcomes.skipped = await reports.nightly();
        outcomes.busy = await reports.strict().catch((e: unknown) => e);
        await locks.release(other);
        outcomes.ran = await reports.nightly();
        outcomes.one = await reports.one('7');

        // A lost lease: extension refused (the lease was taken away behind the holder's back).
        outcomes.refused = await locks
          .withLock(
            'refused',
            async (held) => {
              await backend.release('otel:refused', held.token);
              await aborted(held.signal);
            },
            { ttl: 300, metricName: 'workload.refused' },
          )
          .catch((e: unknown) => e);
        // The release found the lease already gone (evicted while short work ran).
        outcomes.gone = await locks
          .withLock('gone', (held) => backend.release('otel:gone', held.token), { metricName: 'workload.gone' })
          .catch((e: unknown) => e);
        // The work blocked the event loop past its local deadline.
        outcomes.blocked = await locks
          .withLock('blocked', () => blockFor(500), { ttl: 200, metricName: 'workload.blocked' })
          .catch((e: unknown) => e);

        // tryAcquire on a busy key, and an acquire whose signal aborts while it waits.
        const taken = (await locks.tryAcquire('taken', { metricName: 'workload.taken' })) as LockGuard;
        outcomes.tried = await locks.tryAcquire('taken', { metricName: 'workload.try' });
        const controller = new AbortController();
        setTimeout(() => controller.abort(new Error('caller gave up')), 30);
        outcomes.abort = await locks
          .acquire('taken', { metricName: 'workload.abort', wait: 5_000, signal: controller.signal })
          .catch((e: unknown) => e);
        await locks.release(taken);
        span.end();
      });
      metrics = await sdk.metrics();
    });
    afterAll(async () => {
      await app.close();
    });

    it('the workload went as scripted', () => {
      expect(outcomes.order).toEqual(['holder', 'first', 'second']);
      expect(outcomes.skipped).toBeUndefined();
      expect(outcomes.busy).toBeInstanceOf(LockTimeoutError);
      expect(outcomes.ran).toBe('ran');
      expect(outcomes.one).toBe('7');
      expect(outcomes.refused).toBeInstanceOf(LockLostError);
      expect(outcomes.gone).toBeInstanceOf(LockLostError);
      expect(outcomes.blocked).toBeInstanceOf(LockLostError);
      expect(outcomes.tried).toBeNull();
      expect(outcomes.abort).toEqual(new Error('caller gave up'));
    });

    it('counts every acquisition once by name and outcome in lock.wait.duration (seconds)', () => {
      expect(metrics.descriptor(W)).toMatchObject({ unit: 's' });
      const count = (name: string, outcome: string): number =>
        metrics.histogram(W, { 'lock.name': name, 'lock.outcome': outcome, 'lock.backend': 'memory' }).count;
      expect(count('workload.queue', 'acquired')).toBe(3);
      expect(count('workload.queue', 'busy')).toBe(0);
      expect(count('Reports.nightly', 'skipped')).toBe(1);
      expect(count('Reports.nightly', 'acquired')).toBe(1);
      expect(count('Reports.strict', 'busy')).toBe(1);
      expect(count('reports.one', 'acquired')).toBe(1);
      expect(count('workload.try', 'busy')).toBe(1);
      expect(count('workload.abort', 'aborted')).toBe(1);
      for (const name of ['workload.refused', 'workload.gone', 'workload.blocked', 'workload.holder']) {
        expect(count(name, 'acquired')).toBe(1);
      }
      // The two waiters waited for the holder (at least the 50 ms it kept the key after they came).
      expect(metrics.histogram(W, { 'lock.name': 'workload.queue' }).sum).toBeGreaterThan(0.05);
      // Every point carries name, backend and outcome, and nothing else (no key).
      for (const point of metrics.points(W)) {
        expect(Object.keys(point.attributes).sort()).toEqual(['lock.backend', 'lock.name', 'lock.outcome']);
      }
    });

    it('records one hold per lease in lock.hold.duration, and lock.held is back to 0', () => {
      expect(metrics.descriptor(H)).toMatchObject({ unit: 's' });
      expect(metrics.histogram(H, { 'lock.name': 'workload.queue' }).count).toBe(3);
      // The holder kept the key about 70 ms.
      expect(metrics.histogram(H, { 'lock.name': 'workload.queue' }).sum).toBeGreaterThan(0.05);
      expect(metrics.histogram(H, { 'lock.name': 'workload.holder' }).count).toBe(1);
      expect(metrics.histogram(H, { 'lock.name': 'Reports.nightly' }).count).toBe(1);
      expect(metrics.histogram(H, { 'lock.name': 'Reports.strict' }).count).toBe(0);
      expect(metrics.histogram(H, { 'lock.name': 'workload.taken' }).count).toBe(1);
      expect(heldMidQueue).toBe(1);
      expect(heldMidQueueAll).toBe(1);
      expect(metrics.descriptor('lock.held')).toMatchObject({ unit: '{lease}' });
      expect(metrics.points('lock.held', { 'lock.name': 'workload.queue' })).toEqual([
        { attributes: { 'lock.name': 'workload.queue', 'lock.backend': 'memory' }, value: 0 },
      ]);
      expect(metrics.sum('lock.held')).toBe(0);
    });

    it('counts each lost lease once with its reason, and the refused extension', () => {
      const lost = (name: string, reason: string): number =>
        metrics.sum('lock.lost', { 'lock.name': name, 'lock.lost.reason': reason });
      expect(lost('workload.refused', 'extension_refused')).toBe(1);
      expect(lost('workload.gone', 'release_found_gone')).toBe(1);
      expect(lost('workload.blocked', 'deadline_passed')).toBe(1);
      expect(metrics.sum('lock.lost')).toBe(3);
      expect(
        metrics.sum('lock.extension.failures', {
          'lock.name': 'workload.refused',
          'lock.extension.failure': 'refused',
        }),
      ).toBe(1);
      expect(metrics.sum('lock.extension.failures')).toBe(1);
      expect(metrics.sum('lock.backend.errors')).toBe(0);
    });

    it('makes one span per withLock / @WithLock call, a child of the request span, named by lock name', () => {
      const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;
      const requestId = request.spanContext().spanId;
      const lockSpans = sdk.finished().filter((span) => span.name.startsWith('lock '));
      // 3 queue + nightly skipped, strict busy, nightly ran, one + refused, gone, blocked (acquire/tryAcquire make none).
      expect(lockSpans.map((span) => span.name).sort()).toEqual(
        [
          ...Array(3).fill(spanName('workload.queue')),
          spanName('Reports.nightly'),
          spanName('Reports.nightly'),
          spanName('Reports.strict'),
          spanName('reports.one'),
          spanName('workload.refused'),
          spanName('workload.gone'),
          spanName('workload.blocked'),
        ].sort(),
      );
      for (const span of lockSpans) {
        expect(parentOf(span)).toBe(requestId);
        expect(span.spanContext().traceId).toBe(request.spanContext().traceId);
        expect(span.instrumentationScope).toMatchObject({ name: PACKAGE_NAME, version: PACKAGE_VERSION });
        expect(span.attributes['lock.backend']).toBe('memory');
        expect(span.attributes['lock.key']).toBeUndefined();
      }
    });

    it('marks the wait and the hold with events: the waiters’ lock.acquired came after the holder’s lock.released', () => {
      const queue = sdk.finished(spanName('workload.queue'));
      for (const span of queue) {
        expect(eventNames(span)).toEqual(['lock.acquired', 'lock.released']);
        expect(span.attributes['lock.outcome']).toBe('acquired');
        expect(span.status.code).toBe(SpanStatusCode.UNSET);
      }
      const at = (span: ReadableSpan, name: string): number => {
        const time = span.events.find((event) => event.name === name)!.time;
        return time[0] * 1e3 + time[1] / 1e6;
      };
      const fenceOf = (span: ReadableSpan): bigint => BigInt(span.events[0].attributes!['lock.fence'] as string);
      // Grants in fence order (fences increase with every grant of the key): the holder's came first, and
      // it held for the 50 ms the waiters waited. Event times cannot order the two waiters: the second
      // was granted microseconds after the first, closer than the 1 ms to which span times agree.
      const [holder, ...waiters] = [...queue].sort((a, b) => (fenceOf(a) < fenceOf(b) ? -1 : 1));
      expect(at(holder, 'lock.released') - at(holder, 'lock.acquired')).toBeGreaterThanOrEqual(49);
      // The SDK dates each span's events from its own anchor, taken with Date.now() (whole ms) when
      // the span starts: times of different spans agree to within 1 ms only. A waiter granted while
      // the holder still held (it held for 70 ms) would be tens of ms early.
      for (const waiter of waiters)
        expect(at(waiter, 'lock.acquired')).toBeGreaterThanOrEqual(at(holder, 'lock.released') - 1);
      const fences = queue.map(fenceOf);
      expect(new Set(fences).size).toBe(3);
    });

    it('skipped is no error; busy and lost are ERROR with the exception recorded', () => {
      const [skipped, ran] = sdk.finished(spanName('Reports.nightly'));
      expect(skipped.attributes['lock.outcome']).toBe('skipped');
      expect(skipped.status.code).toBe(SpanStatusCode.UNSET);
      expect(eventNames(skipped)).toEqual([]);
      expect(ran.attributes['lock.outcome']).toBe('acquired');

      const [busy] = sdk.finished(spanName('Reports.strict'));
      expect(busy.attributes['lock.outcome']).toBe('busy');
      expect(busy.status).toMatchObject({
        code: SpanStatusCode.ERROR,
        message: 'Lock "nightly" is busy: not acquired within 0 ms',
      });
      expect(busy.events.map((event) => [event.name, event.attributes?.['exception.type']])).toEqual([
        ['exception', 'LockTimeoutError'],
      ]);

      for (const [name, reason] of [
        ['workload.refused', 'extension_refused'],
        ['workload.gone', 'release_found_gone'],
        ['workload.blocked', 'deadline_passed'],
      ]) {
        const [span] = sdk.finished(spanName(name));
        expect(span.status.code).toBe(SpanStatusCode.ERROR);
        expect(span.attributes['lock.outcome']).toBe('acquired');
        const lostEvent = span.events.find((event) => event.name === 'lock.lost');
        expect(lostEvent?.attributes).toEqual({ 'lock.lost.reason': reason });
        const exception = span.events.find((event) => event.name === 'exception');
        expect(exception?.attributes?.['exception.type']).toBe('LockLostError');
      }
      // Refused: lost while the work ran, before the hold ended.
      expect(eventNames(sdk.finished(spanName('workload.refused'))[0])).toEqual([
        'lock.acquired',
        'lock.lost',
        'lock.released',
        'exception',
      ]);
      // Gone: the release found it, after the hold ended.
      expect(eventNames(sdk.finished(spanName('workload.gone'))[0])).toEqual([
        'lock.acquired',
        'lock.released',
        'lock.lost',
        'exception',
      ]);
    });
  });

  describe('backend failures', () => {
    const spawned = new SpawnedRedis();
    afterAll(async () => {
      await spawned.stopAll();
    });

    it('a Redis backend at a closed port: outcome error, the failed operations counted, the span ERROR', async () => {
      const port = await freePort();
      const locks = new DistributedLockService({
        backend: redisBackend({ url: `redis://127.0.0.1:${port}`, commandTimeout: 300 }),
        keyPrefix: 'otel-down:',
        ttl: 1_000,
        wait: 0,
      });
      const error = await locks.withLock('k', () => 'ran', { metricName: 'down.with' }).catch((e: unknown) => e);
      const pinged = await locks.ping(500).catch((e: unknown) => e);
      await locks.shutdown();
      expect(error).toBeInstanceOf(LockBackendError);
      expect(pinged).toBeInstanceOf(LockBackendError);
      const metrics = await sdk.metrics();
      expect(
        metrics.histogram(W, { 'lock.name': 'down.with', 'lock.outcome': 'error', 'lock.backend': 'redis' }).count,
      ).toBe(1);
      expect(metrics.histogram(H, { 'lock.name': 'down.with' }).count).toBe(0);
      expect(metrics.sum('lock.backend.errors', { 'lock.backend': 'redis', 'lock.operation': 'acquire' })).toBe(1);
      expect(metrics.sum('lock.backend.errors', { 'lock.backend': 'redis', 'lock.operation': 'ping' })).toBe(1);
      const [span] = sdk.finished(spanName('down.with'));
      expect(span.attributes).toMatchObject({ 'lock.outcome': 'error', 'lock.backend': 'redis' });
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.events.map((event) => event.attributes?.['exception.type'])).toEqual(['LockBackendError']);
      // No request span around this one: a root span.
      expect(span.parentSpanContext).toBeUndefined();
    });

    it('a real redis-server killed while withLock holds: extensions fail, the lease is lost unconfirmed, held back to 0', async () => {
      const server = await spawned.server();
      const locks = new DistributedLockService({
        backend: redisBackend({ url: server.url, commandTimeout: 200 }),
        keyPrefix: 'otel-kill:',
        ttl: 1_000,
        wait: 0,
      });
      let heldDuring = -1;
      // Backend errors are counted per backend kind: the earlier cases' failures are in the sums too.
      const releaseErrors = { 'lock.backend': 'redis', 'lock.operation': 'release' };
      const releaseErrorsBefore = (await sdk.metrics()).sum('lock.backend.errors', releaseErrors);
      const error = await locks
        .withLock(
          'k',
          async (held) => {
            heldDuring = (await sdk.metrics()).sum('lock.held', { 'lock.name': 'down.kill' });
            await server.kill();
            await aborted(held.signal);
          },
          // Long enough that an extension fails (within the 200 ms command timeout) before the deadline.
          { ttl: 1_500, metricName: 'down.kill' },
        )
        .catch((e: unknown) => e);
      await locks.shutdown();
      expect(error).toBeInstanceOf(LockLostError);
      const metrics = await sdk.metrics();
      expect(heldDuring).toBe(1);
      expect(metrics.sum('lock.held', { 'lock.name': 'down.kill' })).toBe(0);
      expect(metrics.sum('lock.lost', { 'lock.name': 'down.kill', 'lock.lost.reason': 'extension_unconfirmed' })).toBe(
        1,
      );
      const failures = metrics.sum('lock.extension.failures', {
        'lock.name': 'down.kill',
        'lock.extension.failure': 'error',
      });
      expect(failures).toBeGreaterThanOrEqual(1);
      // Each failed extension, and the release after the work, were backend errors.
      expect(metrics.sum('lock.backend.errors', { 'lock.backend': 'redis', 'lock.operation': 'extend' })).toBe(
        failures,
      );
      expect(metrics.sum('lock.backend.errors', releaseErrors) - releaseErrorsBefore).toBe(1);
      const [span] = sdk.finished(spanName('down.kill'));
      expect(span.events.find((event) => event.name === 'lock.lost')?.attributes).toEqual({
        'lock.lost.reason': 'extension_unconfirmed',
      });
    });
  });

  describe('options', () => {
    it('telemetry: false records nothing, even with an SDK registered', async () => {
      const locks = new DistributedLockService({
        backend: memoryBackend(),
        keyPrefix: 'otel-off:',
        ttl: 1_000,
        wait: 0,
        telemetry: false,
      });
      await locks.withLock('k', () => 'ran', { metricName: 'off.with' });
      await locks.release((await locks.tryAcquire('k', { metricName: 'off.try' }))!);
      await locks.shutdown();
      const metrics = await sdk.metrics();
      expect(metrics.points(W, { 'lock.name': 'off.with' })).toEqual([]);
      expect(metrics.points(W, { 'lock.name': 'off.try' })).toEqual([]);
      expect(sdk.finished(spanName('off.with'))).toEqual([]);
    });

    it('recordKey puts the key on spans (never on metrics); metrics: false keeps only spans', async () => {
      const app = await Test.createTestingModule({
        imports: [
          LockModule.forRoot({
            keyPrefix: 'otel-key:',
            telemetry: { metrics: false, recordKey: true },
            errorFilters: false,
          }),
        ],
      }).compile();
      const locks = app.get(DistributedLock);
      await locks.withLock('order:42', () => 'ran', { metricName: 'key.with' });
      await app.close();
      const [span] = sdk.finished(spanName('key.with'));
      expect(span.attributes).toMatchObject({ 'lock.key': 'order:42', 'lock.name': 'key.with' });
      expect((await sdk.metrics()).points(W, { 'lock.name': 'key.with' })).toEqual([]);
    });

    it('traces: false keeps only metrics; a call without metricName is (unnamed), never its key', async () => {
      const app = await Test.createTestingModule({
        imports: [LockModule.forRoot({ keyPrefix: 'otel-nospan:', telemetry: { traces: false }, errorFilters: false })],
      }).compile();
      const locks = app.get(DistributedLock);
      const before = (await sdk.metrics()).histogram(W, { 'lock.name': '(unnamed)' }).count;
      const spansBefore = sdk.finished().length;
      await locks.withLock('user:1234', () => 'ran');
      await app.close();
      const metrics = await sdk.metrics();
      expect(metrics.histogram(W, { 'lock.name': '(unnamed)', 'lock.outcome': 'acquired' }).count).toBe(before + 1);
      expect(JSON.stringify(metrics.points(W))).not.toContain('user:1234');
      expect(sdk.finished().length).toBe(spansBefore);
    });

    it('a reentrant withLock makes a child span marked lock.reentrant, and no second acquisition', async () => {
      const locks = new DistributedLockService({
        backend: memoryBackend(),
        keyPrefix: 'otel-re:',
        ttl: 1_000,
        wait: 0,
      });
      await locks.withLock('k', () => locks.withLock('k', () => 'inner', { metricName: 're.inner' }), {
        metricName: 're.outer',
      });
      await locks.shutdown();
      const [outer] = sdk.finished(spanName('re.outer'));
      const [inner] = sdk.finished(spanName('re.inner'));
      expect(inner.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
      expect(inner.attributes).toMatchObject({ 'lock.reentrant': true });
      expect(inner.attributes['lock.outcome']).toBeUndefined();
      expect((await sdk.metrics()).histogram(W, { 'lock.name': 're.inner' }).count).toBe(0);
    });
  });
});
