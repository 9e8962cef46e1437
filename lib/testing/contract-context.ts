import type { LockBackendCapabilities } from '../backends/lock-backend';
import { DistributedLockService } from '../distributed-lock.service';
import type { ConformanceTarget, ConformanceTestApi } from './conformance-target';
import type { RecordingBackend } from './recording-backend';

/** What the cases of the contract share: the runner, the target, and the backend of the running case. */
export interface ContractContext {
  readonly api: ConformanceTestApi;
  readonly target: ConformanceTarget;
  /** What the target claims, each flag resolved. */
  readonly capabilities: Required<LockBackendCapabilities>;
  /** The running case's backend (a fresh one per case), wrapped to record its calls. */
  backend: RecordingBackend;
  /** The running case's key prefix (a fresh one per case). */
  prefix: string;
  /** Registers a case with the target's timeout (or `timeout`). */
  it(name: string, body: () => Promise<unknown>, timeout?: number): void;
  /** A service on the case's backend, as another instance of the app would have. */
  service(settings?: { ttl?: number; wait?: number }): DistributedLockService;
}

export function contractContext(
  api: ConformanceTestApi,
  target: ConformanceTarget,
  capabilities: Required<LockBackendCapabilities>,
  caseTimeout: number,
): ContractContext {
  const ctx: ContractContext = {
    api,
    target,
    capabilities,
    backend: undefined as unknown as RecordingBackend,
    prefix: '',
    it: (name, body, timeout) => api.it(name, body, timeout ?? caseTimeout),
    service: (settings = {}) =>
      new DistributedLockService({
        backend: ctx.backend,
        keyPrefix: ctx.prefix,
        ttl: settings.ttl ?? 10_000,
        wait: settings.wait ?? 5_000,
      }),
  };
  return ctx;
}
