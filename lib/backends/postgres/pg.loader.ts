import type * as Pg from 'pg';
import { loadOptionalPeer } from '../../optional-peer';

/**
 * `pg` is an optional peer dependency: it is loaded when a PostgreSQL backend is made, never when
 * the package is imported, so apps on another backend need not install it.
 */
export function loadPg(): typeof Pg {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return loadOptionalPeer<typeof Pg>('pg', { neededBy: 'postgresBackend needs', load: () => require('pg') });
}
