import { InvalidLockOptionsError, LockError } from '../../lib';
import { MissingPeerDependencyError } from '../../lib/lock.errors';
import { loadOptionalPeer } from '../../lib/optional-peer';

describe('loadOptionalPeer', () => {
  it('throws MissingPeerDependencyError naming the package and the command that installs it', () => {
    const error = (() => {
      try {
        loadOptionalPeer('nestjs-distributed-lock-absent-peer', {
          neededBy: 'theFeature needs',
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          load: () => require('nestjs-distributed-lock-absent-peer'),
        });
      } catch (e) {
        return e;
      }
      return undefined;
    })() as MissingPeerDependencyError;
    expect(error).toBeInstanceOf(MissingPeerDependencyError);
    // A setup the install cannot serve: caught as bad options, never as a backend that is down.
    expect(error).toBeInstanceOf(InvalidLockOptionsError);
    expect(error).toBeInstanceOf(LockError);
    expect(error.name).toBe('MissingPeerDependencyError');
    expect(error.packageName).toBe('nestjs-distributed-lock-absent-peer');
    expect(error.installCommand).toBe('npm install nestjs-distributed-lock-absent-peer');
    expect(error.message).toBe(
      'theFeature needs the "nestjs-distributed-lock-absent-peer" package, an optional peer dependency that is not installed: ' +
        'run `npm install nestjs-distributed-lock-absent-peer`',
    );
    expect((error.cause as Error).message).toContain('nestjs-distributed-lock-absent-peer');
  });

  it('names the version and the install command it is given', () => {
    const load = (): never => {
      throw new Error('Cannot find module');
    };
    expect(() =>
      loadOptionalPeer('absent-kit-peer', {
        neededBy: 'the model tests need',
        load,
        version: '4',
        install: 'npm install --save-dev absent-kit-peer@4',
      }),
    ).toThrow(
      'the model tests need the "absent-kit-peer" package (version 4), an optional peer dependency that is not installed: run `npm install --save-dev absent-kit-peer@4`',
    );
  });

  it('loads an installed package once and returns the same module after', () => {
    let loads = 0;
    const load = (): unknown => {
      loads++;
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require('ioredis');
    };
    const first = loadOptionalPeer<typeof import('ioredis')>('ioredis-once-check', { neededBy: 'x needs', load });
    const second = loadOptionalPeer<typeof import('ioredis')>('ioredis-once-check', { neededBy: 'x needs', load });
    expect(typeof first.Redis).toBe('function');
    expect(second).toBe(first);
    expect(loads).toBe(1);
  });

  it('is what the backends and the kit load their peers with: the error a missing one throws is the same class', async () => {
    // Each loader is one call of loadOptionalPeer; here the real ones load the real packages.
    const { loadPg } = await import('../../lib/backends/postgres/pg.loader');
    const { loadIoredis } = await import('../../lib/backends/redis/ioredis.loader');
    const { loadFastCheck } = await import('../../lib/testing/fast-check.loader');
    expect(typeof loadPg().Pool).toBe('function');
    expect(typeof loadIoredis().Redis).toBe('function');
    expect(typeof loadFastCheck().assert).toBe('function');
  });
});
