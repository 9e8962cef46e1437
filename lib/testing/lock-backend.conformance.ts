import { CASE_TIMEOUT, type ConformanceTarget, type ConformanceTestApi } from './conformance-target';
import { describeGiveUpContract } from './give-up.contract';
import { describeLockBackendContract } from './lock-backend.contract';
import { describeLeaseModesProperty } from './lease-modes.property';
import { describeLockModelProperty } from './lock-model.property';

/**
 * The whole conformance kit for one backend: the contract, the give-up contract (crowds of waiters
 * giving up at once), the model test with the real scheduler and, for the modes the backend claims,
 * the lease-modes model (fast-check). The target's teardown
 * runs once, after all three.
 */
export function describeLockBackendConformance(api: ConformanceTestApi, target: ConformanceTarget): void {
  const shared: ConformanceTarget = Object.create(target, { teardown: { value: undefined } });
  api.describe(`LockBackend conformance: ${target.name}`, () => {
    if (target.teardown) api.afterAll(() => target.teardown!(), target.timeout ?? CASE_TIMEOUT);
    describeLockBackendContract(api, shared);
    describeGiveUpContract(api, shared);
    describeLockModelProperty(api, shared);
    describeLeaseModesProperty(api, shared);
  });
}
