import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { historyNow } from './history-clock';
import { checkHistory, type CheckOptions, type CheckReport, type HistoryEvent } from './history';
import {
  createResource,
  type BackendSpec,
  type ResourceSpec,
  type WorkerBehaviour,
  type WorkerConfig,
} from './worker-config';

const ROOT = join(__dirname, '..', '..');
/** Workers run the TypeScript sources, transpiled as they load (jest's own run type-checks them). */
const WORKER_ARGS = [
  '-r',
  join(ROOT, 'test/support/transpile-on-require.js'),
  join(ROOT, 'test/faults/lock-worker.ts'),
];

export interface FaultCase {
  name: string;
  backend: BackendSpec;
  resource: ResourceSpec;
  workers?: number;
  durationMs?: number;
  ttl?: number;
  wait?: number;
  workMs?: number;
  thinkMs?: number;
  /** How each worker uses the lock (worker i gets entry i; missing entries are `plain`). */
  behaviours?: WorkerBehaviour[];
  /** Injects the fault while the workers run; resolves when the fault is over. */
  fault?: (run: FaultRun) => Promise<void>;
  check: CheckOptions;
}

export interface FaultCaseResult {
  name: string;
  report: CheckReport;
  history: HistoryEvent[];
  /** The counter's final value at the resource. */
  finalValue: number;
  /** stderr of workers that exited with an error. */
  workerErrors: string[];
}

/** A running case: the live history, the worker processes, and what a fault needs to act on them. */
export class FaultRun {
  readonly events: HistoryEvent[] = [];
  readonly workers = new Map<string, ChildProcess>();
  private listeners: Array<{ test: (e: HistoryEvent) => boolean; resolve: (e: HistoryEvent) => void }> = [];

  constructor(readonly ttl: number) {}

  /** Resolves with the next event that matches, or rejects after `within` ms. */
  next(test: (e: HistoryEvent) => boolean, within = 15_000): Promise<HistoryEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l.resolve !== done);
        reject(new Error(`no matching event within ${within} ms`));
      }, within);
      const done = (e: HistoryEvent): void => {
        clearTimeout(timer);
        resolve(e);
      };
      this.listeners.push({ test, resolve: done });
    });
  }

  /** Records a fault in the history (the checker uses SIGKILL and SIGSTOP marks). */
  mark(worker: string, fault: string, phase: 'start' | 'end'): void {
    this.add({ t: historyNow(), worker, type: 'fault', fault, phase });
  }

  /** Sends `signal` to a worker and records it (a SIGCONT ends the stop of `stopInsideWork`). */
  signal(worker: string, signal: 'SIGKILL' | 'SIGCONT'): void {
    const child = this.workers.get(worker);
    if (!child?.pid) throw new Error(`no worker ${worker}`);
    if (signal === 'SIGCONT') this.mark(worker, 'SIGSTOP', 'end');
    else this.mark(worker, signal, 'start');
    process.kill(child.pid, signal);
  }

  /**
   * Stops the worker of `read` (a `read` event it has just reported) inside that work: after the
   * read, before its write, where a paused holder does harm. Resolves with the stopped worker;
   * the SIGCONT is the caller's.
   *
   * The runner learns of a read some time after the worker made it, and on a loaded machine a
   * short work (`workMs`) can be over first: a stop that lands after the write is no paused holder,
   * and the case tests nothing. The worker starts its write no sooner than `workMs` after its read
   * (2 ms less, for timer rounding), so a stop that has taken effect before then is inside the work.
   * A read seen too late is passed over, a stop that took effect too late is undone at once and
   * recorded as a miss (which the checker does not count as a pause), and the next read is tried,
   * `attempts` reads in all.
   */
  async stopInsideWork(read: HistoryEvent, workMs: number, attempts = 5): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      const child = this.workers.get(read.worker);
      if (!child?.pid) throw new Error(`no worker ${read.worker}`);
      const writeNoSoonerThan = read.t + workMs - 2;
      if (read.type === 'read' && read.ok && historyNow() < writeNoSoonerThan) {
        const t = historyNow();
        process.kill(child.pid, 'SIGSTOP');
        if (historyNow() < writeNoSoonerThan) {
          this.add({ t, worker: read.worker, type: 'fault', fault: 'SIGSTOP', phase: 'start' });
          return read.worker;
        }
        process.kill(child.pid, 'SIGCONT');
        this.add({ t, worker: read.worker, type: 'fault', fault: 'SIGSTOP after the work', phase: 'start' });
        this.add({
          t: historyNow(),
          worker: read.worker,
          type: 'fault',
          fault: 'SIGSTOP after the work',
          phase: 'end',
        });
      }
      if (attempt === attempts) throw new Error(`no stop landed inside the work of ${attempts} reads in a row`);
      read = await this.next((e) => e.type === 'read' && e.ok);
    }
  }

  add(event: HistoryEvent): void {
    this.events.push(event);
    this.listeners = this.listeners.filter((l) => {
      if (!l.test(event)) return true;
      l.resolve(event);
      return false;
    });
  }
}

/**
 * Runs one case: resets the counter, starts the workers as separate processes, injects the fault,
 * waits for every worker to finish (bounded), then checks the merged history.
 */
export async function runFaultCase(c: FaultCase): Promise<FaultCaseResult> {
  const workers = c.workers ?? 4;
  const durationMs = c.durationMs ?? 4_000;
  const ttl = c.ttl ?? 1_000;
  const resourceName = `${c.name}:${Date.now()}`;
  // One prefix for the whole case: every worker must contend for the same lock.
  const keyPrefix = `faults:${Date.now()}:`;
  const resource = await createResource(c.resource);
  const run = new FaultRun(ttl);
  const workerErrors: string[] = [];
  try {
    await resource.reset(resourceName);
    const exits: Array<Promise<void>> = [];
    const ready: Array<Promise<void>> = [];
    for (let i = 0; i < workers; i++) {
      const id = `w${i}`;
      const config: WorkerConfig = {
        id,
        backend: c.backend,
        resource: c.resource,
        resourceName,
        keyPrefix,
        key: c.name,
        ttl,
        wait: c.wait ?? 10_000,
        workMs: c.workMs ?? 5,
        thinkMs: c.thinkMs ?? 2,
        durationMs,
        behaviour: c.behaviours?.[i],
      };
      const child = spawn(process.execPath, WORKER_ARGS, {
        cwd: ROOT,
        env: { ...process.env, LOCK_WORKER_CONFIG: JSON.stringify(config) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      run.workers.set(id, child);
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      let markReady!: () => void;
      ready.push(new Promise<void>((resolve) => (markReady = resolve)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        // Anything else on stdout is the library's log (Nest's Logger writes there).
        if (!line.startsWith('{')) return;
        const parsed = JSON.parse(line) as HistoryEvent | { ready: string };
        if ('ready' in parsed) markReady();
        else run.add(parsed);
      });
      exits.push(
        new Promise<void>((resolve) => {
          // 'close', not 'exit': the last lines of its stdout may still be on their way at its exit.
          child.on('close', (code, signal) => {
            markReady();
            if (code !== 0 && signal !== 'SIGKILL')
              workerErrors.push(`${id} exited ${code ?? signal}: ${stderr.trim()}`);
            resolve();
          });
        }),
      );
    }
    await Promise.all(ready);
    if (c.fault) await c.fault(run);
    const limit = durationMs + ttl * 4 + 20_000;
    const finished = await Promise.race([
      Promise.all(exits).then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), limit).unref()),
    ]);
    if (!finished) workerErrors.push(`workers still running ${limit} ms after the start: killed`);
    return {
      name: c.name,
      report: checkHistory(run.events, c.check),
      history: run.events,
      finalValue: await resource.value(resourceName),
      workerErrors,
    };
  } finally {
    for (const child of run.workers.values()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
      }
    }
    await resource.close();
  }
}
