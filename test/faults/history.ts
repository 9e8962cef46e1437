/**
 * One line of a lock history. Workers write them as JSON lines on stdout; the runner adds its own
 * (faults it injected) and merges everything by time. Times are milliseconds on the machine's
 * monotonic clock (`historyNow()` in history-clock.ts), the same for every process on one machine.
 *
 * `call` numbers the lock calls of one worker (one `withLock`, `acquire` or `tryAcquire` each), so
 * that calls running at the same time in one process (a callback that escaped its `withLock`, a
 * crowd of waiters) keep their events apart. Histories without it count one call per worker at a time.
 */
export type HistoryEvent =
  /** A lock call started; `wait` is the wait it asked for (ms), when the worker knows it. */
  | { t: number; worker: string; call?: number; type: 'invoke'; key: string; wait?: number }
  /**
   * The call got the key. `mode`: how it holds it, left out for exclusive: `'shared'` (a reader),
   * or `'limit'` with `limit` (one of at most `limit` holders).
   */
  | {
      t: number;
      worker: string;
      call?: number;
      type: 'acquired';
      key: string;
      fence: string;
      ttl: number;
      mode?: 'shared' | 'limit';
      limit?: number;
    }
  | { t: number; worker: string; call?: number; type: 'timeout'; key: string }
  | { t: number; worker: string; call?: number; type: 'error'; key: string; message: string }
  /** The holder's signal fired (lease could not be confirmed). */
  | { t: number; worker: string; call?: number; type: 'lost'; key: string; fence: string }
  /** The worker read the resource, presenting its fence; `ok` false when the resource refused the fence. */
  | { t: number; worker: string; call?: number; type: 'read'; key: string; fence: string; value: number; ok: boolean }
  /** The worker wrote `value` with `fence`; `accepted` is the resource's answer. */
  | {
      t: number;
      worker: string;
      call?: number;
      type: 'write';
      key: string;
      fence: string;
      value: number;
      accepted: boolean;
      signalAborted: boolean;
    }
  /**
   * User code asked whether it still holds the lock of `fence` (`lock.signal.aborted`, or the
   * signal of `currentLock()`), synchronously, and was told `aborted`. A `false` answer is a claim
   * that the lease is held at `t`.
   */
  | { t: number; worker: string; call?: number; type: 'guard'; key: string; fence: string; aborted: boolean }
  /** The work finished and the release is about to be sent. */
  | { t: number; worker: string; call?: number; type: 'release'; key: string; fence: string }
  /**
   * How the lock call settled: `resolved` (withLock resolved, acquire returned a guard), `lost`
   * (LockLostError), `timeout`, `aborted` (the caller's signal), `error` (anything else).
   */
  | { t: number; worker: string; call?: number; type: 'settled'; key: string; outcome: SettledOutcome; fence?: string }
  /** Injected by the runner. */
  | { t: number; worker: string; type: 'fault'; fault: string; phase: 'start' | 'end' };

export type SettledOutcome = 'resolved' | 'lost' | 'timeout' | 'aborted' | 'error';

export type EventOf<T extends HistoryEvent['type']> = Extract<HistoryEvent, { type: T }>;

/** A hold of the lock by one lock call: from acquisition to its release, its lost signal or its death. */
export interface Hold {
  worker: string;
  call?: number;
  key: string;
  fence: bigint;
  /** Undefined: exclusive. */
  mode?: 'shared' | 'limit';
  limit?: number;
  start: number;
  end: number;
  ended: 'release' | 'lost' | 'killed' | 'open';
  /** When the work ended (its `release` event), or Infinity. */
  workEnd: number;
  /** How the lock call settled, and when (absent: it never settled, e.g. killed). */
  outcome?: SettledOutcome;
  settledAt?: number;
}

export interface CheckOptions {
  /**
   * Check that no holds overlap beyond what their modes allow (only meaningful when no holder was
   * paused): an exclusive hold overlaps nothing, shared holds overlap each other only, and a
   * limited key never has more than `limit` holds at once.
   */
  exclusive: boolean;
  /** Max time from a holder's SIGKILL to the next acquisition of its key, when someone waits for it. */
  livenessWithin?: number;
  /**
   * Max time a key may stay with nobody after a hold settled while others wait for it the whole
   * time: longer, and the key is stuck (held by a token nobody runs, e.g. a waiter that gave up).
   */
  stuckWithin?: number;
  /**
   * Max time from the SIGKILL of a limited holder to a moment when the key again has `limit` holds
   * at once (its place came back), for cases with more live workers than places.
   */
  placeBackWithin?: number;
  /** Max time a lock call may run past the `wait` it asked for (a call that waits unboundedly). */
  callWithin?: number;
  /** The resource's starting value. */
  initialValue?: number;
}

/** A `withLock` that resolved although a grant with a higher fence began before its work ended. */
export interface ResolvedUnheld {
  hold: Hold;
  /** The first later grant of the key that began before the work ended. */
  by: { worker: string; call?: number; fence: bigint; at: number };
}

export interface CheckReport {
  events: number;
  holds: number;
  acceptedWrites: number;
  rejectedWrites: number;
  overlaps: Array<{ a: Hold; b: Hold }>;
  /** Accepted writes whose value is not the previous accepted value + 1 (a lost or repeated update). */
  lostWrites: Array<EventOf<'write'>>;
  /** Accepted writes whose fence is not greater than the previous accepted one. */
  outOfOrderWrites: Array<EventOf<'write'>>;
  /** Kills of a holder after which nobody got the key in time although someone was waiting. */
  livenessViolations: Array<{ killedAt: number; worker: string; nextAcquiredAt: number | undefined }>;
  /** Paused holders: whether their signal fired, and writes they got accepted with a stale fence. */
  pausedHolders: Array<{ worker: string; fence: bigint; signalFired: boolean; staleAcceptedWrites: number }>;
  /** withLock resolved although its lease was not held throughout (a higher grant began during the work). */
  resolvedUnheld: ResolvedUnheld[];
  /** User code was told "held" (signal not aborted) after a grant with a higher fence had begun. */
  staleGuards: Array<EventOf<'guard'> & { by: { worker: string; fence: bigint; at: number } }>;
  /** Keys left with nobody for longer than `stuckWithin` after a hold settled, while others waited throughout. */
  stuckKeys: Array<{ key: string; freedAt: number; nextAcquiredAt: number | undefined; waiting: number }>;
  /** Killed limited holders whose place did not come back within `placeBackWithin`. */
  lostPlaces: Array<{ killedAt: number; worker: string; limit: number }>;
  /** Lock calls that ran longer than their wait + `callWithin`. */
  overdueCalls: Array<{ worker: string; call?: number; key: string; wait: number; ran: number; settled: boolean }>;
  /** The longest time between two acquisitions of a key, ms: how long a fault kept the lock unavailable. */
  longestAcquisitionGap: number;
  /** Events that show the fault reached the workers: lost signals, backend errors, timeouts. */
  disturbances: { lost: number; errors: number; timeouts: number };
  /** How the lock calls settled. */
  outcomes: Record<SettledOutcome, number>;
  /**
   * Total violations: overlaps (when checked), lost, out-of-order, liveness, stale writes, silent
   * signals, withLock resolved although not held, stale guards, stuck keys, overdue calls.
   */
  violations: number;
}

/** The identity of the lock call an event belongs to. */
/** The identity of one lock call on one key (a multi-key call is one call on each of its keys). */
const callOf = (event: { worker: string; call?: number; key: string }): string =>
  `${event.worker}/${event.call ?? ''}/${event.key}`;

/** Builds the holds of a history (every acquisition, ended by release, lost signal or kill). */
export function holdsOf(events: HistoryEvent[]): Hold[] {
  const holds: Hold[] = [];
  const open = new Map<string, Hold>();
  /** The last hold of each call, open or not: its work end and outcome may come after it ended. */
  const last = new Map<string, Hold>();
  for (const event of events) {
    if (event.type === 'acquired') {
      const hold: Hold = {
        worker: event.worker,
        call: event.call,
        key: event.key,
        fence: BigInt(event.fence),
        ...(event.mode ? { mode: event.mode } : {}),
        ...(event.limit !== undefined ? { limit: event.limit } : {}),
        start: event.t,
        end: Infinity,
        ended: 'open',
        workEnd: Infinity,
      };
      holds.push(hold);
      open.set(callOf(event), hold);
      last.set(callOf(event), hold);
    } else if (event.type === 'release' || event.type === 'lost') {
      const hold = open.get(callOf(event));
      if (hold && hold.fence === BigInt(event.fence)) {
        hold.end = event.t;
        hold.ended = event.type;
        open.delete(callOf(event));
      }
      const mine = last.get(callOf(event));
      if (event.type === 'release' && mine && mine.fence === BigInt(event.fence) && mine.workEnd === Infinity)
        mine.workEnd = event.t;
    } else if (event.type === 'settled') {
      const mine = last.get(callOf(event));
      if (mine && mine.outcome === undefined && (event.fence === undefined || mine.fence === BigInt(event.fence))) {
        mine.outcome = event.outcome;
        mine.settledAt = event.t;
      }
    } else if (event.type === 'fault' && event.fault === 'SIGKILL' && event.phase === 'start') {
      for (const [id, hold] of open) {
        if (hold.worker !== event.worker) continue;
        hold.end = event.t;
        hold.ended = 'killed';
        open.delete(id);
      }
    }
  }
  return holds;
}

/**
 * The first grant of `key` with a fence above `fence` that began before `before` and could not have
 * held together with `mine` (any grant, for an exclusive hold; an exclusive one, for a shared hold;
 * none, for a limited hold, whose later grants take other places), if any.
 */
function higherGrantBefore(
  holds: Hold[],
  key: string,
  fence: bigint,
  before: number,
  mine: Hold | undefined,
): Hold | undefined {
  if (mine?.mode === 'limit') return undefined;
  let first: Hold | undefined;
  for (const other of holds) {
    if (mine?.mode === 'shared' && other.mode === 'shared') continue;
    if (other.key === key && other.fence > fence && other.start < before && (!first || other.start < first.start))
      first = other;
  }
  return first;
}

/** The most of `holds` on at one moment between `from` and `to` (a hold counts from its start to its end). */
function mostAtOnce(holds: Hold[], from: number, to: number): number {
  const points: Array<{ at: number; delta: number }> = [];
  for (const hold of holds) {
    if (hold.end <= from || hold.start >= to) continue;
    points.push({ at: Math.max(hold.start, from), delta: 1 }, { at: Math.min(hold.end, to), delta: -1 });
  }
  points.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let on = 0;
  let most = 0;
  for (const point of points) most = Math.max(most, (on += point.delta));
  return most;
}

/** Whether two holds of one key may overlap: shared with shared, limited with limited (counted apart). */
function compatible(a: Hold, b: Hold): boolean {
  return (a.mode === 'shared' && b.mode === 'shared') || (a.mode === 'limit' && b.mode === 'limit');
}

/**
 * The overlaps of one key's holds that their modes forbid: a hold overlapping one it may not hold
 * with, and a limited hold that began while `limit` limited holds were already on.
 */
function modeOverlaps(list: Hold[]): Array<{ a: Hold; b: Hold }> {
  const found: Array<{ a: Hold; b: Hold }> = [];
  let on: Hold[] = [];
  for (const hold of [...list].sort((a, b) => a.start - b.start)) {
    on = on.filter((earlier) => earlier.end > hold.start);
    for (const earlier of on) if (!compatible(earlier, hold)) found.push({ a: earlier, b: hold });
    if (hold.mode === 'limit') {
      const places = on.filter((earlier) => earlier.mode === 'limit');
      if (places.length >= (hold.limit ?? 1)) found.push({ a: places[places.length - 1], b: hold });
    }
    on.push(hold);
  }
  return found;
}

/** A lock call's wait: from its invoke to its acquisition or its settling (Infinity: still waiting at the end). */
interface Pending {
  id: string;
  worker: string;
  call?: number;
  key: string;
  wait?: number;
  from: number;
  to: number;
}

/** Every lock call's wait, in invoke order. */
function pendingCalls(events: HistoryEvent[]): Pending[] {
  const started = new Map<string, Pending>();
  const done: Pending[] = [];
  for (const event of events) {
    if (event.type === 'invoke') {
      const pending: Pending = {
        id: callOf(event),
        worker: event.worker,
        call: event.call,
        key: event.key,
        wait: event.wait,
        from: event.t,
        to: Infinity,
      };
      started.set(pending.id, pending);
      done.push(pending);
    } else if (
      event.type === 'acquired' ||
      event.type === 'settled' ||
      event.type === 'timeout' ||
      event.type === 'error'
    ) {
      const pending = started.get(callOf(event));
      if (pending) pending.to = event.t;
      started.delete(callOf(event));
    } else if (event.type === 'fault' && event.fault === 'SIGKILL' && event.phase === 'start') {
      for (const [id, pending] of started) {
        if (pending.worker !== event.worker) continue;
        pending.to = event.t;
        started.delete(id);
      }
    }
  }
  return done;
}

/**
 * Whether someone waited for the key from `from` to `to` without a break: the waits of all calls,
 * merged where one starts within `slack` ms of the end of another (a worker's pause between two
 * calls), cover the whole span.
 */
function waitedThroughout(waits: Pending[], from: number, to: number, slack: number): boolean {
  let start = -Infinity;
  let end = -Infinity;
  for (const wait of [...waits].sort((a, b) => a.from - b.from)) {
    if (wait.from > end + slack) {
      if (start <= from && end >= to) return true;
      start = wait.from;
      end = wait.to;
    } else {
      end = Math.max(end, wait.to);
    }
  }
  return start <= from && end >= to;
}

/** Checks a merged history (any order; it is sorted by time here). */
export function checkHistory(history: HistoryEvent[], options: CheckOptions): CheckReport {
  const events = [...history].sort((a, b) => a.t - b.t);
  const holds = holdsOf(events);

  const overlaps: CheckReport['overlaps'] = [];
  if (options.exclusive) {
    const byKey = new Map<string, Hold[]>();
    for (const hold of holds) byKey.set(hold.key, [...(byKey.get(hold.key) ?? []), hold]);
    for (const list of byKey.values()) overlaps.push(...modeOverlaps(list));
  }

  // withLock may resolve only when the lease was confirmed for the whole of the work. A later grant
  // (higher fence) that began before the work ended means it was not: the backend had given the
  // key to someone else. Grant times are when the other worker saw its grant, so later than the
  // grant itself: the check can only miss a violation, never invent one.
  const resolvedUnheld: ResolvedUnheld[] = [];
  for (const hold of holds) {
    if (hold.outcome !== 'resolved' || hold.workEnd === Infinity) continue;
    const by = higherGrantBefore(holds, hold.key, hold.fence, hold.workEnd, hold);
    if (by) resolvedUnheld.push({ hold, by: { worker: by.worker, call: by.call, fence: by.fence, at: by.start } });
  }

  const staleGuards: CheckReport['staleGuards'] = [];
  for (const guard of events) {
    if (guard.type !== 'guard' || guard.aborted) continue;
    const mine = holds.find((h) => h.key === guard.key && h.fence === BigInt(guard.fence));
    const by = higherGrantBefore(holds, guard.key, BigInt(guard.fence), guard.t, mine);
    if (by) staleGuards.push({ ...guard, by: { worker: by.worker, fence: by.fence, at: by.start } });
  }

  const writes = events.filter((e): e is EventOf<'write'> => e.type === 'write');
  const accepted = writes.filter((w) => w.accepted);
  const lostWrites: CheckReport['lostWrites'] = [];
  const outOfOrderWrites: CheckReport['outOfOrderWrites'] = [];
  const byResource = new Map<string, Array<EventOf<'write'>>>();
  for (const write of accepted) byResource.set(write.key, [...(byResource.get(write.key) ?? []), write]);
  for (const list of byResource.values()) {
    // The resource applies writes in fence order; time order is what the workers saw.
    let previousValue = options.initialValue ?? 0;
    let previousFence = -1n;
    for (const write of list) {
      if (BigInt(write.fence) <= previousFence) outOfOrderWrites.push(write);
      if (write.value !== previousValue + 1) lostWrites.push(write);
      previousValue = write.value;
      previousFence = BigInt(write.fence);
    }
  }

  const pending = pendingCalls(events);
  const stuckKeys: CheckReport['stuckKeys'] = [];
  if (options.stuckWithin !== undefined) {
    const seen = new Set<string>();
    for (const hold of holds) {
      if (hold.settledAt === undefined) continue;
      const freedAt = hold.settledAt;
      const key = hold.key;
      if (holds.some((h) => h !== hold && h.key === key && h.start <= freedAt && h.end > freedAt)) continue;
      const next = holds
        .filter((h) => h.key === key && h.start > freedAt)
        .reduce<number | undefined>((n, h) => (n === undefined || h.start < n ? h.start : n), undefined);
      if (next !== undefined && next - freedAt <= options.stuckWithin) continue;
      const waits = pending.filter((p) => p.key === key);
      if (!waitedThroughout(waits, freedAt, freedAt + options.stuckWithin, 250)) continue;
      const id = `${key}/${next}`;
      if (seen.has(id)) continue;
      seen.add(id);
      const waiting = waits.filter((p) => p.from <= freedAt && p.to > freedAt).length;
      stuckKeys.push({ key, freedAt, nextAcquiredAt: next, waiting });
    }
  }

  const overdueCalls: CheckReport['overdueCalls'] = [];
  if (options.callWithin !== undefined) {
    const lastT = events.length ? events[events.length - 1].t : 0;
    for (const p of pending) {
      if (p.wait === undefined) continue;
      const ran = (p.to === Infinity ? lastT : p.to) - p.from;
      if (ran > p.wait + options.callWithin) {
        overdueCalls.push({
          worker: p.worker,
          call: p.call,
          key: p.key,
          wait: p.wait,
          ran,
          settled: p.to !== Infinity,
        });
      }
    }
  }

  const livenessViolations: CheckReport['livenessViolations'] = [];
  if (options.livenessWithin !== undefined) {
    for (const kill of events.filter((e) => e.type === 'fault' && e.fault === 'SIGKILL' && e.phase === 'start')) {
      const victim = holds.find((h) => h.worker === kill.worker && h.ended === 'killed' && h.end === kill.t);
      if (!victim) continue;
      const someoneWaiting = events.some(
        (e) =>
          e.type === 'invoke' &&
          e.key === victim.key &&
          e.worker !== kill.worker &&
          e.t <= kill.t + options.livenessWithin!,
      );
      const next = holds.find((h) => h.key === victim.key && h.start > kill.t);
      if (someoneWaiting && (!next || next.start - kill.t > options.livenessWithin)) {
        livenessViolations.push({ killedAt: kill.t, worker: kill.worker, nextAcquiredAt: next?.start });
      }
    }
  }

  const lostPlaces: CheckReport['lostPlaces'] = [];
  if (options.placeBackWithin !== undefined) {
    for (const kill of events.filter((e) => e.type === 'fault' && e.fault === 'SIGKILL' && e.phase === 'start')) {
      const victim = holds.find(
        (h) => h.worker === kill.worker && h.ended === 'killed' && h.end === kill.t && h.mode === 'limit',
      );
      if (!victim) continue;
      const limit = victim.limit ?? 1;
      const until = kill.t + options.placeBackWithin;
      const full = mostAtOnce(
        holds.filter((h) => h.key === victim.key && h.worker !== kill.worker),
        kill.t,
        until,
      );
      if (full < limit) lostPlaces.push({ killedAt: kill.t, worker: kill.worker, limit });
    }
  }

  const pausedHolders: CheckReport['pausedHolders'] = [];
  for (const pause of events.filter((e) => e.type === 'fault' && e.fault === 'SIGSTOP' && e.phase === 'start')) {
    const hold = holds.find((h) => h.worker === pause.worker && h.start <= pause.t && pause.t <= h.end);
    if (!hold) continue;
    const signalFired = events.some(
      (e) => e.type === 'lost' && e.worker === pause.worker && BigInt(e.fence) === hold.fence,
    );
    const laterFences = holds.filter((h) => h.key === hold.key && h.fence > hold.fence).map((h) => h.start);
    const firstLaterHold = laterFences.length ? Math.min(...laterFences) : Infinity;
    const staleAcceptedWrites = accepted.filter(
      (w) => w.worker === pause.worker && BigInt(w.fence) === hold.fence && w.t > firstLaterHold,
    ).length;
    pausedHolders.push({ worker: pause.worker, fence: hold.fence, signalFired, staleAcceptedWrites });
  }

  let longestAcquisitionGap = 0;
  const starts = holds.map((h) => h.start).sort((a, b) => a - b);
  for (let i = 1; i < starts.length; i++)
    longestAcquisitionGap = Math.max(longestAcquisitionGap, starts[i] - starts[i - 1]);
  const count = (type: HistoryEvent['type']): number => events.filter((e) => e.type === type).length;

  const violations =
    overlaps.length +
    lostWrites.length +
    outOfOrderWrites.length +
    livenessViolations.length +
    pausedHolders.reduce((n, p) => n + p.staleAcceptedWrites + (p.signalFired ? 0 : 1), 0) +
    resolvedUnheld.length +
    staleGuards.length +
    stuckKeys.length +
    lostPlaces.length +
    overdueCalls.length;
  const outcomes: CheckReport['outcomes'] = { resolved: 0, lost: 0, timeout: 0, aborted: 0, error: 0 };
  for (const event of events) if (event.type === 'settled') outcomes[event.outcome]++;

  return {
    events: events.length,
    holds: holds.length,
    acceptedWrites: accepted.length,
    rejectedWrites: writes.length - accepted.length,
    overlaps,
    lostWrites,
    outOfOrderWrites,
    livenessViolations,
    pausedHolders,
    resolvedUnheld,
    staleGuards,
    stuckKeys,
    lostPlaces,
    overdueCalls,
    longestAcquisitionGap,
    disturbances: { lost: count('lost'), errors: count('error'), timeouts: count('timeout') },
    outcomes,
    violations,
  };
}
