import { localDeadline } from './lock.constants';
import { monotonicNow, WakeTimer } from './lock-clock';
import { MinHeap } from './min-heap';
import type { ExtendItem } from './backends/lock-backend';

/** A lease under the watchdog's care. */
export interface WatchedLease {
  /** The key as the backend knows it (prefixed). */
  readonly backendKey: string;
  readonly token: string;
  readonly ttl: number;
  /** Called after each confirmed extension with the new local deadline (monotonic). */
  onConfirmed(deadline: number): void;
  /** Called once when the lease cannot be confirmed any more, with what happened and why; the watch is over. */
  onLost(detail: string, reason: LossReason): void;
  /** Called when an extension the watchdog sent was refused or failed (a refusal is followed by `onLost`). */
  onExtensionFailed?(failure: 'refused' | 'error'): void;
}

/**
 * Why a watched lease was lost: an extension was refused (the lease expired or was taken over), none
 * was confirmed before the local deadline (the backend is slow or unreachable), or the deadline
 * passed before one could be sent (the event loop was blocked).
 */
export type LossReason = 'extension_refused' | 'extension_unconfirmed' | 'deadline_passed';

/** Renews leases in bulk; one result per item, in order: true, false, or the error it failed with. */
export type ExtendBatch = (items: ExtendItem[]) => Promise<Array<boolean | Error>>;

/**
 * A lease under watch, as the service holds it. `stop()` is synchronous: once it returns, the
 * watchdog sends no extension for that lease.
 */
export interface LeaseWatch {
  /** Monotonic time after which the lease can no longer be trusted. */
  readonly deadline: number;
  stop(): void;
  /**
   * True while the lease is confirmed. When its local deadline has passed but no timer has noticed
   * yet (the event loop was blocked), the loss is reported now, synchronously, and false returned.
   */
  confirm(): boolean;
  /**
   * Another extension of the lease was sent at `sentAt` (monotonic) for `ttl` ms (an `extend` call
   * of the holder): the lease now runs with that ttl, and the deadline counts it from now on.
   * Call the returned function with the outcome.
   */
  extending(sentAt: number, ttl: number): (result: boolean | Error) => void;
}

/**
 * Extensions of one lease whose flights overlap: their order at the backend is unknown, so the
 * lease is only trusted until the earliest end any of them could have set.
 */
interface Flight {
  /** Extensions of the group still in flight. */
  pending: number;
  /** Whether one of them was confirmed. */
  confirmed: boolean;
  /** The earliest deadline any of them could leave, with the send time and ttl that give it. */
  deadline: number;
  sentAt: number;
  ttl: number;
}

/** A lease under watch: what the watchdog knows of it, and the `LeaseWatch` the service holds. */
class Entry implements LeaseWatch {
  /** The ttl extensions ask for: the lease's own, or the last one an `extend` call gave. */
  ttl: number;
  deadline: number;
  /** Monotonic time of the next extension. */
  extendAt: number;
  /** Whether the watchdog's own extension is in flight. */
  own = false;
  flight: Flight | undefined = undefined;
  /** An extension failed since the last confirmed one: a deadline that passes now is the backend's doing. */
  failed = false;
  done = false;
  /** Bumped on every reschedule; heap nodes carrying an older version are stale. */
  version = 0;

  constructor(
    readonly watchdog: Watchdog,
    readonly lease: WatchedLease,
    confirmedAt: number,
    validFor: number,
  ) {
    const term = Math.min(lease.ttl, validFor);
    this.ttl = lease.ttl;
    this.deadline = localDeadline(confirmedAt, lease.ttl, validFor);
    this.extendAt = confirmedAt + Math.min(lease.ttl / 3, term / 2);
  }

  stop(): void {
    this.watchdog.finish(this);
  }

  confirm(): boolean {
    if (this.done) return false;
    if (this.deadline > monotonicNow()) return true;
    this.watchdog.lapse(this);
    return false;
  }

  extending(sentAt: number, ttl: number): (result: boolean | Error) => void {
    if (this.done) return () => undefined;
    this.ttl = ttl;
    this.watchdog.depart(this, sentAt, ttl);
    this.watchdog.schedule(this);
    return (result) => this.watchdog.settle(this, result, false);
  }
}

interface Node {
  at: number;
  entry: Entry;
  version: number;
}

const PAST_DEADLINE = 'the lease ran past its local deadline before it could be extended (was the event loop blocked?)';
const UNCONFIRMED = 'no extension was confirmed before the local deadline (the backend is slow or unreachable)';
const REFUSED = 'an extension was refused: the lease expired or was taken over';

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
 * moment, which is before the backend's own expiry by the holder's clock. A timer can be late (a
 * blocked event loop): `confirm()` checks the deadline whenever the holder asks.
 */
export class Watchdog {
  private readonly heap = new MinHeap<Node>();
  private readonly timer = new WakeTimer(() => this.tick());
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
   * latest halfway there.
   */
  watch(lease: WatchedLease, confirmedAt: number, validFor = lease.ttl): LeaseWatch {
    const entry = new Entry(this, lease, confirmedAt, validFor);
    this.entries.add(entry);
    this.schedule(entry);
    return entry;
  }

  /** Stops every watch (the module is shutting down). */
  stopAll(): void {
    for (const entry of [...this.entries]) this.finish(entry);
    this.heap.clear();
    this.timer.disarm();
  }

  /** @internal Ends the watch of `entry`: no extension is sent for it from now on. */
  finish(entry: Entry): void {
    if (entry.done) return;
    entry.done = true;
    entry.version++;
    this.entries.delete(entry);
    // Finished watches leave their nodes in the heap. None left: the heap is emptied, and the timer
    // stays armed (unref'd: it finds nothing), so the next lease, due later, needs no timer of its
    // own. Once stale nodes outnumber the live ones, the heap is rebuilt from the live watches.
    if (this.entries.size === 0) this.heap.clear();
    else if (this.heap.size > 64 && this.heap.size > 2 * this.entries.size) this.rebuild();
  }

  /** @internal The lease of `entry` cannot be confirmed any more: its watch ends and its holder is told. */
  lose(entry: Entry, detail: string, reason: LossReason): void {
    this.finish(entry);
    entry.lease.onLost(detail, reason);
  }

  /** @internal The local deadline of `entry` passed: with an extension in flight, unconfirmed; else too late to send one. */
  lapse(entry: Entry): void {
    if (entry.flight || entry.failed) this.lose(entry, UNCONFIRMED, 'extension_unconfirmed');
    else this.lose(entry, PAST_DEADLINE, 'deadline_passed');
  }

  /** @internal Puts `entry` in the heap at its next due time. */
  schedule(entry: Entry): void {
    entry.version++;
    const at = entry.own ? entry.deadline : Math.min(entry.extendAt, entry.deadline);
    this.heap.push({ at, entry, version: entry.version });
    if (at < this.timer.at) this.timer.arm(at);
  }

  private rebuild(): void {
    this.heap.clear();
    for (const entry of this.entries) this.schedule(entry);
  }

  private tick(): void {
    const now = monotonicNow();
    const due: Entry[] = [];
    const lost: Entry[] = [];
    for (let top = this.heap.peek(); top; top = this.heap.peek()) {
      const entry = top.entry;
      if (top.version !== entry.version || entry.done) {
        this.heap.pop();
        continue;
      }
      // Extensions may go a little early so that neighbours share a batch; deadlines never do.
      const window = Math.min(20, entry.ttl / 10);
      if (entry.deadline <= now) {
        this.heap.pop();
        lost.push(entry);
      } else if (!entry.own && entry.extendAt <= now + window) {
        this.heap.pop();
        due.push(entry);
      } else {
        break;
      }
    }
    for (const entry of lost) this.lapse(entry);
    if (due.length > 0) this.extend(due, now);
    const next = this.heap.peek();
    if (next && next.at < this.timer.at) this.timer.arm(next.at);
  }

  private extend(entries: Entry[], sentAt: number): void {
    for (const entry of entries) {
      entry.own = true;
      this.depart(entry, sentAt, entry.ttl);
      this.schedule(entry);
    }
    const items = entries.map((e) => ({ key: e.lease.backendKey, token: e.lease.token, ttl: e.ttl }));
    this.extendBatch(items).then(
      (results) => entries.forEach((entry, i) => this.settle(entry, results[i], true)),
      (error: unknown) => entries.forEach((entry) => this.settle(entry, error as Error, true)),
    );
  }

  /**
   * @internal An extension of `entry` leaves for `ttl` ms. Until every extension in flight has come
   * back, the lease is trusted only until the earliest end any of them could set (a shorter ttl
   * counts at once).
   */
  depart(entry: Entry, sentAt: number, ttl: number): void {
    const deadline = localDeadline(sentAt, ttl);
    const flight = (entry.flight ??= { pending: 0, confirmed: false, deadline, sentAt, ttl });
    flight.pending++;
    if (deadline < flight.deadline) Object.assign(flight, { deadline, sentAt, ttl });
    if (deadline < entry.deadline) entry.deadline = deadline;
  }

  /** @internal An extension of `entry` came back; `own`: the watchdog's, not an `extend` call of the holder. */
  settle(entry: Entry, result: boolean | Error | undefined, own: boolean): void {
    if (entry.done) return;
    if (own) entry.own = false;
    const flight = entry.flight!;
    flight.pending--;
    if (own && result !== true) entry.lease.onExtensionFailed?.(result === false ? 'refused' : 'error');
    if (result === false) {
      this.lose(entry, REFUSED, 'extension_refused');
      return;
    }
    if (result === true) flight.confirmed = true;
    else {
      entry.failed = true;
      // The backend failed: try again soon, until the deadline decides.
      if (own) entry.extendAt = monotonicNow() + Math.max(entry.ttl / 10, 1);
    }
    if (flight.pending === 0) {
      entry.flight = undefined;
      if (flight.confirmed) {
        entry.failed = false;
        entry.deadline = flight.deadline;
        entry.extendAt = flight.sentAt + flight.ttl / 3;
        entry.lease.onConfirmed(entry.deadline);
      }
    }
    this.schedule(entry);
  }
}
