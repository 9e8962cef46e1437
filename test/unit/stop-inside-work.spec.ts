import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { FaultRun } from '../faults/fault-runner';
import type { HistoryEvent } from '../faults/history';

const WORK_MS = 30;
const THINK_MS = 100;
const ROUNDS = 12;

/**
 * The SIGSTOP fault cases stop a holder between its read and its write. The runner hears of a read
 * some time after it happened; a runner that is late by more than the work must not stop the worker
 * somewhere else and call it a paused holder. The worker here is a child that prints the same
 * history lines as a fault-suite worker: a read, WORK_MS of work, a write, THINK_MS outside any work.
 */
describe('stopping a holder inside its work', () => {
  it('passes over a read it heard of too late and stops the worker inside a later work', async () => {
    const script = `
      const now = () => Number(process.hrtime.bigint()) / 1e6;
      const emit = (e) => process.stdout.write(JSON.stringify({ t: now(), worker: 'w0', key: 'k', ...e }) + '\\n');
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      (async () => {
        for (let i = 1; i <= ${ROUNDS}; i++) {
          emit({ type: 'read', fence: String(i), value: i, ok: true });
          await sleep(${WORK_MS});
          emit({ type: 'write', fence: String(i), value: i + 1, accepted: true, signalAborted: false });
          await sleep(${THINK_MS});
        }
      })();`;
    const run = new FaultRun(1_000);
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    run.workers.set('w0', child);
    createInterface({ input: child.stdout }).on('line', (line) => run.add(JSON.parse(line) as HistoryEvent));
    const closed = new Promise((resolve) => child.once('close', resolve));
    try {
      const read = await run.next((e) => e.type === 'read');
      // A loaded runner: its event loop is busy for twice the work before it acts on the read.
      const until = performance.now() + 2 * WORK_MS;
      while (performance.now() < until) {
        // busy
      }
      const worker = await run.stopInsideWork(read, WORK_MS);
      await new Promise((resolve) => setTimeout(resolve, 3 * WORK_MS));
      run.signal(worker, 'SIGCONT');
      await closed;
    } finally {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }

    const events = [...run.events].sort((a, b) => a.t - b.t);
    const stops = events.filter((e) => e.type === 'fault' && e.fault === 'SIGSTOP');
    expect(stops.map((e) => (e.type === 'fault' ? e.phase : ''))).toEqual(['start', 'end']);
    const [stop, resume] = stops;
    // Inside a work: the worker's last line before the stop is a read, and that read's write came
    // only after the worker was resumed.
    const before = events.filter((e) => e.type !== 'fault' && e.t < stop.t).at(-1);
    expect(before?.type).toBe('read');
    const write = events.find((e) => e.type === 'write' && before?.type === 'read' && e.fence === before.fence);
    expect(write!.t).toBeGreaterThan(resume.t);
    // Every round ran to its end: nothing was lost while the worker was stopped.
    expect(events.filter((e) => e.type === 'write')).toHaveLength(ROUNDS);
  }, 20_000);
});
