/**
 * `nestjs-distributed-lock/testing`: the conformance kit for backend authors, the suites the
 * project's own backends run. Needs a test runner with jest's shape (jest, vitest), passed in, and
 * `fast-check` (an optional peer dependency) for the model tests.
 */
export { describeLockBackendConformance } from './testing/lock-backend.conformance';
export { describeLockBackendContract } from './testing/lock-backend.contract';
export { describeGiveUpContract } from './testing/give-up.contract';
export { describeLockModelProperty } from './testing/lock-model.property';
export type {
  ConformanceAssertion,
  ConformanceExpect,
  ConformanceMatchers,
  ConformanceTarget,
  ConformanceTestApi,
  LockStateView,
} from './testing/conformance-target';
