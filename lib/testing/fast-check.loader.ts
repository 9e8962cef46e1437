import type * as FastCheck from 'fast-check';
import { loadOptionalPeer } from '../optional-peer';

/**
 * fast-check is an optional peer dependency of `nestjs-distributed-lock/testing` alone: it is loaded
 * when a case that needs it runs, never when the package (or the kit) is imported.
 */
export function loadFastCheck(): typeof FastCheck {
  return loadOptionalPeer<typeof FastCheck>('fast-check', {
    neededBy: 'nestjs-distributed-lock/testing: the model tests need',
    version: '4',
    install: 'npm install --save-dev fast-check@4',
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    load: () => require('fast-check'),
  });
}
