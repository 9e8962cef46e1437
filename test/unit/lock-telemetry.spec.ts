import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as api from '@opentelemetry/api';
import { memoryBackend } from '../../lib';
import { DistributedLockService } from '../../lib/distributed-lock.service';
import { PACKAGE_NAME, PACKAGE_VERSION } from '../../lib/lock.constants';
import { resolveTelemetry, TELEMETRY_OFF, telemetrySetting } from '../../lib/telemetry/lock-telemetry';

/** Telemetry without an SDK, and without the API: off, and nothing asked for fails quietly. */
describe('lock telemetry', () => {
  it('names its meter and tracer after the package, with the version package.json has', () => {
    const manifest = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      name: string;
      version: string;
    };
    expect(PACKAGE_NAME).toBe(manifest.name);
    expect(PACKAGE_VERSION).toBe(manifest.version);
  });

  it('reads the module option: on by default (not required), off with false, flags from an object', () => {
    expect(telemetrySetting(undefined)).toEqual({ metrics: true, traces: true, recordKey: false, required: false });
    expect(telemetrySetting(false)).toBe(false);
    expect(telemetrySetting(true)).toEqual({ metrics: true, traces: true, recordKey: false, required: true });
    expect(telemetrySetting({ traces: false, recordKey: true })).toEqual({
      metrics: true,
      traces: false,
      recordKey: true,
      required: true,
    });
  });

  it('with the API installed but no SDK registered, records nothing: the no-op meter and the bare proxy tracer count as none', () => {
    expect(resolveTelemetry(api, { metrics: true, traces: true, recordKey: false }, 'memory')).toBe(TELEMETRY_OFF);
    expect(TELEMETRY_OFF.on).toBe(false);
    expect(TELEMETRY_OFF.tracing).toBe(false);
  });

  it('a service without an SDK works as without telemetry', async () => {
    const locks = new DistributedLockService({ backend: memoryBackend(), keyPrefix: 't:', ttl: 1_000, wait: 0 });
    await expect(locks.withLock('k', () => 'ran', { metricName: 'no.sdk' })).resolves.toBe('ran');
    expect((locks as unknown as { telemetry: { settled: unknown } }).telemetry.settled).toBe(TELEMETRY_OFF);
    await locks.shutdown();
  });

  describe('when @opentelemetry/api is not installed', () => {
    /** The service module as an app without the API loads it. */
    function withoutApi(): typeof import('../../lib/distributed-lock.service') {
      let loaded!: typeof import('../../lib/distributed-lock.service');
      jest.isolateModules(() => {
        jest.doMock('@opentelemetry/api', () => {
          throw new Error("Cannot find module '@opentelemetry/api'");
        });
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        loaded = require('../../lib/distributed-lock.service') as typeof loaded;
      });
      return loaded;
    }
    afterEach(() => jest.dontMock('@opentelemetry/api'));

    it('left to its default, telemetry is off and locks work', async () => {
      const { DistributedLockService: Service } = withoutApi();
      const locks = new Service({ backend: memoryBackend(), keyPrefix: 't:', ttl: 1_000, wait: 0 });
      await expect(locks.withLock('k', () => 'ran')).resolves.toBe('ran');
      await locks.shutdown();
    });

    it('asked for (telemetry: true), the start fails with MissingPeerDependencyError naming the install command', () => {
      const { DistributedLockService: Service } = withoutApi();
      const backend = memoryBackend();
      expect(
        () =>
          new Service({
            backend,
            keyPrefix: 't:',
            ttl: 1_000,
            wait: 0,
            telemetry: telemetrySetting({ metrics: true }),
          }),
      ).toThrow(
        'LockModule telemetry needs the "@opentelemetry/api" package, an optional peer dependency that is not installed: ' +
          'run `npm install @opentelemetry/api`',
      );
      void backend.close();
    });
  });
});
