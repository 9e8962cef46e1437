import type { Logger } from '@nestjs/common';
import type { ClientConfig, Pool, PoolClient, PoolConfig } from 'pg';
import { loadPg } from './pg.loader';
import type { ResolvedPostgresOptions } from './postgres-lock.options';

/** Where the backend's statements go, as error messages may show it (never a password). */
export interface PostgresTarget {
  host: string;
  port: number;
  database: string;
  user: string;
}

/** The connections of one backend: the pool its statements go through, and where its LISTEN connection goes. */
export interface PostgresConnections {
  pool: Pool;
  /** True when the backend opened the pool (and ends it at close); a pool of the user's is never ended. */
  ownsPool: boolean;
  /** Settings of the LISTEN connection, before the backend adds its own (timeout, keepAlive, application_name). */
  listen: ClientConfig;
  target: PostgresTarget;
  /**
   * Resolves once every connection the backend's own pool opened has closed (at once for a user's
   * pool, which the backend does not end). pg-pool's `end()` resolves as soon as it has asked its
   * connections to end, before the server has closed them: until then their sockets stay open.
   */
  closed(): Promise<void>;
}

/**
 * Opens the backend's pool, or takes the user's. The settings of a user's pool are read from
 * `pool.options`, which pg-pool keeps (a copy of what the pool was made with, the password not
 * enumerable) and `@types/pg` declares on `Pool`: the only public way to learn where a given pool
 * goes. They serve as the default LISTEN settings and to name the server in messages.
 */
export function openConnections(options: ResolvedPostgresOptions, logger: Logger): PostgresConnections {
  if (options.pool) {
    const pool = options.pool;
    const settings: PoolConfig = pool.options ?? {};
    // pg-pool keeps the password there as a non-enumerable property: a copy must name it.
    const listen = options.listen ?? { ...settings, password: settings.password };
    return { pool, ownsPool: false, listen, target: describeTarget(settings), closed: () => Promise.resolve() };
  }
  const config: PoolConfig = {
    max: 10,
    connectionTimeoutMillis: 5_000,
    application_name: options.applicationName,
    keepAlive: true,
    ...options.connection,
  };
  const pool = new (loadPg().Pool)(config);
  // Idle connections may be terminated by the server; the pool drops them and opens new ones.
  pool.on('error', (error) => logger.warn(`An idle PostgreSQL connection failed: ${error.message}`));
  // A connection counts as open from its 'connect' until its socket has closed ('end').
  const open = new Set<PoolClient>();
  const whenClosed: Array<() => void> = [];
  pool.on('connect', (client) => {
    open.add(client);
    client.once('end', () => {
      open.delete(client);
      if (open.size === 0) for (const resolve of whenClosed.splice(0)) resolve();
    });
  });
  const closed = (): Promise<void> =>
    open.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => whenClosed.push(resolve));
  return {
    pool,
    ownsPool: true,
    listen: options.listen ?? config,
    target: describeTarget(options.connection),
    closed,
  };
}

/**
 * Host, port, database and user of connection settings, with pg's own defaults and environment
 * variables (PGHOST, PGUSER, …) applied as they will be when connecting: read from a `pg.Client`
 * made with them and never connected.
 */
export function describeTarget(settings: ClientConfig | undefined): PostgresTarget {
  const client = new (loadPg().Client)(settings);
  return { host: client.host, port: client.port, database: client.database ?? '', user: client.user ?? '' };
}

/** Where the statements go, as messages show it (never a password). */
export function describeWhere({ host, port, database, user }: PostgresTarget): string {
  return `PostgreSQL at ${host}:${port}, database "${database}", user "${user}"`;
}
