import { randomBytes } from 'node:crypto';
import { Client, type Notification } from 'pg';
import type { LockEvent } from '../../../lib/backends/lock-backend';
import { PostgresLockNames } from '../../../lib/backends/postgres/postgres-lock.names';
import { PostgresLockStatements } from '../../../lib/backends/postgres/postgres-lock.statements';
import {
  notificationId,
  parseLockNotification,
  PROBE_PREFIX,
} from '../../../lib/backends/postgres/postgres-notification.payload';
import { postgresLockSchemaSql } from '../../../lib/postgres';
import { dropSchema, sharedDatabaseUrl, uniqueSchemaName } from '../../support/postgres-database';
import { eventually } from '../../support/time';

// The payloads of lock events are written by sql/notify.sql and read by postgres-notification.payload.ts:
// these tests send them with the real SQL on a real server and parse what arrives.
const url = sharedDatabaseUrl();
const schema = uniqueSchemaName('dl_payload');
const names = new PostgresLockNames({ schema });
const statements = new PostgresLockStatements(names, 5_000, false);
let sender: Client;
let listener: Client;
const received: string[] = [];

beforeAll(async () => {
  sender = new Client({ connectionString: url, application_name: 'dl-test-payload' });
  listener = new Client({ connectionString: url, application_name: 'dl-test-payload' });
  await Promise.all([sender.connect(), listener.connect()]);
  await sender.query(postgresLockSchemaSql({ schema }));
  listener.on('notification', (message: Notification) => {
    if (message.channel === names.channel && message.payload !== undefined) received.push(message.payload);
  });
  await listener.query(`LISTEN "${names.channel}"`);
});

afterAll(async () => {
  await Promise.all([sender?.end(), listener?.end()]);
  await dropSchema(url, schema);
});

/** Runs one simple query (several statements) and returns the rows of the last one. */
async function lastRows(text: string): Promise<Array<Record<string, unknown>>> {
  const results = (await sender.query(text)) as unknown as Array<{ rows: Array<Record<string, unknown>> }>;
  return results[results.length - 1].rows;
}

/** The next payload on the channel, once it arrived. */
function nextPayload(): Promise<string> {
  return eventually(() => received.shift(), { within: 10_000, what: 'a notification on the lock channel' });
}

const token = (): string => randomBytes(16).toString('hex');

const KEYS = [
  'plain',
  'a key with  spaces ',
  ' leading space',
  'line one\nline two\r\n',
  '🔒 lock 🗝️ 👩‍👩‍👧',
  'looks like a payload: g 12 abc/34 other',
  'quotes \' " and back\\slash / slash',
];

describe('lock notification payloads, written by sql/notify.sql and parsed by the codec', () => {
  it.each(KEYS)('a release with nobody waiting, key %j', async (key) => {
    await sender.query(`SELECT ${names.functions.notify}($1, $2, NULL, NULL)`, [key, '42']);
    const payload = await nextPayload();
    const parsed = parseLockNotification(payload);
    expect(parsed).toEqual({ event: { type: 'released', key }, fence: '42' });
    const local: LockEvent = { type: 'released', key };
    expect(notificationId(parsed!.event, parsed!.fence)).toBe(notificationId(local, '42'));
  });

  it.each(KEYS)('a hand-off, key %j', async (key) => {
    const to = token();
    // Beyond 2^53: fences are bigints all the way.
    const fence = '9007199254740993';
    await sender.query(`SELECT ${names.functions.notify}($1, $2, $3, NULL)`, [key, fence, to]);
    const parsed = parseLockNotification(await nextPayload());
    expect(parsed).toEqual({ event: { type: 'granted', key, token: to, fence: 9007199254740993n }, fence });
    const local: LockEvent = { type: 'granted', key, token: to, fence: BigInt(fence) };
    expect(notificationId(parsed!.event, parsed!.fence)).toBe(notificationId(local, fence));
  });

  it.each([
    [KEYS[3], 0],
    [KEYS[4], 1_234],
    [KEYS[5], 2_147_483_647],
  ])('a hand-off with a valid-for suffix, key %j, valid for %p ms', async (key, validFor) => {
    const to = token();
    await sender.query(`SELECT ${names.functions.notify}($1, $2, $3, $4)`, [key, '7', to, validFor]);
    const payload = await nextPayload();
    expect(payload.startsWith(`g 7 ${to}/${validFor} `)).toBe(true);
    expect(parseLockNotification(payload)).toEqual({
      event: { type: 'granted', key, token: to, fence: 7n, validFor },
      fence: '7',
    });
  });

  it('carries the payloads of the real release function: a release, and a hand-off that did not wait for its flush', async () => {
    const key = `🔒 real release\n${randomBytes(3).toString('hex')}`;
    const holder = token();
    const [granted] = await lastRows(statements.acquire(key, holder, 60_000));
    expect(granted.fence).not.toBeNull();
    await lastRows(statements.release(key, holder));
    const released = parseLockNotification(await nextPayload());
    expect(released).toEqual({ event: { type: 'released', key }, fence: String(granted.fence) });

    // A waiter with a short ttl behind a holder whose flushed lease covers it: the hand-off commits
    // without waiting for the flush and says how long the new lease is certain.
    const next = token();
    const waiter = token();
    const [first] = await lastRows(statements.acquire(key, next, 60_000));
    expect(first.fence).not.toBeNull();
    const [busy] = await lastRows(statements.acquire(key, waiter, 3_000, 10_000));
    expect(busy.fence).toBeNull();
    const [handOff] = await lastRows(statements.release(key, next));
    expect(handOff).toMatchObject({ released: true, granted_token: waiter });
    expect(handOff.granted_valid_for).not.toBeNull();
    const parsed = parseLockNotification(await nextPayload());
    expect(parsed).toEqual({
      event: {
        type: 'granted',
        key,
        token: waiter,
        fence: BigInt(handOff.granted_fence as string),
        validFor: handOff.granted_valid_for,
      },
      fence: handOff.granted_fence,
    });
    await lastRows(statements.release(key, waiter));
    expect(parseLockNotification(await nextPayload())?.event).toEqual({ type: 'released', key });
  });

  it('reads nothing else as an event: probes and malformed payloads', () => {
    for (const payload of [
      `${PROBE_PREFIX}0123abcd`,
      '',
      'g',
      'g 12',
      'g 12 token',
      'g x1 token key',
      'g 1 token/1.5 key',
      'x 1 key',
      'r 5',
    ]) {
      expect(parseLockNotification(payload)).toBeUndefined();
    }
  });
});
