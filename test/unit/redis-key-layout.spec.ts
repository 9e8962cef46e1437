import fc from 'fast-check';
import { redisLockKeys } from '../../lib/backends/redis/redis-key-layout';
import { parseLockMessage } from '../../lib/backends/redis/redis-lock.subscriber';

/** The part of a key Redis Cluster hashes: the first non-empty {…} section, else the whole key. */
function hashedPart(name: string): string {
  const open = name.indexOf('{');
  if (open < 0) return name;
  const close = name.indexOf('}', open + 1);
  if (close < 0 || close === open + 1) return name;
  return name.slice(open + 1, close);
}

describe('redisLockKeys', () => {
  it('puts every name of a lock under one hash tag, whatever braces the key holds', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('{', '}', 'a', ':', 'é', '🔒'), maxLength: 30 }).filter((k) => k.length > 0),
        (key) => {
          const names = Object.values(redisLockKeys(key));
          const tags = new Set(names.map(hashedPart));
          expect(tags.size).toBe(1);
          // The tag is a real hash tag, not the whole name (which would differ per suffix).
          expect(names.every((name) => hashedPart(name) !== name)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('gives different keys different names', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('{', '}', 'a', 'b', ':', '#'), minLength: 1, maxLength: 12 }),
        fc.string({ unit: fc.constantFrom('{', '}', 'a', 'b', ':', '#'), minLength: 1, maxLength: 12 }),
        (a, b) => {
          fc.pre(a !== b);
          const x = redisLockKeys(a);
          const y = redisLockKeys(b);
          for (const name of Object.values(x)) expect(Object.values(y)).not.toContain(name);
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('keeps plain keys readable', () => {
    expect(redisLockKeys('lock:orders:42')).toEqual({
      lease: '{lock:orders:42}:l',
      queue: '{lock:orders:42}:q',
      waiters: '{lock:orders:42}:w',
      fence: '{lock:orders:42}:f',
      holders: '{lock:orders:42}:h',
      holding: '{lock:orders:42}:s',
      channel: '{lock:orders:42}:c',
    });
  });
});

describe('parseLockMessage', () => {
  const token = '0123456789abcdef0123456789abcdef';

  it('reads releases and grants', () => {
    expect(parseLockMessage('k', 'r')).toEqual({ type: 'released', key: 'k' });
    expect(parseLockMessage('k', `g${token}1795691442204000`)).toEqual({
      type: 'granted',
      key: 'k',
      token,
      fence: 1795691442204000n,
    });
  });

  it('ignores anything else', () => {
    for (const message of ['', 'x', 'g', `g${token}`, `g${token}12a`, `r${token}1`])
      expect(parseLockMessage('k', message)).toBeUndefined();
  });
});
