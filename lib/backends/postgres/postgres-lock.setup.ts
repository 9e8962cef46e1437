import type { Logger } from '@nestjs/common';
import type { QueryResult } from 'pg';
import { openConnections, type PostgresConnections } from './postgres-connections';
import { PostgresLockEvents } from './postgres-lock.events';
import type { ResolvedPostgresOptions } from './postgres-lock.options';
import { PostgresLockSchema } from './postgres-lock.schema';
import { PostgresLockStatements } from './postgres-lock.statements';
import { PostgresStatementRunner } from './postgres-statement-runner';

/** What the parts of a backend call back into it for. */
export interface PostgresLockHost {
  /** True once the backend was closed. */
  isClosed(): boolean;
  /** Sends one statement that takes no lock (no start, no retry), bounded by `timeout` when given. */
  send(text: string, timeout?: number): Promise<QueryResult>;
  /** Sends one statement that takes no lock after start, retried once on a lost connection. */
  run(text: string): Promise<QueryResult>;
  /** A notification said `key` was handed to `token` (of this process or another). */
  granted(key: string, token: string): void;
}

/** The parts of one backend: its statements, connections, statement runner, schema and events. */
export interface PostgresLockParts {
  statements: PostgresLockStatements;
  connections: PostgresConnections;
  runner: PostgresStatementRunner;
  schema: PostgresLockSchema;
  events: PostgresLockEvents;
}

/**
 * Makes the parts of a backend from its options: the statements, the pool (opened, or the user's)
 * and where it goes, the runner that sends statements through it, the schema management, and the
 * lock events with the settings of their LISTEN connection.
 */
export function setUpPostgresLock(
  options: ResolvedPostgresOptions,
  logger: Logger,
  host: PostgresLockHost,
): PostgresLockParts {
  const names = options.names;
  const statements = new PostgresLockStatements(names, options.statementTimeout, options.durability === 'relaxed');
  const connections = openConnections(options, logger);
  const target = connections.target;
  const runner = new PostgresStatementRunner(connections.pool, target, names, options.statementTimeout, () =>
    host.isClosed(),
  );
  const schema = new PostgresLockSchema({
    names,
    statements,
    migrate: options.migrate,
    statementTimeout: options.statementTimeout,
    housekeepingInterval: options.housekeepingInterval,
    database: target.database,
    send: (text, timeout) => host.send(text, timeout),
    run: (text) => host.run(text),
    isClosed: () => host.isClosed(),
    logger,
  });
  const events = new PostgresLockEvents({
    listen: {
      connectionTimeoutMillis: 5_000,
      keepAlive: true,
      ...connections.listen,
      application_name: `${options.applicationName}/listen`,
    },
    channel: names.channel,
    target,
    recheckInterval: options.recheckInterval,
    sendProbe: async (payload) => {
      await host.send(statements.probe(payload));
    },
    granted: (key, token) => host.granted(key, token),
    logger,
  });
  return { statements, connections, runner, schema, events };
}
