import type { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { capabilitiesOf, type LockBackend } from './backends/lock-backend';
import type { WithLockMetadata } from './decorators/with-lock.decorator';
import type { DistributedLock } from './distributed-lock';
import { LOCK_SERVICE_PROPERTY, WITH_LOCK_METADATA } from './lock.constants';
import { InvalidLockOptionsError } from './lock.errors';

/**
 * At start, the `@WithLock` methods that take `locks` and ask for a mode its backend does not keep
 * (`mode: 'shared'`, `limit`, as `capabilities.modes` lists them): the module refuses them before
 * the app serves anything, rather than at their first call. Calls made with `withLock`, `acquire`
 * or `tryAcquire` are checked when they are made.
 */
export function unsupportedModeUses(
  discovery: DiscoveryService,
  scanner: MetadataScanner,
  locks: DistributedLock,
  backend: LockBackend,
): InvalidLockOptionsError | undefined {
  const modes = capabilitiesOf(backend).modes;
  if (modes.includes('shared') && modes.includes('limit')) return undefined;
  const uses: string[] = [];
  for (const wrapper of [...discovery.getProviders(), ...discovery.getControllers()]) {
    const instance = wrapper.instance as Record<PropertyKey, unknown> | undefined;
    if (!instance || typeof instance !== 'object' || instance[LOCK_SERVICE_PROPERTY] !== locks) continue;
    const prototype = Object.getPrototypeOf(instance) as object;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const method = (prototype as Record<string, unknown>)[name];
      if (typeof method !== 'function') continue;
      const metadata = Reflect.getMetadata(WITH_LOCK_METADATA, method) as WithLockMetadata | undefined;
      if (!metadata) continue;
      const asked = metadata.limit !== undefined ? 'limit' : metadata.mode === 'shared' ? 'shared' : undefined;
      if (asked && !modes.includes(asked)) {
        uses.push(
          `${instance.constructor.name}.${name} (${asked === 'limit' ? `limit ${metadata.limit}` : "mode 'shared'"})`,
        );
      }
    }
  }
  if (uses.length === 0) return undefined;
  const kept = modes.length === 0 ? 'exclusive locks only' : `exclusive locks and ${modes.join(', ')}`;
  return new InvalidLockOptionsError(
    `The ${backend.name} backend keeps ${kept}, and @WithLock asks for more on ${uses.join(', ')}: ` +
      'use a backend that keeps that mode (memory, Redis, PostgreSQL), or drop the option',
  );
}
