import type { BackendCalls } from './backend-calls';
import { LockBackendError, LockTimeoutError } from './lock.errors';
import type { Acquisition, Grant } from './lock-acquisition';
import type { CallOptions } from './lock-call-options';
import { monotonicNow } from './lock-clock';
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
 * The grant came back after its own local deadline (a stalled network or backend): the lease may
 * already have ended and gone to someone else, so it is given back unused, and the wait counted as
 * an error. Returns the error for the caller.
 */
export function grantTooLate(
  calls: BackendCalls,
  telemetry: LockTelemetry,
  acquisition: Acquisition,
  call: CallOptions,
  grant: Grant,
  now: number,
): LockBackendError {
  calls.giveBack(acquisition.backendKey, grant.token);
  if (telemetry.on) telemetry.waited(call.name, 'error', now - acquisition.started);
  return new LockBackendError(
    calls.backend.name,
    `the grant of "${acquisition.key}" came back after its local deadline (ttl ${call.ttl} ms): the backend or the ` +
      'network was too slow for this ttl, so it was given back unused',
  );
}

/**
 * A grant that arrived once the service had begun to shut down (its attempt was in flight): given
 * back unused, the wait counted as aborted, as the waits shutdown ends are. Returns the error for the caller.
 */
export function grantAtShutdown(
  calls: BackendCalls,
  telemetry: LockTelemetry,
  acquisition: Acquisition,
  call: CallOptions,
  grant: Grant,
  now: number,
): LockBackendError {
  calls.giveBack(acquisition.backendKey, grant.token);
  if (telemetry.on) telemetry.waited(call.name, 'aborted', now - acquisition.started);
  return new LockBackendError(calls.backend.name, 'the application is shutting down');
}
