import { checkHistory, type HistoryEvent, type SettledOutcome } from '../faults/history';

/** Small builders for synthetic histories: the checker must find what is planted in them. */
const acquired = (t: number, worker: string, fence: number): HistoryEvent => ({
  t,
  worker,
  type: 'acquired',
  key: 'k',
  fence: String(fence),
  ttl: 100,
});
const release = (t: number, worker: string, fence: number): HistoryEvent => ({
  t,
  worker,
  type: 'release',
  key: 'k',
  fence: String(fence),
});
const lost = (t: number, worker: string, fence: number): HistoryEvent => ({
  t,
  worker,
  type: 'lost',
  key: 'k',
  fence: String(fence),
});
const write = (t: number, worker: string, fence: number, value: number, accepted = true): HistoryEvent => ({
  t,
  worker,
  type: 'write',
  key: 'k',
  fence: String(fence),
  value,
  accepted,
  signalAborted: false,
});
const invoke = (t: number, worker: string): HistoryEvent => ({ t, worker, type: 'invoke', key: 'k' });
const fault = (t: number, worker: string, name: string, phase: 'start' | 'end' = 'start'): HistoryEvent => ({
  t,
  worker,
  type: 'fault',
  fault: name,
  phase,
});
const settled = (t: number, worker: string, outcome: SettledOutcome, fence?: number, call?: number): HistoryEvent => ({
  t,
  worker,
  call,
  type: 'settled',
  key: 'k',
  outcome,
  fence: fence === undefined ? undefined : String(fence),
});
/** One complete lock call of `worker` (call number `call`): invoke, acquired, release at workEnd, settled. */
const hold = (
  worker: string,
  call: number,
  fence: number,
  from: number,
  acquiredAt: number,
  workEnd: number,
  outcome: SettledOutcome,
  settledAt = workEnd + 1,
): HistoryEvent[] => [
  { t: from, worker, call, type: 'invoke', key: 'k', wait: 10_000 },
  { t: acquiredAt, worker, call, type: 'acquired', key: 'k', fence: String(fence), ttl: 100 },
  { t: workEnd, worker, call, type: 'release', key: 'k', fence: String(fence) },
  settled(settledAt, worker, outcome, fence, call),
];
const guard = (t: number, worker: string, fence: number, aborted: boolean): HistoryEvent => ({
  t,
  worker,
  type: 'guard',
  key: 'k',
  fence: String(fence),
  aborted,
});

describe('history checker', () => {
  const clean: HistoryEvent[] = [
    invoke(0, 'a'),
    acquired(1, 'a', 1),
    write(2, 'a', 1, 1),
    release(3, 'a', 1),
    invoke(1, 'b'),
    acquired(4, 'b', 2),
    write(5, 'b', 2, 2),
    release(6, 'b', 2),
  ];

  it('passes a clean history', () => {
    const report = checkHistory(clean, { exclusive: true });
    expect(report).toMatchObject({ holds: 2, acceptedWrites: 2, violations: 0 });
  });

  it('finds overlapping holds', () => {
    const report = checkHistory([acquired(1, 'a', 1), acquired(2, 'b', 2), release(3, 'a', 1), release(4, 'b', 2)], {
      exclusive: true,
    });
    expect(report.overlaps).toHaveLength(1);
    expect(report.violations).toBe(1);
  });

  it('ends a hold at its lost signal', () => {
    const report = checkHistory(
      [acquired(1, 'a', 1), lost(2, 'a', 1), acquired(3, 'b', 2), release(5, 'a', 1), release(6, 'b', 2)],
      { exclusive: true },
    );
    expect(report.overlaps).toHaveLength(0);
  });

  it('finds a lost update and an out-of-order write', () => {
    const report = checkHistory(
      [acquired(1, 'a', 1), write(2, 'a', 1, 1), acquired(3, 'b', 2), write(4, 'b', 2, 2), write(5, 'a', 1, 2)],
      { exclusive: false },
    );
    expect(report.lostWrites).toHaveLength(1);
    expect(report.outOfOrderWrites).toHaveLength(1);
  });

  it('finds a key left unavailable after its holder was killed', () => {
    const history = [
      invoke(0, 'a'),
      acquired(1, 'a', 1),
      invoke(2, 'b'),
      fault(10, 'a', 'SIGKILL'),
      acquired(2_000, 'b', 2),
    ];
    expect(checkHistory(history, { exclusive: true, livenessWithin: 1_100 }).livenessViolations).toHaveLength(1);
    expect(checkHistory(history, { exclusive: true, livenessWithin: 2_100 }).livenessViolations).toHaveLength(0);
  });

  it('finds a paused holder that wrote with a stale fence or whose signal never fired', () => {
    const history = [
      acquired(1, 'a', 1),
      fault(2, 'a', 'SIGSTOP'),
      acquired(200, 'b', 2),
      write(201, 'b', 2, 1),
      release(202, 'b', 2),
      fault(300, 'a', 'SIGSTOP', 'end'),
      write(301, 'a', 1, 1, true),
    ];
    const report = checkHistory(history, { exclusive: false });
    expect(report.pausedHolders).toEqual([{ worker: 'a', fence: 1n, signalFired: false, staleAcceptedWrites: 1 }]);
    // The stale write, the silent signal, and at the resource the lost update and the fence going back.
    expect(report.violations).toBe(4);
  });

  describe('withLock resolved although its lease was not held throughout', () => {
    it('counts a hold that resolved while a grant with a higher fence began before its work ended', () => {
      // a's lease vanished (flushed, evicted, expired during a CPU block); b got the key at 50 while
      // a still worked until 80, and a's withLock resolved.
      const history = [...hold('a', 1, 1, 0, 1, 80, 'resolved'), ...hold('b', 1, 2, 10, 50, 60, 'resolved')];
      const report = checkHistory(history, { exclusive: false });
      expect(report.resolvedUnheld).toHaveLength(1);
      expect(report.resolvedUnheld[0]).toMatchObject({
        hold: { worker: 'a', fence: 1n, workEnd: 80 },
        by: { worker: 'b', fence: 2n, at: 50 },
      });
      expect(report.violations).toBe(1);
    });

    it('counts a stale reentrant call: the old fence, in the same worker, after another holder got the key', () => {
      // Call 2 escaped call 1's withLock and ran "reentrantly" with fence 1 while b held fence 2.
      const history = [
        ...hold('a', 1, 1, 0, 1, 10, 'resolved'),
        ...hold('b', 1, 2, 5, 12, 40, 'resolved'),
        ...hold('a', 2, 1, 20, 20, 25, 'resolved'),
      ];
      const report = checkHistory(history, { exclusive: true });
      expect(report.resolvedUnheld.map((r) => [r.hold.worker, r.hold.call])).toEqual([['a', 2]]);
      // The two calls of worker a are told apart: call 1 ended at 10, before b.
      expect(report.overlaps).toHaveLength(1);
    });

    it('does not count a hold that rejected with LockLostError, nor one whose successor began after its work ended', () => {
      const lostOne = [...hold('a', 1, 1, 0, 1, 80, 'lost'), ...hold('b', 1, 2, 10, 50, 90, 'resolved')];
      expect(checkHistory(lostOne, { exclusive: false }).resolvedUnheld).toHaveLength(0);
      // b began after a's work ended (while a's release was in flight): a held its lease throughout.
      const handOff = [...hold('a', 1, 1, 0, 1, 80, 'resolved', 95), ...hold('b', 1, 2, 10, 85, 120, 'resolved')];
      expect(checkHistory(handOff, { exclusive: true })).toMatchObject({ resolvedUnheld: [], violations: 0 });
      // A nested reentrant call carries the same fence: not a later grant.
      const nested = [...hold('a', 1, 1, 0, 1, 80, 'resolved'), ...hold('a', 2, 1, 20, 20, 30, 'resolved')];
      expect(checkHistory(nested, { exclusive: false }).resolvedUnheld).toHaveLength(0);
      // A history without settled events (older workers) has no outcome to judge.
      expect(checkHistory(clean, { exclusive: true }).resolvedUnheld).toHaveLength(0);
    });
  });

  it('counts a "held" answer given after a grant with a higher fence began, and not one given before', () => {
    const history = [
      ...hold('a', 1, 1, 0, 1, 80, 'resolved'),
      ...hold('b', 1, 2, 10, 50, 90, 'resolved'),
      guard(40, 'a', 1, false),
      guard(60, 'a', 1, false),
      guard(70, 'a', 1, true),
    ];
    const report = checkHistory(history, { exclusive: false });
    expect(report.staleGuards.map((g) => g.t)).toEqual([60]);
  });

  describe('stuck keys', () => {
    it('counts a key nobody got for longer than stuckWithin after a release while another call waited throughout', () => {
      // b waits from 5; a settles at 11; the key went to a dead waiter: b only gets it at 1,500.
      const history = [...hold('a', 1, 1, 0, 1, 10, 'resolved'), ...hold('b', 1, 3, 5, 1_500, 1_510, 'resolved')];
      expect(checkHistory(history, { exclusive: true, stuckWithin: 500 }).stuckKeys).toEqual([
        { key: 'k', freedAt: 11, nextAcquiredAt: 1_500, waiting: 1 },
      ]);
      expect(checkHistory(history, { exclusive: true, stuckWithin: 2_000 }).stuckKeys).toHaveLength(0);
      expect(checkHistory(history, { exclusive: true }).stuckKeys).toHaveLength(0);
    });

    it('does not count a gap nobody waited through, or one bridged by calls that follow each other closely', () => {
      // b timed out at 100: nobody waited after it.
      const gaveUp = [
        ...hold('a', 1, 1, 0, 1, 10, 'resolved'),
        { t: 5, worker: 'b', call: 1, type: 'invoke', key: 'k', wait: 95 } as HistoryEvent,
        settled(100, 'b', 'timeout', undefined, 1),
      ];
      expect(checkHistory(gaveUp, { exclusive: true, stuckWithin: 500 }).stuckKeys).toHaveLength(0);
      // c's calls fail one after another (errors, 50 ms apart) for 2 s: still waiting throughout.
      const retries: HistoryEvent[] = [...hold('a', 1, 1, 0, 1, 10, 'resolved')];
      for (let i = 0; i < 20; i++) {
        retries.push(
          { t: 5 + i * 100, worker: 'c', call: i, type: 'invoke', key: 'k', wait: 10_000 },
          settled(5 + i * 100 + 50, 'c', 'error', undefined, i),
        );
      }
      expect(checkHistory(retries, { exclusive: true, stuckWithin: 500 }).stuckKeys).toHaveLength(1);
      // A key held by someone else meanwhile is not stuck.
      const held = [
        ...hold('a', 1, 1, 0, 1, 10, 'lost'),
        ...hold('b', 1, 2, 2, 5, 1_400, 'resolved'),
        ...hold('c', 1, 3, 3, 1_420, 1_430, 'resolved'),
      ];
      expect(checkHistory(held, { exclusive: false, stuckWithin: 500 }).stuckKeys).toHaveLength(0);
    });
  });

  it('counts lock calls that ran past their wait by more than callWithin, settled or still pending', () => {
    const history: HistoryEvent[] = [
      { t: 0, worker: 'a', call: 1, type: 'invoke', key: 'k', wait: 200 },
      settled(3_000, 'a', 'timeout', undefined, 1),
      { t: 0, worker: 'b', call: 1, type: 'invoke', key: 'k', wait: 200 },
      settled(900, 'b', 'error', undefined, 1),
      { t: 100, worker: 'c', call: 1, type: 'invoke', key: 'k', wait: 0 },
      invoke(4_000, 'd'),
    ];
    const report = checkHistory(history, { exclusive: true, callWithin: 1_000 });
    expect(report.overdueCalls.map((c) => [c.worker, c.settled])).toEqual([
      ['a', true],
      ['c', false],
    ]);
    expect(report.violations).toBe(2);
  });

  describe('shared and limited holds', () => {
    /** A complete call that holds `k` in `mode` from `at` to `until`. */
    const modal = (
      worker: string,
      fence: number,
      at: number,
      until: number,
      mode?: 'shared' | 'limit',
      limit?: number,
      outcome: SettledOutcome = 'resolved',
    ): HistoryEvent[] => [
      { t: at - 1, worker, call: 1, type: 'invoke', key: 'k', wait: 10_000 },
      {
        t: at,
        worker,
        call: 1,
        type: 'acquired',
        key: 'k',
        fence: String(fence),
        ttl: 100,
        ...(mode ? { mode } : {}),
        ...(limit !== undefined ? { limit } : {}),
      },
      { t: until, worker, call: 1, type: 'release', key: 'k', fence: String(fence) },
      settled(until + 1, worker, outcome, fence, 1),
    ];

    it('lets readers overlap each other, and counts a writer overlapping a reader or a writer', () => {
      const readers = [...modal('r1', 1, 10, 50, 'shared'), ...modal('r2', 2, 20, 60, 'shared')];
      expect(checkHistory(readers, { exclusive: true })).toMatchObject({
        overlaps: [],
        resolvedUnheld: [],
        violations: 0,
      });
      const writerInside = [...readers, ...modal('w', 3, 40, 70)];
      const report = checkHistory(writerInside, { exclusive: true });
      expect(report.overlaps.map(({ a, b }) => [a.worker, b.worker])).toEqual([
        ['r1', 'w'],
        ['r2', 'w'],
      ]);
      // The readers resolved although a writer got the key during their work.
      expect(report.resolvedUnheld.map((r) => r.hold.worker)).toEqual(['r1', 'r2']);
      const readerInsideWriter = [...modal('w', 1, 10, 50), ...modal('r', 2, 20, 30, 'shared')];
      expect(checkHistory(readerInsideWriter, { exclusive: true }).overlaps).toHaveLength(1);
    });

    it('lets a limited key have up to its limit of holds at once, and counts the one beyond', () => {
      const two = [...modal('a', 1, 10, 50, 'limit', 2), ...modal('b', 2, 20, 60, 'limit', 2)];
      expect(checkHistory(two, { exclusive: true })).toMatchObject({ overlaps: [], resolvedUnheld: [], violations: 0 });
      // The third begins while both are on: one beyond the limit.
      const three = [...two, ...modal('c', 3, 30, 40, 'limit', 2)];
      expect(checkHistory(three, { exclusive: true }).overlaps.map(({ b }) => b.worker)).toEqual(['c']);
      // Once one has ended, a third is within the limit.
      const handedOn = [...two, ...modal('c', 3, 55, 70, 'limit', 2)];
      expect(checkHistory(handedOn, { exclusive: true }).violations).toBe(0);
      // An exclusive hold on a limited key overlaps it.
      const mixed = [...modal('a', 1, 10, 50, 'limit', 2), ...modal('w', 2, 20, 30)];
      expect(checkHistory(mixed, { exclusive: true }).overlaps).toHaveLength(1);
    });

    it('counts a reader told it holds after a later writer got the key, and not after a later reader did', () => {
      const history = [
        ...modal('r', 1, 10, 90, 'shared', undefined, 'lost'),
        ...modal('r2', 2, 20, 30, 'shared'),
        ...modal('w', 3, 50, 60),
        guard(25, 'r', 1, false),
        guard(55, 'r', 1, false),
      ];
      expect(checkHistory(history, { exclusive: false }).staleGuards.map((g) => g.t)).toEqual([55]);
    });

    it('counts a killed limited holder whose place did not come back in time, and not one whose place did', () => {
      const kill = fault(20, 'a', 'SIGKILL');
      const start = (worker: string, fence: number, at: number): HistoryEvent => ({
        t: at,
        worker,
        call: 1,
        type: 'acquired',
        key: 'k',
        fence: String(fence),
        ttl: 100,
        mode: 'limit',
        limit: 2,
      });
      // a holds a place and is killed; b and c take turns on the other place, never both at once.
      const stuck = [
        start('a', 1, 10),
        kill,
        ...modal('b', 2, 30, 40, 'limit', 2),
        ...modal('c', 3, 50, 60, 'limit', 2),
      ];
      expect(checkHistory(stuck, { exclusive: true, placeBackWithin: 200 }).lostPlaces).toEqual([
        { killedAt: 20, worker: 'a', limit: 2 },
      ]);
      // a's place came back at 150 (its lease ended): b and c held together.
      const back = [...stuck, ...modal('b', 4, 150, 170, 'limit', 2), ...modal('c', 5, 155, 175, 'limit', 2)];
      expect(checkHistory(back, { exclusive: true, placeBackWithin: 200 })).toMatchObject({
        lostPlaces: [],
        violations: 0,
      });
    });
  });
});
