import type * as Pg from 'pg';
import { LockBackendError } from '../../lock.errors';

let loaded: typeof Pg | undefined;

/**
 * `pg` is an optional peer dependency: it is loaded when a PostgreSQL backend is made, never when
 * the package is imported, so apps on another backend need not install it.
 */
export function loadPg(): typeof Pg {
  if (!loaded) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = require('pg') as typeof Pg;
    } catch (error) {
      throw new LockBackendError(
        'postgres',
        'the "pg" package is not installed: run `npm install pg` to use postgresBackend',
        {
          cause: error,
        },
      );
    }
  }
  return loaded;
}
