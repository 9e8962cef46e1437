import { DistributedLockService, InvalidLockOptionsError, memoryBackend, type DistributedLock, type MemoryLockBackend } from '../../lib';

type Call = (locks: DistributedLock) => Promise<unknown>;

const TIMER_LIMIT = 2 ** 31 - 1;
const guardShaped = { key: 'k', token: 'a'.repeat(32), fence: 1n, acquiredAt: 0, expiresAt: 0 };

/** Each row: the call, and the message it must be refused with. */
const rows: Array<[string, Call, RegExp]> = [
  ['empty key', (l) => l.tryAcquire(''), /Invalid lock key: expected a non-empty string .* got an empty string/],
  ['non-string key', (l) => l.acquire(42 as never), /Invalid lock key: expected a non-empty string .* got 42 \(number\)/],
  ['undefined key', (l) => l.withLock(undefined as never, () => 1), /Invalid lock key: .* got undefined \(undefined\)/],
  ['key over 1024 bytes', (l) => l.tryAcquire('é'.repeat(513)), /of at most 1024 UTF-8 bytes.* of 1026 bytes/],
  ['key with NUL', (l) => l.tryAcquire('a\u0000b'), /with a NUL character/],
  ['key with an unpaired surrogate', (l) => l.tryAcquire('a\ud800'), /unpaired surrogate/],
  ['ttl 0', (l) => l.tryAcquire('k', { ttl: 0 }), /Invalid ttl: expected an integer number of milliseconds from 1 to 2147483647 .* got 0/],
  ['ttl negative', (l) => l.acquire('k', { ttl: -1 }), /Invalid ttl: .* got -1/],
  ['ttl NaN', (l) => l.withLock('k', () => 1, { ttl: Number.NaN }), /Invalid ttl: .* got NaN/],
  ['ttl Infinity', (l) => l.acquire('k', { ttl: Infinity }), /Invalid ttl: .* got Infinity/],
  ['ttl not an integer', (l) => l.tryAcquire('k', { ttl: 1.5 }), /Invalid ttl: .* got 1\.5/],
  ['ttl above the timer limit', (l) => l.tryAcquire('k', { ttl: TIMER_LIMIT + 1 }), /\(2\^31-1, the timer limit\), got 2147483648/],
  ['ttl as a string', (l) => l.tryAcquire('k', { ttl: '100' as never }), /Invalid ttl: .* got "100"/],
  ['wait negative', (l) => l.acquire('k', { wait: -1 }), /Invalid wait: expected a number of milliseconds >= 0 \(0 = one attempt, Infinity = no limit\), got -1/],
  ['wait NaN', (l) => l.withLock('k', () => 1, { wait: Number.NaN }), /Invalid wait: .* got NaN/],
  ['signal not an AbortSignal', (l) => l.acquire('k', { signal: {} as never }), /Invalid signal: expected an AbortSignal or undefined/],
  ['unknown option', (l) => l.acquire('k', { timeout: 5 } as never), /Invalid acquire options: unknown option "timeout"; allowed: ttl, wait, signal/],
  ['options not an object', (l) => l.tryAcquire('k', 100 as never), /Invalid tryAcquire options: expected an object with any of ttl, got 100/],
  ['work not a function', (l) => l.withLock('k', 'run' as never), /Invalid withLock work: expected a function, got "run"/],
  ['guard null', (l) => l.release(null as never), /Invalid guard: expected a LockGuard .* got null/],
  ['guard without key', (l) => l.release({ ...guardShaped, key: undefined } as never), /but its key is undefined/],
  ['guard without token', (l) => l.extend({ ...guardShaped, token: undefined } as never), /but its token is undefined/],
  ['guard with a short token', (l) => l.extend({ ...guardShaped, token: 'abc' }), /but its token is "abc"/],
  ['guard without fence', (l) => l.release({ ...guardShaped, fence: undefined } as never), /but its fence is undefined/],
  ['guard with a number fence', (l) => l.release({ ...guardShaped, fence: 1 } as never), /but its fence is 1/],
  ['extend ttl 0', (l) => l.extend(guardShaped, 0), /Invalid ttl: .* got 0/],
];

describe('bad input to DistributedLock', () => {
  let backend: MemoryLockBackend;
  let locks: DistributedLockService;

  beforeEach(() => {
    backend = memoryBackend();
    locks = new DistributedLockService({ backend, keyPrefix: 'lock:', ttl: 1_000, wait: 1_000 });
  });

  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  it.each(rows)('refuses %s with a typed error and holds nothing', async (_name, call, message) => {
    const timersBefore = timers();
    const error = await call(locks).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InvalidLockOptionsError);
    expect((error as Error).message).toMatch(message);
    expect(backend.size).toBe(0);
    expect(locks.heldCount).toBe(0);
    expect(timers()).toBe(timersBefore);
  });

  it('refuses a guard issued by another DistributedLock', async () => {
    const other = new DistributedLockService({ backend: memoryBackend(), keyPrefix: 'lock:', ttl: 1_000, wait: 0 });
    const foreign = (await other.tryAcquire('k'))!;
    await expect(locks.release(foreign)).rejects.toThrow(/issued by another DistributedLock/);
    await expect(locks.extend(foreign)).rejects.toBeInstanceOf(InvalidLockOptionsError);
    expect(await other.extend(foreign)).toBe(true);
    await other.shutdown();
  });

  it('accepts a key of exactly 1024 bytes and a wait of Infinity', async () => {
    const guard = await locks.acquire('x'.repeat(1024), { wait: Infinity, ttl: TIMER_LIMIT });
    expect(guard.key).toHaveLength(1024);
    await locks.release(guard);
    expect(backend.size).toBe(0);
  });
});
