import { LockBackendError } from '../../lib';
import { readAcquireReply, readFlag, readInteger, readReleaseReply } from '../../lib/backends/redis/redis-lock.replies';

const waiter = 'a'.repeat(32);
const other = 'b'.repeat(32);

describe('lock script replies, as numbers and as strings (ioredis stringNumbers)', () => {
  it.each([
    [1735689600123456, { kind: 'granted', fence: 1735689600123456 }],
    ['1735689600123456', { kind: 'granted', fence: 1735689600123456 }],
    [-250, { kind: 'busy', retryIn: 250 }],
    ['-250', { kind: 'busy', retryIn: 250 }],
    [0, { kind: 'busy', retryIn: 0 }],
    ['0', { kind: 'busy', retryIn: 0 }],
    [
      ['', -900, waiter, 1735689600123456],
      { kind: 'busy', retryIn: 900, handed: [{ waiter, fence: 1735689600123456 }] },
    ],
    [
      ['', '-900', waiter, '1735689600123456'],
      { kind: 'busy', retryIn: 900, handed: [{ waiter, fence: 1735689600123456 }] },
    ],
    [
      ['', 42, waiter, 40, other, 41],
      {
        kind: 'granted',
        fence: 42,
        handed: [
          { waiter, fence: 40 },
          { waiter: other, fence: 41 },
        ],
      },
    ],
    [['limit:3', -250], { kind: 'busy', retryIn: 250, heldWith: 'limit:3' }],
    [['exclusive', '0'], { kind: 'busy', retryIn: 0, heldWith: 'exclusive' }],
    [['shared', -5, waiter, 7], { kind: 'busy', retryIn: 5, heldWith: 'shared', handed: [{ waiter, fence: 7 }] }],
  ])('reads the acquire reply %j', (reply, answer) => {
    expect(readAcquireReply('acquire', reply)).toEqual(answer);
  });

  it.each([
    [0, false],
    ['0', false],
    [1, true],
    ['1', true],
    [[waiter, 42], [{ waiter, fence: 42 }]],
    [[waiter, '42'], [{ waiter, fence: 42 }]],
    [
      [waiter, 42, other, '43'],
      [
        { waiter, fence: 42 },
        { waiter: other, fence: 43 },
      ],
    ],
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

  it.each([
    [['', 5, waiter]],
    [['shared', 5]],
    [['held', -5]],
    [['limit:0', -5]],
    [[waiter, 1735689600123456, 900]],
    [['', -5, 7, 7]],
  ])('rejects the acquire reply %j with LockBackendError', (reply) => {
    expect(() => readAcquireReply('acquire', reply)).toThrow(LockBackendError);
  });

  it('rejects a flag other than 0 or 1', () => {
    expect(() => readFlag('extend', 2)).toThrow(LockBackendError);
    expect(() => readFlag('extend', '2')).toThrow(LockBackendError);
  });
});
