import { resolveTelemetry, TELEMETRY_OFF, type LockTelemetry, type TelemetrySetting } from './lock-telemetry';
import { loadOtelApi, type OtelApi } from './otel-api.loader';

/**
 * What one service records, looked up at its first call (the application's SDK is registered by
 * then) and fixed from that moment: metrics and spans, or nothing at all.
 */
export class ServiceTelemetry {
  /** The API and what to record, when telemetry is on. */
  private readonly otel: { api: OtelApi; setting: Exclude<TelemetrySetting, false> } | undefined;
  private resolved: LockTelemetry | undefined = undefined;

  constructor(
    setting: TelemetrySetting,
    private readonly backend: string,
  ) {
    this.otel = openTelemetry(setting);
  }

  /** What to record from now on; the first read looks up the registered providers. */
  get current(): LockTelemetry {
    return this.resolved ?? this.resolve();
  }

  /** What to record, without a look-up: nothing until a call of the service looked up the providers. */
  get settled(): LockTelemetry {
    return this.resolved ?? TELEMETRY_OFF;
  }

  private resolve(): LockTelemetry {
    this.resolved = this.otel ? resolveTelemetry(this.otel.api, this.otel.setting, this.backend) : TELEMETRY_OFF;
    return this.resolved;
  }
}

/**
 * The API for a service's telemetry, when it is on: `undefined` when turned off, or when
 * `@opentelemetry/api` is not installed and telemetry was not asked for (asked for, that throws).
 */
function openTelemetry(
  setting: TelemetrySetting,
): { api: OtelApi; setting: Exclude<TelemetrySetting, false> } | undefined {
  if (setting === false) return undefined;
  try {
    return { api: loadOtelApi(), setting };
  } catch (error) {
    if (setting.required) throw error;
    return undefined;
  }
}
