import { BackgroundWork } from '../../lib/background-work';
import { BoundedSet } from '../../lib/bounded-set';

describe('BackgroundWork', () => {
  it('tracks each piece until it settles, hands failures to onError, and settle waits for what runs', async () => {
    const work = new BackgroundWork();
    let finish!: () => void;
    const slow = new Promise<void>((resolve) => (finish = resolve));
    const failures: unknown[] = [];
    work.run(slow);
    work.run(Promise.reject(new Error('gone')), (error) => failures.push(error));
    expect(work.size).toBe(2);
    let settled = false;
    const settling = work.settle(60_000).then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(failures).toEqual([new Error('gone')]);
    expect(work.size).toBe(1);
    expect(settled).toBe(false);
    finish();
    await settling;
    expect(work.size).toBe(0);
  });

  it('stops waiting after the bound when a piece never settles, and drops a failure without onError', async () => {
    const work = new BackgroundWork();
    work.run(new Promise(() => undefined));
    work.run(Promise.reject(new Error('dropped')));
    await work.settle(20);
    expect(work.size).toBe(1);
  });
});

describe('BoundedSet', () => {
  it('keeps at most its capacity, forgetting the oldest first', () => {
    const set = new BoundedSet(2);
    set.add('a');
    set.add('b');
    set.add('c');
    expect(set.size).toBe(2);
    expect(set.has('a')).toBe(false);
    expect(set.delete('b')).toBe(true);
    expect(set.delete('b')).toBe(false);
    expect(set.has('c')).toBe(true);
    set.clear();
    expect(set.size).toBe(0);
  });
});
