import type { LockUnderTest } from './lock-bench.harness';

/** The ceiling: a FIFO mutex in this process, no backend, no network. */
export function inProcessMutex(): LockUnderTest {
  const tails = new Map<string, Promise<void>>();
  return async (key) => {
    const previous = tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    tails.set(key, tail);
    await previous;
    return async () => {
      if (tails.get(key) === tail) tails.delete(key);
      release();
    };
  };
}
