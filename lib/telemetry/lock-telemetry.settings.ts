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
