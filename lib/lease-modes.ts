import type { LeaseMode, LeaseModeKind } from './backends/lock-backend';
import { InvalidLockOptionsError } from './lock.errors';
import { describeMode } from './lock-acquisition';

/**
 * A call in a mode its backend does not keep (`capabilities.modes`) is refused before any call to
 * the backend, so it holds and queues nothing.
 */
export function checkModeSupported(
  backend: string,
  modes: readonly LeaseModeKind[],
  mode: LeaseMode | undefined,
): void {
  if (!mode || modes.includes(mode.kind)) return;
  const what = mode.kind === 'shared' ? "mode 'shared'" : 'limit';
  const supported = modes.length === 0 ? 'exclusive locks only' : `exclusive locks and ${modes.join(', ')}`;
  throw new InvalidLockOptionsError(`The ${backend} backend does not support ${what}: it keeps ${supported}`);
}

/**
 * Whether a `withLock` in `inner` mode may run inside a surrounding hold of the same key in `outer`
 * mode, as a reentrant call. An exclusive hold covers an exclusive or shared call; a shared hold a
 * shared call; a limited hold a call with the same limit. Anything else would wait for the caller's
 * own hold to end (a shared holder asking for exclusive waits for itself), so it is refused.
 */
export function checkReentrantMode(key: string, outer: LeaseMode | undefined, inner: LeaseMode | undefined): void {
  const covered =
    outer === undefined
      ? inner === undefined || inner.kind === 'shared'
      : outer.kind === 'shared'
        ? inner?.kind === 'shared'
        : inner?.kind === 'limit' && inner.limit === outer.limit;
  if (covered) return;
  throw new InvalidLockOptionsError(
    `withLock("${key}") asked for ${describeMode(inner)} inside a hold of the same key with ${describeMode(outer)}: ` +
      'it would wait for its own hold to end. An exclusive hold covers exclusive and shared calls, a shared hold ' +
      'shared calls, a limited hold calls with the same limit; take the stronger mode in the outer call',
  );
}
