import { randomBytes } from 'node:crypto';
import { capabilitiesOf } from '../backends/lock-backend';
import {
  CASE_TIMEOUT,
  describeCapabilities,
  type ConformanceTarget,
  type ConformanceTestApi,
} from './conformance-target';
import { contractContext } from './contract-context';
import { heldLeaseCases } from './held-lease.cases';
import { leaseCases } from './lease.cases';
import { minHoldCases } from './min-hold.cases';
import { multiKeyCases } from './multi-key.cases';
import { multiKeyLeaseCases } from './multi-key-leases.cases';
import { RecordingBackend } from './recording-backend';
import { sharedLimitCases } from './shared-limit.cases';
import { waitingCases } from './waiting.cases';
import { withLockCases } from './with-lock.cases';

/**
 * The contract every backend keeps, written once, run through the service as an app uses it: each
 * backend's spec calls this with its own target; when a backend fails a case, the backend is what
 * gets fixed. Cases that need a capability the target does not claim run in their weaker form, or
 * say "not claimed" in their name; none is left out.
 */
export function describeLockBackendContract(api: ConformanceTestApi, target: ConformanceTarget): void {
  const capabilities = capabilitiesOf(target);
  const timeout = target.timeout ?? CASE_TIMEOUT;
  const ctx = contractContext(api, target, capabilities, timeout);

  api.describe(`LockBackend contract: ${target.name}`, () => {
    api.beforeEach(async () => {
      ctx.backend = new RecordingBackend(await target.create());
      ctx.prefix = `contract:${randomBytes(6).toString('hex')}:`;
    }, timeout);

    api.afterEach(() => ctx.backend.close(), timeout);

    if (target.teardown) api.afterAll(() => target.teardown!(), timeout);

    ctx.it(`declares the capabilities the suite is run for (${describeCapabilities(capabilities)})`, async () => {
      api.expect(capabilitiesOf(ctx.backend.inner)).toEqual(capabilities);
    });

    leaseCases(ctx);
    waitingCases(ctx);
    withLockCases(ctx);
    heldLeaseCases(ctx);
    minHoldCases(ctx);
    multiKeyCases(ctx);
    multiKeyLeaseCases(ctx);
    sharedLimitCases(ctx);
  });
}
