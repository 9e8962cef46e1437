import { loadOptionalPeer } from '../optional-peer';

export type OtelApi = typeof import('@opentelemetry/api');

/**
 * `@opentelemetry/api` is an optional peer dependency, loaded when a `DistributedLock` is created
 * with telemetry on. Only the API: which SDK records (if any) is the application's choice.
 */
export function loadOtelApi(): OtelApi {
  return loadOptionalPeer<OtelApi>('@opentelemetry/api', {
    neededBy: 'LockModule telemetry needs',
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    load: () => require('@opentelemetry/api'),
  });
}
