import { CommandDeadlines } from '../../lib/backends/redis/redis-command-deadlines';
import { eventually, sleep } from '../support/time';

/** A stand-in for an ioredis Command: records the error it was rejected with. */
function command(): { reject(error: Error): void; error?: Error } {
  const c: { reject(error: Error): void; error?: Error } = {
    reject: (error) => {
      c.error = error;
    },
  };
  return c;
}

describe('CommandDeadlines', () => {
  it('rejects every unanswered command at its deadline and leaves the answered ones alone', async () => {
    const deadlines = new CommandDeadlines(40, (what) => new Error(`${what}: no answer`));
    const first = command();
    const answered = command();
    const third = command();
    deadlines.add('first', first);
    const done = deadlines.add('answered', answered);
    deadlines.add('third', third);
    deadlines.settle(done);
    await eventually(() => first.error && third.error, { within: 2_000 });
    expect(first.error!.message).toBe('first: no answer');
    expect(third.error!.message).toBe('third: no answer');
    expect(answered.error).toBeUndefined();
  });

  it('never rejects a command before its own full timeout, the command resent in its place included', async () => {
    const timeout = 60;
    const deadlines = new CommandDeadlines(timeout, (what) => new Error(`${what}: no answer`));
    const rejectedAt = new Map<string, number>();
    const timed = (name: string) => ({ reject: () => rejectedAt.set(name, performance.now()) });
    const earlyAddedAt = performance.now();
    deadlines.add('early', timed('early'));
    await sleep(40);
    const lateAddedAt = performance.now();
    const deadline = deadlines.add('late', timed('late'));
    deadline.command = timed('resent');
    await eventually(() => rejectedAt.size === 2, { within: 2_000 });
    expect(rejectedAt.has('late')).toBe(false);
    expect(rejectedAt.get('early')! - earlyAddedAt).toBeGreaterThanOrEqual(timeout - 1);
    expect(rejectedAt.get('resent')! - lateAddedAt).toBeGreaterThanOrEqual(timeout - 1);
  });

  it('keeps no command once all are answered, and times out new ones after that', async () => {
    const deadlines = new CommandDeadlines(30, (what) => new Error(what));
    const answered = Array.from({ length: 100 }, () => command());
    for (const c of answered) deadlines.settle(deadlines.add('x', c));
    expect((deadlines as unknown as { head: unknown }).head).toBeUndefined();
    await sleep(60);
    const later = command();
    deadlines.add('later', later);
    await eventually(() => later.error, { within: 2_000 });
    expect(answered.every((c) => c.error === undefined)).toBe(true);
  });

  it('stops its timer at close when every command is answered, and keeps it while one still waits', async () => {
    const timer = (d: CommandDeadlines) => (d as unknown as { timer: unknown }).timer;
    const idle = new CommandDeadlines(10_000, (what) => new Error(what));
    idle.settle(idle.add('answered', command()));
    expect(timer(idle)).toBeDefined();
    idle.close();
    expect(timer(idle)).toBeUndefined();

    const busy = new CommandDeadlines(30, (what) => new Error(`${what}: no answer`));
    const waiting = command();
    busy.add('waiting', waiting);
    busy.close();
    await eventually(() => waiting.error, { within: 2_000 });
    expect(waiting.error!.message).toBe('waiting: no answer');
    await eventually(() => timer(busy) === undefined, { within: 2_000 });
  });
});
