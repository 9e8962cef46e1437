import { CASE_TIMEOUT, type ConformanceTarget, type ConformanceTestApi } from './conformance-target';
import { describeGiveUpContract } from './give-up.contract';
import { describeLockBackendContract } from './lock-backend.contract';
import { describeLockModelProperty } from './lock-model.property';

/**
 * The whole conformance kit for one backend: the contract, the give-up contract (crowds of waiters
 * giving up at once) and the model test with the real scheduler (fast-check). The target's teardown
 * runs once, after all three.
 */
export function describeLockBackendConformance(api: ConformanceTestApi, target: ConformanceTarget): void {
  const shared: ConformanceTarget = Object.create(target, { teardown: { value: undefined } });
  api.describe(`LockBackend conformance: ${target.name}`, () => {
    if (target.teardown) api.afterAll(() => target.teardown!(), target.timeout ?? CASE_TIMEOUT);
    describeLockBackendContract(api, shared);
    describeGiveUpContract(api, shared);
    describeLockModelProperty(api, shared);
  });
}
