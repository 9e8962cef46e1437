/**
 * Acquire attempts in flight, by key and token. A release of that token waits for them to settle,
 * so it reaches the server after them: a waiter that gives up is out of the queue for good.
 */
export class PostgresAttemptsInFlight {
  private readonly attempts = new Map<string, Set<Promise<unknown>>>();

  /** Tracks `attempt` of `token` on `key` until it settles; returns it. */
  track<T>(key: string, token: string, attempt: Promise<T>): Promise<T> {
    const id = attemptId(key, token);
    let set = this.attempts.get(id);
    if (!set) {
      set = new Set();
      this.attempts.set(id, set);
    }
    set.add(attempt);
    const settled = (): void => {
      const current = this.attempts.get(id);
      if (current?.delete(attempt) && current.size === 0) this.attempts.delete(id);
    };
    attempt.then(settled, settled);
    return attempt;
  }

  /**
   * Resolves once every attempt of `token` on `key` in flight now has settled (attempts are
   * bounded, so is this). Undefined when there is none: the caller goes on without yielding.
   */
  settled(key: string, token: string): Promise<unknown> | undefined {
    const inFlight = this.attempts.get(attemptId(key, token));
    return inFlight && Promise.allSettled([...inFlight]);
  }
}

function attemptId(key: string, token: string): string {
  // Keys never contain NUL (the service checks them).
  return `${key}\u0000${token}`;
}
