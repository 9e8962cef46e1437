import type { SpanOptions, Tracer, TracerProvider } from '@opentelemetry/api';
import { PACKAGE_NAME, PACKAGE_VERSION } from '../lock.constants';
import { instrumentsOf, NameSeries, type LockInstruments } from './lock-telemetry.metrics';
import {
  ATTRIBUTES,
  MAX_NAMES,
  type AcquireOutcome,
  type BackendOperation,
  type LostReason,
} from './lock-telemetry.names';
import type { TelemetrySettings } from './lock-telemetry.settings';
import { LockSpan } from './lock-telemetry.span';
import type { OtelApi } from './otel-api.loader';

/*
 * Metrics and spans through `@opentelemetry/api` only. What records them is the application's SDK;
 * without one, every call here is skipped by a flag the service reads (`on`, `tracing`), so a lock
 * call pays one property read. Names follow OpenTelemetry's rules: dotted, lowercase, the unit in
 * the instrument's `unit`. Durations are in seconds, as OpenTelemetry's semantic conventions ask.
 */

export {
  ATTRIBUTES,
  EVENTS,
  INSTRUMENTS,
  OTHER_NAMES,
  UNNAMED,
  type AcquireOutcome,
  type BackendOperation,
  type LostReason,
} from './lock-telemetry.names';
export { telemetrySetting, type TelemetrySetting, type TelemetrySettings } from './lock-telemetry.settings';
export { LockSpan } from './lock-telemetry.span';

/**
 * What one service records: metrics when the application registered a meter provider, spans when
 * it registered a tracer provider (each looked up once, at the service's first call).
 * `TELEMETRY_OFF` records nothing; the service checks `on` and `tracing` before any call here.
 */
export class LockTelemetry {
  /** Whether metrics are recorded. */
  readonly on: boolean;
  /** Whether spans are recorded. */
  readonly tracing: boolean;
  private readonly names = new Map<string, NameSeries>();

  constructor(
    private readonly backend: string,
    private readonly instruments: LockInstruments | undefined,
    private readonly api: OtelApi | undefined,
    private readonly tracer: Tracer | undefined,
    private readonly recordKey = false,
  ) {
    this.on = instruments !== undefined;
    this.tracing = tracer !== undefined;
  }

  private seriesOf(name: string): NameSeries {
    let series = this.names.get(name);
    if (!series) {
      series = this.instruments?.seriesOf(this.backend, name) ?? new NameSeries(name, this.backend);
      if (this.names.size < MAX_NAMES) this.names.set(name, series);
    }
    return series;
  }

  /** An acquisition ended after `ms` of waiting. */
  waited(name: string, outcome: AcquireOutcome, ms: number): void {
    this.instruments!.waitDuration.record(ms / 1_000, this.seriesOf(name).outcomes[outcome]);
  }

  /** A lease of `name` is held from now on. */
  holdStarted(name: string): void {
    this.seriesOf(name).held++;
  }

  /** A lease of `name` held for `ms` is no longer held. */
  holdEnded(name: string, ms: number): void {
    const series = this.seriesOf(name);
    series.held--;
    this.instruments!.holdDuration.record(ms / 1_000, series.base);
  }

  lost(name: string, reason: LostReason): void {
    this.instruments!.lost.add(1, this.seriesOf(name).with(ATTRIBUTES.lostReason, reason));
  }

  extensionFailed(name: string, failure: 'refused' | 'error'): void {
    this.instruments!.extensionFailures.add(1, this.seriesOf(name).with(ATTRIBUTES.extensionFailure, failure));
  }

  backendError(operation: BackendOperation): void {
    this.instruments!.backendErrors.add(1, this.instruments!.backendOperation(this.backend, operation));
  }

  /** Starts the span of a `withLock` call, a child of the caller's active span. */
  startSpan(name: string, key: string, reentrant: boolean): LockSpan {
    const series = this.seriesOf(name);
    let attributes = series.base;
    if (this.recordKey || reentrant) {
      attributes = { ...attributes };
      if (this.recordKey) attributes[ATTRIBUTES.key] = key;
      if (reentrant) attributes[ATTRIBUTES.reentrant] = true;
    }
    const options: SpanOptions = { kind: this.api!.SpanKind.INTERNAL, attributes };
    return new LockSpan(this.api!, this.tracer!.startSpan(series.spanName, options));
  }
}

/** Records nothing: telemetry turned off, `@opentelemetry/api` not installed, or no SDK registered. */
export const TELEMETRY_OFF = new LockTelemetry('', undefined, undefined, undefined);

/**
 * The telemetry of a service on `backend`, looked up in the providers registered now: a meter
 * provider gives metrics, a tracer provider spans. The API's no-op meter and a tracer provider
 * with no SDK behind it count as none, so without an SDK the service records nothing at all.
 */
export function resolveTelemetry(api: OtelApi, settings: TelemetrySettings, backend: string): LockTelemetry {
  let instruments: LockInstruments | undefined;
  if (settings.metrics) {
    const meter = api.metrics.getMeter(PACKAGE_NAME, PACKAGE_VERSION);
    if (meter !== api.createNoopMeter()) instruments = instrumentsOf(meter);
  }
  const tracer = settings.traces ? registeredTracer(api.trace.getTracerProvider()) : undefined;
  if (!instruments && !tracer) return TELEMETRY_OFF;
  return new LockTelemetry(backend, instruments, api, tracer, settings.recordKey);
}

/**
 * The tracer of the SDK behind the global tracer provider, or undefined when none is registered.
 * The API hands out a proxy provider whose tracers are no-ops until an SDK registers; its delegate
 * tracer is the SDK's own (and spares the proxy's indirection on every span).
 */
function registeredTracer(provider: TracerProvider): Tracer | undefined {
  const proxy = provider as TracerProvider & {
    getDelegateTracer?: (name: string, version?: string) => Tracer | undefined;
  };
  if (typeof proxy.getDelegateTracer === 'function') return proxy.getDelegateTracer(PACKAGE_NAME, PACKAGE_VERSION);
  return provider.getTracer(PACKAGE_NAME, PACKAGE_VERSION);
}
