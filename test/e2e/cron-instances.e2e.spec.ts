import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { dropSchema, sharedDatabaseUrl } from '../support/postgres-database';
import { SHARED_REDIS_URL } from '../support/shared-redis';

const PERIOD = 2_000;
const TICKS = 10;

interface Instance {
  child: ChildProcess;
  runs: number[];
  ready: Promise<void>;
}

function startInstance(kind: string, connection: string, keyPrefix: string, skew: number, minHold: number): Instance {
  const child = spawn(
    process.execPath,
    [
      '-r',
      join(__dirname, '../support/transpile-on-require.js'),
      join(__dirname, 'processes/cron-instance.process.ts'),
      kind,
      connection,
      keyPrefix,
      String(skew),
      String(minHold),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const runs: number[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`cron instance exited early with code ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const message = JSON.parse(line) as { ready?: number; ran?: number };
      if (message.ready !== undefined) resolve();
      if (message.ran !== undefined) runs.push(message.ran);
    });
  });
  return { child, runs, ready };
}

async function stop(instance: Instance): Promise<void> {
  if (instance.child.exitCode !== null) return;
  // 'close': the runs it printed last are read by then, which 'exit' does not wait for.
  const exited = new Promise((resolve) => instance.child.once('close', resolve));
  instance.child.kill('SIGTERM');
  const timer = setTimeout(() => instance.child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Two app instances as separate processes, each with the same @Cron every 2 s under
 * `@WithLock('report', { wait: 0, onBusy: 'skip', minHold: 1000 })`, their cron clocks 40 ms apart.
 * Returns the number of runs of each tick, over TICKS ticks that both instances saw.
 */
async function runsPerTick(kind: string, connection: string, keyPrefix: string, minHold: number): Promise<number[]> {
  const instances = [
    startInstance(kind, connection, keyPrefix, 0, minHold),
    startInstance(kind, connection, keyPrefix, -40, minHold),
  ];
  try {
    await Promise.all(instances.map((i) => i.ready));
    // The first whole tick after both are up, and TICKS ticks from there.
    const first = Math.ceil((Date.now() + 500) / PERIOD) * PERIOD;
    const last = first + (TICKS - 1) * PERIOD;
    await new Promise((resolve) => setTimeout(resolve, last + PERIOD / 2 - Date.now()));
    const counts = new Array<number>(TICKS).fill(0);
    for (const instance of instances) {
      for (const ran of instance.runs) {
        const tick = Math.round((ran - first) / PERIOD);
        if (tick >= 0 && tick < TICKS) counts[tick]++;
      }
    }
    return counts;
  } finally {
    await Promise.all(instances.map(stop));
  }
}

describe('@Cron on two instances with skewed clocks, under @WithLock with minHold', () => {
  const prefix = `dl_cron_${randomBytes(4).toString('hex')}`;
  afterAll(() => dropSchema(sharedDatabaseUrl(), prefix));

  it.each([
    ['redis', SHARED_REDIS_URL],
    ['postgres', sharedDatabaseUrl()],
  ])(
    'runs every tick exactly once on %s',
    async (kind, connection) => {
      const counts = await runsPerTick(kind, connection, `${prefix}_${kind}`, 1_000);
      expect(counts).toEqual(new Array(TICKS).fill(1));
    },
    60_000,
  );
});
