import type { BackendCalls } from './backend-calls';
import { LockBackendError, LockTimeoutError } from './lock.errors';
import type { Acquisition, Grant } from './lock-acquisition';
import type { CallOptions } from './lock-call-options';
import { monotonicNow } from './lock-clock';
import { localDeadline } from './lock.constants';
import type { AcquireOutcome, LockTelemetry } from './telemetry/lock-telemetry';

/*
 * How a wait that did not end in a usable grant is told and counted: what the caller gets and the
 * outcome its `lock.wait.duration` records.
 */

/** Records a wait that ended without a grant; returns its outcome. */
export function waitFailed(
  telemetry: LockTelemetry,
  acquisition: Acquisition,
  call: CallOptions,
  error: unknown,
  shuttingDown: boolean,
): AcquireOutcome {
  let outcome: AcquireOutcome;
  if (error instanceof LockTimeoutError) outcome = call.skip ? 'skipped' : 'busy';
  else if ((call.signal?.aborted && error === call.signal.reason) || shuttingDown) outcome = 'aborted';
  else outcome = 'error';
  if (telemetry.on) telemetry.waited(call.name, outcome, monotonicNow() - acquisition.started);
  return outcome;
}

/**
 * Whether a grant that just came back may be used. It may not when it came back after its own
 * local deadline (a stalled network or backend: the lease may already have ended and gone to
 * someone else), nor once the service began to shut down (its attempt was in flight). Such a grant
 * is given back unused and the wait counted ('aborted' at shutdown, 'error' otherwise); returns the
 * error for the caller and that outcome, or undefined when the grant may be used.
 */
export function refusedGrant(
  calls: BackendCalls,
  telemetry: LockTelemetry,
  acquisition: Acquisition,
  call: CallOptions,
  grant: Grant,
  now: number,
  shuttingDown: boolean,
): { error: LockBackendError; outcome: AcquireOutcome } | undefined {
  let error: LockBackendError;
  let outcome: AcquireOutcome;
  if (shuttingDown) {
    error = new LockBackendError(calls.backend.name, 'the application is shutting down');
    outcome = 'aborted';
  } else if (localDeadline(grant.startedAt, call.ttl, grant.validFor) <= now) {
    error = new LockBackendError(
      calls.backend.name,
      `the grant of "${acquisition.key}" came back after its local deadline (ttl ${call.ttl} ms): the backend or the ` +
        'network was too slow for this ttl, so it was given back unused',
    );
    outcome = 'error';
  } else return undefined;
  calls.giveBack(acquisition.backendKey, grant.token);
  if (telemetry.on) telemetry.waited(call.name, outcome, now - acquisition.started);
  return { error, outcome };
}
