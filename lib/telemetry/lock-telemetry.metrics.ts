import type { Attributes, Counter, Histogram, Meter, ObservableResult } from '@opentelemetry/api';
import {
  ATTRIBUTES,
  INSTRUMENTS,
  MAX_NAMES,
  OTHER_NAMES,
  type AcquireOutcome,
  type BackendOperation,
} from './lock-telemetry.names';

/** Bucket boundaries in seconds: lock waits run from microseconds (memory) to the wait limit. */
const WAIT_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Holds run from a short critical section to a long job. */
const HOLD_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/**
 * The attribute sets of one lock name on one backend, made once: the SDK copies attributes, so the
 * same objects serve every measurement, and a call allocates none.
 */
export class NameSeries {
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
export class LockInstruments {
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

/** The instruments of `meter`: made at its first use, then shared by every service that records through it. */
export function instrumentsOf(meter: Meter): LockInstruments {
  let instruments = instrumentsOfMeter.get(meter);
  if (!instruments) {
    instruments = new LockInstruments(meter);
    instrumentsOfMeter.set(meter, instruments);
  }
  return instruments;
}
