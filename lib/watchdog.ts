import { driftMargin, MAX_TIMER_DELAY } from './lock.constants';
import { monotonicNow } from './lock-clock';
import type { ExtendItem } from './backends/lock-backend';

/** A lease under the watchdog's care. */
export interface WatchedLease {
  /** The key as the backend knows it (prefixed). */
  readonly key: string;
  readonly token: string;
  readonly ttl: number;
  /** Called after each confirmed extension with the new local deadline (monotonic). */
  onConfirmed(deadline: number): void;
  /** Called once when the lease cannot be confirmed any more; the watch is over. */
  onLost(detail: string): void;
}

/** Renews leases in bulk; one result per item, in order: true, false, or the error it failed with. */
export type ExtendBatch = (items: ExtendItem[]) => Promise<Array<boolean | Error>>;

/** Stops a watch. Synchronous: once it returns, the watchdog sends no extension for that lease. */
export type StopWatch = () => void;

interface Entry {
  lease: WatchedLease;
  /** Monotonic lower bound of the moment the backend last started the lease. */
  confirmedAt: number;
  /** Monotonic time after which the lease can no longer be trusted. */
  deadline: number;
  /** Monotonic time of the next extension. */
  extendAt: number;
  extending: boolean;
  done: boolean;
  /** Bumped on every reschedule; heap nodes carrying an older version are stale. */
  version: number;
}

interface Node {
  at: number;
  entry: Entry;
  version: number;
}

/**
 * One scheduler for every lease a process holds under `withLock` / `@WithLock`.
 *
 * Leases sit in a min-heap ordered by their next due time; a single unref'd timer is armed for the
 * earliest. When it fires, every lease due within a small window is extended in one batch (one
 * backend round trip where the backend supports `extendMany` or pipelining), so 10,000 held locks
 * cost one timer and a few batched calls per tick, not 10,000 timers.
 *
 * Each lease has a local deadline on the monotonic clock: the send time of the last confirmed
 * acquisition or extension, plus the TTL, minus the drift margin. An extension is sent every ttl/3.
 * If one is refused, or none is confirmed by the deadline, the lease is reported lost at that
 * moment, which is before the backend's own expiry by the holder's clock.
 */
export class Watchdog {
  private heap: Node[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private entries = new Set<Entry>();

  constructor(private readonly extendBatch: ExtendBatch) {}

  /** Number of leases being watched. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Starts watching a lease whose current term began no earlier than `confirmedAt` (monotonic).
   * `validFor`: the backend vouches for less than the ttl until the first extension (see
   * `LockEvent`); the first deadline is then counted from it, and the first extension goes at the
   * latest halfway there. Returns the synchronous stop function.
   */
  watch(lease: WatchedLease, confirmedAt: number, validFor = lease.ttl): StopWatch {
    const term = Math.min(lease.ttl, validFor);
    const entry: Entry = {
      lease,
      confirmedAt,
      deadline: confirmedAt + term - driftMargin(lease.ttl),
      extendAt: confirmedAt + Math.min(lease.ttl / 3, term / 2),
      extending: false,
      done: false,
      version: 0,
    };
    this.entries.add(entry);
    this.schedule(entry);
    return () => this.finish(entry);
  }

  /** Stops every watch (the module is shutting down). */
  stopAll(): void {
    for (const entry of [...this.entries]) this.finish(entry);
    this.heap = [];
    this.disarm();
  }

  private finish(entry: Entry): void {
    if (entry.done) return;
    entry.done = true;
    entry.version++;
    this.entries.delete(entry);
    if (this.entries.size === 0) {
      this.heap = [];
      this.disarm();
    }
  }

  private schedule(entry: Entry): void {
    entry.version++;
    const at = entry.extending ? entry.deadline : Math.min(entry.extendAt, entry.deadline);
    this.push({ at, entry, version: entry.version });
    if (at < this.timerAt) this.arm(at);
  }

  private arm(at: number): void {
    this.disarm();
    this.timerAt = at;
    const delay = Math.min(Math.max(0, Math.ceil(at - monotonicNow())), MAX_TIMER_DELAY);
    this.timer = setTimeout(() => this.tick(), delay);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = monotonicNow();
    const due: Entry[] = [];
    const lost: Entry[] = [];
    while (this.heap.length > 0) {
      const top = this.heap[0];
      const entry = top.entry;
      if (top.version !== entry.version || entry.done) {
        this.pop();
        continue;
      }
      // Extensions may go a little early so that neighbours share a batch; deadlines never do.
      const window = Math.min(20, entry.lease.ttl / 10);
      if (entry.deadline <= now) {
        this.pop();
        lost.push(entry);
      } else if (!entry.extending && entry.extendAt <= now + window) {
        this.pop();
        due.push(entry);
      } else {
        break;
      }
    }
    for (const entry of lost) {
      this.finish(entry);
      entry.lease.onLost(
        entry.extending
          ? 'no extension was confirmed before the local deadline (the backend is slow or unreachable)'
          : 'the lease ran past its local deadline before it could be extended',
      );
    }
    if (due.length > 0) this.extend(due, now);
    const next = this.heap[0];
    if (next && next.at < this.timerAt) this.arm(next.at);
  }

  private extend(entries: Entry[], sentAt: number): void {
    for (const entry of entries) {
      entry.extending = true;
      this.schedule(entry);
    }
    const items = entries.map((e) => ({ key: e.lease.key, token: e.lease.token, ttl: e.lease.ttl }));
    this.extendBatch(items).then(
      (results) => entries.forEach((entry, i) => this.settle(entry, results[i], sentAt)),
      (error: unknown) => entries.forEach((entry) => this.settle(entry, error as Error, sentAt)),
    );
  }

  private settle(entry: Entry, result: boolean | Error | undefined, sentAt: number): void {
    if (entry.done) return;
    entry.extending = false;
    if (result === true) {
      entry.confirmedAt = sentAt;
      entry.deadline = sentAt + entry.lease.ttl - driftMargin(entry.lease.ttl);
      entry.extendAt = sentAt + entry.lease.ttl / 3;
      entry.lease.onConfirmed(entry.deadline);
    } else if (result === false) {
      this.finish(entry);
      entry.lease.onLost('an extension was refused: the lease expired or was taken over');
      return;
    } else {
      // The backend failed: try again soon, until the deadline decides.
      entry.extendAt = monotonicNow() + Math.max(entry.lease.ttl / 10, 1);
    }
    this.schedule(entry);
  }

  private push(node: Node): void {
    const heap = this.heap;
    heap.push(node);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].at <= node.at) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = node;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right].at < heap[left].at ? right : left;
      if (heap[child].at >= last.at) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
  }
}
