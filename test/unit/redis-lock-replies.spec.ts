import { LockBackendError } from '../../lib';
import { readAcquireReply, readFlag, readInteger, readReleaseReply } from '../../lib/backends/redis/redis-lock.replies';

const waiter = 'a'.repeat(32);

describe('lock script replies, as numbers and as strings (ioredis stringNumbers)', () => {
  it.each([
    [1735689600123456, { kind: 'granted', fence: 1735689600123456 }],
    ['1735689600123456', { kind: 'granted', fence: 1735689600123456 }],
    [-250, { kind: 'busy', retryIn: 250 }],
    ['-250', { kind: 'busy', retryIn: 250 }],
    [0, { kind: 'busy', retryIn: 0 }],
    ['0', { kind: 'busy', retryIn: 0 }],
    [[waiter, 1735689600123456, 900], { kind: 'handed', waiter, fence: 1735689600123456, retryIn: 900 }],
    [[waiter, '1735689600123456', '900'], { kind: 'handed', waiter, fence: 1735689600123456, retryIn: 900 }],
  ])('reads the acquire reply %j', (reply, answer) => {
    expect(readAcquireReply('acquire', reply)).toEqual(answer);
  });

  it.each([
    [0, false],
    ['0', false],
    [1, true],
    ['1', true],
    [[waiter, 42], { waiter, fence: 42 }],
    [[waiter, '42'], { waiter, fence: 42 }],
  ])('reads the release reply %j', (reply, answer) => {
    expect(readReleaseReply('release', reply)).toEqual(answer);
  });

  it.each([
    [1, true],
    ['1', true],
    [0, false],
    ['0', false],
  ])('reads the extend reply %j', (reply, answer) => {
    expect(readFlag('extend', reply)).toBe(answer);
  });

  it.each([[null], ['OK'], ['1.5'], [1.5], [2 ** 60], ['12345678901234567890'], [[waiter]], [[1, 2, 3]], [{}]])(
    'rejects %j with LockBackendError, never reading it as busy or not held',
    (reply) => {
      for (const read of [readAcquireReply, readReleaseReply, readFlag, readInteger]) {
        expect(() => read('op on Redis at 127.0.0.1:6379', reply)).toThrow(LockBackendError);
      }
      expect(() => readFlag('extend on Redis at 127.0.0.1:6379', reply)).toThrow(
        /extend on Redis at 127\.0\.0\.1:6379: unexpected reply/,
      );
    },
  );

  it('rejects a flag other than 0 or 1', () => {
    expect(() => readFlag('extend', 2)).toThrow(LockBackendError);
    expect(() => readFlag('extend', '2')).toThrow(LockBackendError);
  });
});
