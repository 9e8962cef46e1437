import { setTimeout as delay } from 'node:timers/promises';

export const sleep = (ms: number): Promise<void> => delay(ms);

/**
 * Calls `attempt` until it returns something other than null/undefined/false, at most until
 * `within` ms have passed (a bounded loop); fails the test with `what` otherwise.
 */
export async function eventually<T>(
  attempt: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  { within = 5_000, every = 20, what = 'the condition' }: { within?: number; every?: number; what?: string } = {},
): Promise<T> {
  const until = Date.now() + within;
  for (;;) {
    const value = await attempt();
    if (value !== null && value !== undefined && value !== false) return value as T;
    if (Date.now() >= until) throw new Error(`Timed out after ${within} ms waiting for ${what}`);
    await delay(every);
  }
}

/**
 * Resolves once `signal` is aborted; at once when it already is. (An 'abort' listener added after
 * the abort never fires: on a slow machine a lease can be lost while the work is still awaiting
 * the call that was meant to come first.)
 */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
