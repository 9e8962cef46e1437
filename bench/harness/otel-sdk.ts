import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';

/** A reader nobody collects from: the SDK aggregates every measurement, as between two scrapes. */
class IdleReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }

  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** An exporter that drops what it is given: the cost of the spans up to the wire, without the wire. */
class DiscardingExporter implements SpanExporter {
  exported = 0;

  export(spans: ReadableSpan[], done: (result: { code: 0 }) => void): void {
    this.exported += spans.length;
    done({ code: 0 });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The OpenTelemetry SDK as an application registers it (globally, with the AsyncLocalStorage context
 * manager and a batching span processor), exporting nowhere. Returns what takes it away again.
 */
export function registerOtelSdk(): { exporter: DiscardingExporter; unregister: () => Promise<void> } {
  const exporter = new DiscardingExporter();
  const meterProvider = new MeterProvider({ readers: [new IdleReader()] });
  const tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    exporter,
    unregister: async () => {
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
      trace.disable();
      metrics.disable();
      context.disable();
    },
  };
}
