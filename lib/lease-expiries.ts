import { monotonicNow, WakeTimer } from './lock-clock';
import { MinHeap } from './min-heap';

/**
 * Calls `expire(item)` once an item's time (monotonic) has come, unless it was moved or removed
 * first: one heap and one unref'd timer for every item, however many. The service forgets with it
 * the leases that end by their TTL without a release.
 */
export class LeaseExpiries<T> {
  private readonly due = new Map<T, number>();
  private readonly heap = new MinHeap<{ at: number; item: T }>();
  private readonly timer = new WakeTimer(() => this.tick());

  constructor(private readonly expire: (item: T) => void) {}

  /** Items waiting for their time. */
  get size(): number {
    return this.due.size;
  }

  /** Nodes in the heap, stale ones included: at most twice the items once more than a few are removed. */
  get nodes(): number {
    return this.heap.size;
  }

  /** Sets (or moves) the time of `item`. */
  set(item: T, at: number): void {
    this.due.set(item, at);
    this.heap.push({ at, item });
    if (at < this.timer.at) this.timer.arm(at);
  }

  delete(item: T): void {
    if (!this.due.delete(item)) return;
    // Removed items leave their nodes in the heap. Once they outnumber the live ones, the heap is
    // rebuilt from the live items, so a stream of leases released before they end (the common case)
    // keeps it at most twice the size of what is held. The timer is left armed: it finds nothing.
    if (this.due.size === 0) this.heap.clear();
    else if (this.heap.size > 64 && this.heap.size > 2 * this.due.size) this.rebuild();
  }

  private rebuild(): void {
    this.heap.clear();
    for (const [item, at] of this.due) this.heap.push({ at, item });
  }

  clear(): void {
    this.due.clear();
    this.heap.clear();
    this.timer.disarm();
  }

  private tick(): void {
    const now = monotonicNow();
    for (let top = this.heap.peek(); top && top.at <= now; top = this.heap.peek()) {
      this.heap.pop();
      // A node whose item was moved or removed since it was pushed is stale.
      if (this.due.get(top.item) !== top.at) continue;
      this.due.delete(top.item);
      this.expire(top.item);
    }
    const next = this.heap.peek();
    if (next) this.timer.arm(next.at);
  }
}
