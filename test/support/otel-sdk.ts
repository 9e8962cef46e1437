import { context, metrics, trace, type Attributes, type AttributeValue } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  DataPointType,
  MeterProvider,
  MetricReader,
  type DataPoint,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';

/** A metric reader that collects when the test asks: cumulative, as a Prometheus scrape would read it. */
class OnDemandReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }

  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** One point of a collected metric: its attributes and its value (a number, or a histogram). */
export interface Point {
  attributes: Attributes;
  value: number | Histogram;
}

/** What the metrics read at one collection: the points of each instrument, by name. */
export class MetricSnapshot {
  constructor(private readonly byName: Map<string, MetricData>) {}

  /** The instrument's descriptor (unit, type), as the SDK registered it. */
  descriptor(name: string): MetricData['descriptor'] | undefined {
    return this.byName.get(name)?.descriptor;
  }

  /** The points of `name` whose attributes include `where`. */
  points(name: string, where: Record<string, AttributeValue> = {}): Point[] {
    const data = this.byName.get(name);
    if (!data) return [];
    return (data.dataPoints as DataPoint<number | Histogram>[])
      .filter((point) => Object.entries(where).every(([key, value]) => point.attributes[key] === value))
      .map((point) => ({ attributes: point.attributes, value: point.value }));
  }

  /** The sum of a counter's or an up-down counter's points that match. */
  sum(name: string, where: Record<string, AttributeValue> = {}): number {
    return this.points(name, where).reduce((total, point) => total + (point.value as number), 0);
  }

  /** How many values a histogram recorded in its points that match, and their sum. */
  histogram(name: string, where: Record<string, AttributeValue> = {}): { count: number; sum: number } {
    const data = this.byName.get(name);
    if (data && data.dataPointType !== DataPointType.HISTOGRAM) throw new Error(`${name} is not a histogram`);
    return this.points(name, where).reduce(
      (total, point) => {
        const value = point.value as Histogram;
        return { count: total.count + value.count, sum: total.sum + (value.sum ?? 0) };
      },
      { count: 0, sum: 0 },
    );
  }
}

/**
 * The real OpenTelemetry SDK, registered globally as an application registers it: a meter provider
 * with a reader the test collects from, a tracer provider exporting to memory, and the
 * AsyncLocalStorage context manager. `unregister()` takes all three away again.
 */
export class OtelSdk {
  readonly spans = new InMemorySpanExporter();
  private readonly reader = new OnDemandReader();
  private readonly meterProvider = new MeterProvider({ readers: [this.reader] });
  private readonly tracerProvider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter: this.spans })],
  });
  private readonly contextManager = new AsyncLocalStorageContextManager();

  static register(): OtelSdk {
    const sdk = new OtelSdk();
    context.setGlobalContextManager(sdk.contextManager.enable());
    trace.setGlobalTracerProvider(sdk.tracerProvider);
    metrics.setGlobalMeterProvider(sdk.meterProvider);
    return sdk;
  }

  /** A tracer of the test's own, for the spans it starts around lock calls. */
  tracer(): ReturnType<typeof trace.getTracer> {
    return trace.getTracer('test');
  }

  async metrics(): Promise<MetricSnapshot> {
    const { resourceMetrics, errors } = await this.reader.collect();
    if (errors.length > 0) throw errors[0];
    const byName = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric);
    }
    return new MetricSnapshot(byName);
  }

  /** The spans ended so far whose name is `name`, oldest first. */
  finished(name?: string): ReadableSpan[] {
    return this.spans.getFinishedSpans().filter((span) => name === undefined || span.name === name);
  }

  async unregister(): Promise<void> {
    await this.tracerProvider.shutdown();
    await this.meterProvider.shutdown();
    trace.disable();
    metrics.disable();
    context.disable();
  }
}

/** The instrumentation scope (name and version) the library's meter and tracer report. */
export function scopeOf(span: ReadableSpan): { name: string; version?: string } {
  return span.instrumentationScope;
}
