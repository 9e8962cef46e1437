import { driftMargin } from '../../lock.constants';
import { LockBackendError } from '../../lock.errors';
import { monotonicNow } from '../../lock-clock';
import type { AcquireResult, ExtendItem, LockBackend, LockEvent } from '../lock-backend';
import type { RedisLockBackend } from './redis-lock.backend';

type Outcome<T> = { value: T; error?: undefined } | { value?: undefined; error: Error };

function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error: error instanceof Error ? error : new Error(String(error)) }),
  );
}

/**
 * Redlock over an odd number (at least 3) of independent Redis masters.
 *
 * - acquire: the same token on every node in parallel; the lock is held when a majority granted it
 *   and the lease still has validity left (ttl − elapsed − drift). Otherwise whatever was taken is
 *   given back at once, and the answer is "busy" (a majority answered) or a `LockBackendError`
 *   (too many nodes failed to answer for a majority to exist).
 * - extend: confirmed when a majority renewed; "not held" when a majority refused; otherwise an
 *   error, so the watchdog tries again until the holder's local deadline.
 * - release: on every node; true when a majority still held the lease, false when a majority no
 *   longer did (the lease was lost), an error otherwise.
 *
 * Fences: each node issues its own strictly increasing fence (server microseconds, raised above the
 * node's previous fence and above the highest fence this process has seen); the quorum's fence is
 * the highest of the granting majority. Two successive holders' majorities share at least one node,
 * where the later fence is higher; the reported (maximum) fences increase across holders as long as
 * the nodes' clocks agree to within the time between the two grants, and always within one
 * process. That is weaker than a single node's guarantee; see the documentation.
 *
 * No FIFO queue here: queues on separate nodes would hand the lock to different waiters. Waiters
 * are woken by every node's release announcements and retry.
 */
export class RedisQuorumLockBackend implements LockBackend {
  readonly name = 'redis';
  /** No FIFO queue, and fences that are the highest of the granting majority's own (see above). */
  readonly capabilities = { fifo: false, fencing: 'per-node' } as const;
  readonly recheckInterval: number;
  private readonly majority: number;

  constructor(
    private readonly nodes: readonly RedisLockBackend[],
    recheckInterval: number,
  ) {
    this.majority = Math.floor(nodes.length / 2) + 1;
    this.recheckInterval = recheckInterval;
  }

  async tryAcquire(key: string, token: string, ttl: number): Promise<AcquireResult> {
    const started = monotonicNow();
    const outcomes = await Promise.all(this.nodes.map((node) => settle(node.tryAcquire(key, token, ttl))));
    const elapsed = monotonicNow() - started;
    const fences = outcomes.flatMap((o) => (o.value && o.value.fence !== null ? [o.value.fence] : []));
    const validity = ttl - elapsed - driftMargin(ttl);
    if (fences.length >= this.majority && validity > 0) {
      const fence = fences.reduce((a, b) => (b > a ? b : a));
      for (const node of this.nodes) node.raiseFloor(fence);
      return { fence };
    }
    if (fences.length > 0) await this.releaseQuietly(key, token);
    const failed = this.failures(outcomes);
    if (failed.length > this.nodes.length - this.majority) {
      throw this.noMajority('acquire', failed);
    }
    if (fences.length >= this.majority) {
      throw new LockBackendError(
        'redis',
        `acquire: a majority granted the lock, but only after ${Math.round(elapsed)} ms of its ${ttl} ms lease; it was given back`,
      );
    }
    const waits = outcomes.flatMap((o) =>
      o.value && o.value.fence === null && o.value.retryIn !== undefined ? [o.value.retryIn] : [],
    );
    return { fence: null, retryIn: waits.length > 0 ? Math.min(...waits) : 0 };
  }

  async extend(key: string, token: string, ttl: number): Promise<boolean> {
    const outcomes = await Promise.all(this.nodes.map((node) => settle(node.extend(key, token, ttl))));
    return this.tally('extend', outcomes);
  }

  async extendMany(items: readonly ExtendItem[]): Promise<Array<boolean | Error>> {
    const perNode = await Promise.all(
      this.nodes.map((node) =>
        node
          .extendMany(items)
          .catch((error: unknown) => items.map(() => (error instanceof Error ? error : new Error(String(error))))),
      ),
    );
    return items.map((_, i) => {
      const outcomes = perNode.map((answers): Outcome<boolean> => {
        const answer = answers[i];
        return answer instanceof Error ? { error: answer } : { value: answer };
      });
      try {
        return this.tally('extend', outcomes);
      } catch (error) {
        return error as Error;
      }
    });
  }

  /**
   * True when a majority of the nodes still held the lease and released it; false when a majority
   * no longer held it (expired, flushed or evicted there: another holder could have taken the lock
   * meanwhile); an error when too many nodes failed to tell.
   */
  async release(key: string, token: string): Promise<boolean> {
    const outcomes = await Promise.all(this.nodes.map((node) => settle(node.release(key, token))));
    return this.tally('release', outcomes, 'released', 'did not hold it');
  }

  async subscribe(key: string, listener: (event: LockEvent) => void): Promise<() => void> {
    const forward = (event: LockEvent): void => listener({ type: 'released', key: event.key });
    const outcomes = await Promise.all(this.nodes.map((node) => settle(node.subscribe(key, forward))));
    const stops = outcomes.flatMap((o) => (o.value ? [o.value] : []));
    const failed = this.failures(outcomes);
    if (stops.length < this.majority) {
      for (const stop of stops) stop();
      throw this.noMajority('subscribe', failed);
    }
    return () => stops.forEach((stop) => stop());
  }

  async ping(): Promise<void> {
    const outcomes = await Promise.all(this.nodes.map((node) => settle(node.ping())));
    const failed = this.failures(outcomes);
    if (failed.length > this.nodes.length - this.majority) throw this.noMajority('PING', failed);
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.close().catch(() => undefined)));
  }

  /** True on a majority of trues (renewals, releases), false on a majority of falses, an error otherwise. */
  private tally(what: string, outcomes: Array<Outcome<boolean>>, yes = 'renewed', no = 'refused'): boolean {
    const confirmed = outcomes.filter((o) => o.value === true).length;
    if (confirmed >= this.majority) return true;
    const refused = outcomes.filter((o) => o.value === false).length;
    if (refused > this.nodes.length - this.majority) return false;
    throw this.noMajority(what, this.failures(outcomes), `${confirmed} ${yes}, ${refused} ${no}`);
  }

  private failures(outcomes: Array<Outcome<unknown>>): Array<{ node: RedisLockBackend; error: Error }> {
    return outcomes.flatMap((o, i) => (o.error ? [{ node: this.nodes[i], error: o.error }] : []));
  }

  private noMajority(
    what: string,
    failed: Array<{ node: RedisLockBackend; error: Error }>,
    detail?: string,
  ): LockBackendError {
    const reasons = failed.map((f) => f.error.message.replace(/^Lock backend redis failed: /, '')).join('; ');
    return new LockBackendError(
      'redis',
      `${what}: no majority of the ${this.nodes.length} Redis nodes (${this.majority} needed)` +
        `${detail ? `: ${detail}` : ''}; ${failed.length} failed: ${reasons}`,
      { cause: failed[0]?.error },
    );
  }

  private async releaseQuietly(key: string, token: string): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.release(key, token).catch(() => undefined)));
  }
}
