/**
 * One line of a lock history. Workers write them as JSON lines on stdout; the runner adds its own
 * (faults it injected) and merges everything by time. Times are milliseconds on the machine's
 * monotonic clock (`historyNow()` in history-clock.ts), the same for every process on one machine.
 */
export type HistoryEvent =
  | { t: number; worker: string; type: 'invoke'; key: string }
  | { t: number; worker: string; type: 'acquired'; key: string; fence: string; ttl: number }
  | { t: number; worker: string; type: 'timeout'; key: string }
  | { t: number; worker: string; type: 'error'; key: string; message: string }
  /** The holder's signal fired (lease could not be confirmed). */
  | { t: number; worker: string; type: 'lost'; key: string; fence: string }
  /** The worker read the resource, presenting its fence; `ok` false when the resource refused the fence. */
  | { t: number; worker: string; type: 'read'; key: string; fence: string; value: number; ok: boolean }
  /** The worker wrote `value` with `fence`; `accepted` is the resource's answer. */
  | { t: number; worker: string; type: 'write'; key: string; fence: string; value: number; accepted: boolean; signalAborted: boolean }
  /** The work finished and the release is about to be sent. */
  | { t: number; worker: string; type: 'release'; key: string; fence: string }
  /** Injected by the runner. */
  | { t: number; worker: string; type: 'fault'; fault: string; phase: 'start' | 'end' };

export type EventOf<T extends HistoryEvent['type']> = Extract<HistoryEvent, { type: T }>;

/** A hold of the lock by one worker: from acquisition to its release, its lost signal or its death. */
export interface Hold {
  worker: string;
  key: string;
  fence: bigint;
  start: number;
  end: number;
  ended: 'release' | 'lost' | 'killed' | 'open';
}

export interface CheckOptions {
  /** Check that no two holds overlap (only meaningful when no holder was paused). */
  exclusive: boolean;
  /** Max time from a holder's SIGKILL to the next acquisition of its key, when someone waits for it. */
  livenessWithin?: number;
  /** The resource's starting value. */
  initialValue?: number;
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
  /** The longest time between two acquisitions of a key, ms: how long a fault kept the lock unavailable. */
  longestAcquisitionGap: number;
  /** Events that show the fault reached the workers: lost signals, backend errors, timeouts. */
  disturbances: { lost: number; errors: number; timeouts: number };
  /** Total violations: overlaps (when checked), lost, out-of-order, liveness, stale writes, silent signals. */
  violations: number;
}

/** Builds the holds of a history (every acquisition, ended by release, lost signal or kill). */
export function holdsOf(events: HistoryEvent[]): Hold[] {
  const holds: Hold[] = [];
  const open = new Map<string, Hold>();
  for (const event of events) {
    if (event.type === 'acquired') {
      const hold: Hold = { worker: event.worker, key: event.key, fence: BigInt(event.fence), start: event.t, end: Infinity, ended: 'open' };
      holds.push(hold);
      open.set(event.worker, hold);
    } else if (event.type === 'release' || event.type === 'lost') {
      const hold = open.get(event.worker);
      if (hold && hold.fence === BigInt(event.fence)) {
        hold.end = event.t;
        hold.ended = event.type;
        open.delete(event.worker);
      }
    } else if (event.type === 'fault' && event.fault === 'SIGKILL' && event.phase === 'start') {
      const hold = open.get(event.worker);
      if (hold) {
        hold.end = event.t;
        hold.ended = 'killed';
        open.delete(event.worker);
      }
    }
  }
  return holds;
}

/** Checks a merged history (any order; it is sorted by time here). */
export function checkHistory(history: HistoryEvent[], options: CheckOptions): CheckReport {
  const events = [...history].sort((a, b) => a.t - b.t);
  const holds = holdsOf(events);

  const overlaps: CheckReport['overlaps'] = [];
  if (options.exclusive) {
    const byKey = new Map<string, Hold[]>();
    for (const hold of holds) byKey.set(hold.key, [...(byKey.get(hold.key) ?? []), hold]);
    for (const list of byKey.values()) {
      list.sort((a, b) => a.start - b.start);
      let latest: Hold | undefined;
      for (const hold of list) {
        if (latest && hold.start < latest.end) overlaps.push({ a: latest, b: hold });
        if (!latest || hold.end > latest.end) latest = hold;
      }
    }
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

  const livenessViolations: CheckReport['livenessViolations'] = [];
  if (options.livenessWithin !== undefined) {
    for (const kill of events.filter((e) => e.type === 'fault' && e.fault === 'SIGKILL' && e.phase === 'start')) {
      const victim = holds.find((h) => h.worker === kill.worker && h.ended === 'killed' && h.end === kill.t);
      if (!victim) continue;
      const someoneWaiting = events.some(
        (e) => e.type === 'invoke' && e.key === victim.key && e.worker !== kill.worker && e.t <= kill.t + options.livenessWithin!,
      );
      const next = holds.find((h) => h.key === victim.key && h.start > kill.t);
      if (someoneWaiting && (!next || next.start - kill.t > options.livenessWithin)) {
        livenessViolations.push({ killedAt: kill.t, worker: kill.worker, nextAcquiredAt: next?.start });
      }
    }
  }

  const pausedHolders: CheckReport['pausedHolders'] = [];
  for (const pause of events.filter((e) => e.type === 'fault' && e.fault === 'SIGSTOP' && e.phase === 'start')) {
    const hold = holds.find((h) => h.worker === pause.worker && h.start <= pause.t && pause.t <= h.end);
    if (!hold) continue;
    const signalFired = events.some((e) => e.type === 'lost' && e.worker === pause.worker && BigInt(e.fence) === hold.fence);
    const laterFences = holds.filter((h) => h.key === hold.key && h.fence > hold.fence).map((h) => h.start);
    const firstLaterHold = laterFences.length ? Math.min(...laterFences) : Infinity;
    const staleAcceptedWrites = accepted.filter(
      (w) => w.worker === pause.worker && BigInt(w.fence) === hold.fence && w.t > firstLaterHold,
    ).length;
    pausedHolders.push({ worker: pause.worker, fence: hold.fence, signalFired, staleAcceptedWrites });
  }

  let longestAcquisitionGap = 0;
  const starts = holds.map((h) => h.start).sort((a, b) => a - b);
  for (let i = 1; i < starts.length; i++) longestAcquisitionGap = Math.max(longestAcquisitionGap, starts[i] - starts[i - 1]);
  const count = (type: HistoryEvent['type']): number => events.filter((e) => e.type === type).length;

  const violations =
    overlaps.length +
    lostWrites.length +
    outOfOrderWrites.length +
    livenessViolations.length +
    pausedHolders.reduce((n, p) => n + p.staleAcceptedWrites + (p.signalFired ? 0 : 1), 0);

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
    longestAcquisitionGap,
    disturbances: { lost: count('lost'), errors: count('error'), timeouts: count('timeout') },
    violations,
  };
}
