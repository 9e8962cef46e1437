import { loadOptionalPeer } from '../../optional-peer';

type Ioredis = typeof import('ioredis');

/** ioredis is an optional peer dependency: loaded only when a Redis backend opens a connection. */
export function loadIoredis(): Ioredis {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return loadOptionalPeer<Ioredis>('ioredis', { neededBy: 'redisBackend needs', load: () => require('ioredis') });
}
