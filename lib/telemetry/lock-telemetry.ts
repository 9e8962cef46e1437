import type {
  Attributes,
  Counter,
  Histogram,
  Meter,
  ObservableResult,
  Span,
  SpanOptions,
  Tracer,
  TracerProvider,
} from '@opentelemetry/api';
import { PACKAGE_NAME, PACKAGE_VERSION } from '../lock.constants';
import type { LossReason } from '../watchdog';
import type { OtelApi } from './otel-api.loader';

/*
 * Metrics and spans through `@opentelemetry/api` only. What records them is the application's SDK;
 * without one, every call here is skipped by a flag the service reads (`on`, `tracing`), so a lock
 * call pays one property read. Names follow OpenTelemetry's rules: dotted, lowercase, the unit in
 * the instrument's `unit`. Durations are in seconds, as OpenTelemetry's semantic conventions ask.
 */

/** How an acquisition ended, as `lock.outcome` says. */
export type AcquireOutcome = 'acquired' | 'busy' | 'skipped' | 'aborted' | 'error';
/** Why a lease was lost, as `lock.lost.reason` says. */
export type LostReason = LossReason | 'release_found_gone' | 'shutdown';
/** The backend call that failed, as `lock.operation` says. */
export type BackendOperation = 'acquire' | 'subscribe' | 'extend' | 'release' | 'ping';

/** The `lock.name` of calls that were given no `metricName`: never derived from the key (see the README). */
export const UNNAMED = '(unnamed)';
/** The `lock.name` of every name past the first `MAX_NAMES` one meter has seen. */
export const OTHER_NAMES = '(other)';
/** Distinct lock names one meter keeps series for; a `metricName` made from ids ends up in `(other)`. */
const MAX_NAMES = 1_000;

/** Instruments, attributes, span and event names: the README's tables list exactly these. */
export const INSTRUMENTS = {
  waitDuration: 'lock.wait.duration',
  holdDuration: 'lock.hold.duration',
  held: 'lock.held',
  lost: 'lock.lost',
  extensionFailures: 'lock.extension.failures',
  backendErrors: 'lock.backend.errors',
} as const;
export const ATTRIBUTES = {
  name: 'lock.name',
  backend: 'lock.backend',
  outcome: 'lock.outcome',
  lostReason: 'lock.lost.reason',
  extensionFailure: 'lock.extension.failure',
  operation: 'lock.operation',
  key: 'lock.key',
  fence: 'lock.fence',
  reentrant: 'lock.reentrant',
} as const;
export const EVENTS = { acquired: 'lock.acquired', lost: 'lock.lost', released: 'lock.released' } as const;

/** Bucket boundaries in seconds: lock waits run from microseconds (memory) to the wait limit. */
const WAIT_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Holds run from a short critical section to a long job. */
const HOLD_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** What telemetry a service records, as the module's `telemetry` option resolved it. */
export interface TelemetrySettings {
  metrics: boolean;
  traces: boolean;
  /** Put the key (without the prefix) on spans as `lock.key`. Never on metrics. */
  recordKey: boolean;
}

/**
 * The module's `telemetry` option as a service takes it: `false` (off), or what to record and
 * whether it was asked for (then a missing `@opentelemetry/api` fails the start instead of turning
 * telemetry off quietly).
 */
export type TelemetrySetting = false | (TelemetrySettings & { required: boolean });

/** Reads the (checked) `telemetry` option; left out, it is on where the API is installed. */
export function telemetrySetting(
  option: boolean | { metrics?: boolean; traces?: boolean; recordKey?: boolean } | undefined,
): TelemetrySetting {
  if (option === false) return false;
  const flags = option === undefined || option === true ? {} : option;
  return {
    metrics: flags.metrics !== false,
    traces: flags.traces !== false,
    recordKey: flags.recordKey === true,
    required: option !== undefined,
  };
}

/**
 * The attribute sets of one lock name on one backend, made once: the SDK copies attributes, so the
 * same objects serve every measurement, and a call allocates none.
 */
class NameSeries {
  readonly base: Attributes;
  readonly spanName: string;
  readonly outcomes: Record<AcquireOutcome, Attributes>;
  private readonly other = new Map<string, Attributes>();
  /** Leases of this name held now, by every service that shares the meter (`lock.held`). */
  held = 0;

  constructor(
    readonly name: string,
    backend: string,
  ) {
    this.base = { [ATTRIBUTES.name]: name, [ATTRIBUTES.backend]: backend };
    this.spanName = `lock ${name}`;
    const withOutcome = (outcome: AcquireOutcome): Attributes => ({ ...this.base, [ATTRIBUTES.outcome]: outcome });
    this.outcomes = {
      acquired: withOutcome('acquired'),
      busy: withOutcome('busy'),
      skipped: withOutcome('skipped'),
      aborted: withOutcome('aborted'),
      error: withOutcome('error'),
    };
  }

  /** The base attributes plus `attribute` = `value` (a small closed set of values each). */
  with(attribute: string, value: string): Attributes {
    const id = `${attribute}=${value}`;
    let attributes = this.other.get(id);
    if (!attributes) {
      attributes = { ...this.base, [attribute]: value };
      this.other.set(id, attributes);
    }
    return attributes;
  }
}

/** The instruments of one meter, shared by every service that records through it. */
class LockInstruments {
  readonly waitDuration: Histogram;
  readonly holdDuration: Histogram;
  readonly lost: Counter;
  readonly extensionFailures: Counter;
  readonly backendErrors: Counter;
  private readonly series = new Map<string, NameSeries>();
  private readonly backendAttributes = new Map<string, Attributes>();

  constructor(meter: Meter) {
    this.waitDuration = meter.createHistogram(INSTRUMENTS.waitDuration, {
      unit: 's',
      description: 'How long lock calls waited for the lock, by outcome',
      advice: { explicitBucketBoundaries: WAIT_BUCKETS },
    });
    this.holdDuration = meter.createHistogram(INSTRUMENTS.holdDuration, {
      unit: 's',
      description: 'How long leases were held, from the grant to the release (or the end of the lease)',
      advice: { explicitBucketBoundaries: HOLD_BUCKETS },
    });
    meter
      .createObservableUpDownCounter(INSTRUMENTS.held, {
        unit: '{lease}',
        description: 'Leases held now by this process',
      })
      .addCallback((result: ObservableResult) => {
        for (const series of this.series.values()) result.observe(series.held, series.base);
      });
    this.lost = meter.createCounter(INSTRUMENTS.lost, {
      unit: '{lease}',
      description: 'Leases lost while work ran under them, by reason',
    });
    this.extensionFailures = meter.createCounter(INSTRUMENTS.extensionFailures, {
      unit: '{extension}',
      description: 'Extensions the watchdog sent that were refused or failed',
    });
    this.backendErrors = meter.createCounter(INSTRUMENTS.backendErrors, {
      unit: '{error}',
      description: 'Backend operations that failed, by operation',
    });
  }

  seriesOf(backend: string, name: string): NameSeries {
    const id = `${backend}\u0000${name}`;
    let series = this.series.get(id);
    if (!series) {
      if (this.series.size >= MAX_NAMES && name !== OTHER_NAMES) return this.seriesOf(backend, OTHER_NAMES);
      series = new NameSeries(name, backend);
      this.series.set(id, series);
    }
    return series;
  }

  backendOperation(backend: string, operation: BackendOperation): Attributes {
    const id = `${backend}\u0000${operation}`;
    let attributes = this.backendAttributes.get(id);
    if (!attributes) {
      attributes = { [ATTRIBUTES.backend]: backend, [ATTRIBUTES.operation]: operation };
      this.backendAttributes.set(id, attributes);
    }
    return attributes;
  }
}

const instrumentsOfMeter = new WeakMap<Meter, LockInstruments>();

/**
 * The span of one `withLock` call. Events mark the grant (`lock.acquired`), a loss (`lock.lost`)
 * and the end of the hold (`lock.released`); the wait is the time from the start to the grant.
 */
export class LockSpan {
  constructor(
    private readonly api: OtelApi,
    readonly span: Span,
  ) {}

  /** Runs `fn(arg)` with this span active, so spans the work starts are its children. */
  run<A, T>(fn: (arg: A) => T, arg: A): T {
    const { context, trace } = this.api;
    return context.with(trace.setSpan(context.active(), this.span), fn, undefined, arg);
  }

  acquired(fence: bigint): void {
    this.span.addEvent(EVENTS.acquired, { [ATTRIBUTES.fence]: fence.toString() });
  }

  lost(reason: LostReason): void {
    this.span.addEvent(EVENTS.lost, { [ATTRIBUTES.lostReason]: reason });
  }

  released(): void {
    this.span.addEvent(EVENTS.released);
  }

  /** Ends the span: `outcome` as `lock.outcome` (when it was an acquisition), `error` as its status and exception. */
  end(outcome: AcquireOutcome | undefined, error?: unknown): void {
    if (outcome !== undefined) this.span.setAttribute(ATTRIBUTES.outcome, outcome);
    if (error !== undefined) {
      this.span.recordException(error instanceof Error ? error : String(error));
      this.span.setStatus({
        code: this.api.SpanStatusCode.ERROR,
        message: error instanceof Error ? error.message : String(error),
      });
    }
    this.span.end();
  }
}

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
    if (meter !== api.createNoopMeter()) {
      instruments = instrumentsOfMeter.get(meter);
      if (!instruments) {
        instruments = new LockInstruments(meter);
        instrumentsOfMeter.set(meter, instruments);
      }
    }
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
