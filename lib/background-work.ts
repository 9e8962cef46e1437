import { settleWithin } from './lock-clock';

/**
 * Work started in the background (a release after a failure, the give-back of an abandoned wait)
 * that must not be lost: each piece is tracked until it settles, and `settle` lets a `close()` or
 * shutdown wait for what is still running, bounded in time. A failure goes to `onError` (or is
 * dropped), never to an unhandled rejection.
 */
export class BackgroundWork {
  private readonly running = new Set<Promise<void>>();

  /** Tracks `work` until it settles. */
  run(work: Promise<unknown>, onError?: (error: unknown) => void): void {
    const tracked = work.then(
      () => undefined,
      (error: unknown) => onError?.(error),
    );
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
  }

  /** Pieces still running. */
  get size(): number {
    return this.running.size;
  }

  /** Resolves once everything running now has settled, or after `ms`, whichever comes first. */
  settle(ms: number): Promise<void> {
    return settleWithin([...this.running], ms);
  }
}
