import { checkHistory, type HistoryEvent } from '../faults/history';

/** Small builders for synthetic histories: the checker must find what is planted in them. */
const acquired = (t: number, worker: string, fence: number): HistoryEvent => ({ t, worker, type: 'acquired', key: 'k', fence: String(fence), ttl: 100 });
const release = (t: number, worker: string, fence: number): HistoryEvent => ({ t, worker, type: 'release', key: 'k', fence: String(fence) });
const lost = (t: number, worker: string, fence: number): HistoryEvent => ({ t, worker, type: 'lost', key: 'k', fence: String(fence) });
const write = (t: number, worker: string, fence: number, value: number, accepted = true): HistoryEvent => ({
  t, worker, type: 'write', key: 'k', fence: String(fence), value, accepted, signalAborted: false,
});
const invoke = (t: number, worker: string): HistoryEvent => ({ t, worker, type: 'invoke', key: 'k' });
const fault = (t: number, worker: string, name: string, phase: 'start' | 'end' = 'start'): HistoryEvent => ({ t, worker, type: 'fault', fault: name, phase });

describe('history checker', () => {
  const clean: HistoryEvent[] = [
    invoke(0, 'a'), acquired(1, 'a', 1), write(2, 'a', 1, 1), release(3, 'a', 1),
    invoke(1, 'b'), acquired(4, 'b', 2), write(5, 'b', 2, 2), release(6, 'b', 2),
  ];

  it('passes a clean history', () => {
    const report = checkHistory(clean, { exclusive: true });
    expect(report).toMatchObject({ holds: 2, acceptedWrites: 2, violations: 0 });
  });

  it('finds overlapping holds', () => {
    const report = checkHistory([acquired(1, 'a', 1), acquired(2, 'b', 2), release(3, 'a', 1), release(4, 'b', 2)], { exclusive: true });
    expect(report.overlaps).toHaveLength(1);
    expect(report.violations).toBe(1);
  });

  it('ends a hold at its lost signal', () => {
    const report = checkHistory([acquired(1, 'a', 1), lost(2, 'a', 1), acquired(3, 'b', 2), release(5, 'a', 1), release(6, 'b', 2)], { exclusive: true });
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
    const history = [invoke(0, 'a'), acquired(1, 'a', 1), invoke(2, 'b'), fault(10, 'a', 'SIGKILL'), acquired(2_000, 'b', 2)];
    expect(checkHistory(history, { exclusive: true, livenessWithin: 1_100 }).livenessViolations).toHaveLength(1);
    expect(checkHistory(history, { exclusive: true, livenessWithin: 2_100 }).livenessViolations).toHaveLength(0);
  });

  it('finds a paused holder that wrote with a stale fence or whose signal never fired', () => {
    const history = [
      acquired(1, 'a', 1), fault(2, 'a', 'SIGSTOP'), acquired(200, 'b', 2), write(201, 'b', 2, 1), release(202, 'b', 2),
      fault(300, 'a', 'SIGSTOP', 'end'), write(301, 'a', 1, 1, true),
    ];
    const report = checkHistory(history, { exclusive: false });
    expect(report.pausedHolders).toEqual([{ worker: 'a', fence: 1n, signalFired: false, staleAcceptedWrites: 1 }]);
    // The stale write, the silent signal, and at the resource the lost update and the fence going back.
    expect(report.violations).toBe(4);
  });
});
