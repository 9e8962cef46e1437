import { createHash } from 'node:crypto';
import { loadPg } from './pg.loader';
import { InvalidLockOptionsError } from '../../lock.errors';
import { describeValue } from '../../lock.validation';

/** Default schema of the lease table. */
export const DEFAULT_POSTGRES_SCHEMA = 'public';
/** Default name of the lease table. */
export const DEFAULT_POSTGRES_TABLE = 'distributed_locks';

/**
 * Version of the SQL objects. Function names carry it, so two versions of the library running side
 * by side during a deploy never call each other's functions; a change to any function body bumps it.
 */
const SCHEMA_VERSION = 'v3';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_SCHEMA_BYTES = 63;
/** The table name leaves room for the suffixes of the objects derived from it (63-byte limit). */
const MAX_TABLE_BYTES = 40;

/** Where the lease table lives. */
export interface PostgresLockTableOptions {
  /** Schema of the lease table. Default `'public'`. */
  schema?: string;
  /** Name of the lease table; the queue table, sequence and functions are named after it. Default `'distributed_locks'`. */
  table?: string;
}

function checkIdentifier(what: string, value: unknown, maxBytes: number): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value) || value.length > maxBytes) {
    throw new InvalidLockOptionsError(
      `Invalid postgresBackend ${what}: expected an identifier of 1 to ${maxBytes} characters made of ASCII letters, ` +
        `digits and underscores, not starting with a digit, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * The names of every object the backend uses, quoted and qualified, derived from the schema and the
 * table name. Identifiers are validated first, then always quoted, so their case is kept as given.
 */
export class PostgresLockNames {
  readonly schema: string;
  readonly table: string;
  /** `"schema"."table"`: one row per key with its token, fence and expiry. */
  readonly leases: string;
  /** The waiters' FIFO queues, an UNLOGGED table: no WAL, emptied by a crash and rebuilt by the waiters. */
  readonly queue: string;
  /** The sequence that fences come from. */
  readonly fenceSequence: string;
  /** One durable row: every fence ever returned without its own disk flush is below `upto`. */
  readonly fenceReservation: string;
  /** One UNLOGGED row, present since the server last started cleanly: its absence means a crash. */
  readonly fenceEpoch: string;
  /** Draws a fence (see the function's comment). */
  readonly fence: string;
  readonly acquire: string;
  readonly extend: string;
  readonly release: string;
  readonly housekeep: string;
  /** The NOTIFY channel of this table (one per schema and table, so tables never wake each other). */
  readonly channel: string;
  /** Key of the transaction-level advisory lock that serialises concurrent migrations of this table. */
  readonly migrationLockKey: string;

  constructor(options: PostgresLockTableOptions = {}) {
    const { escapeIdentifier } = loadPg();
    this.schema = checkIdentifier('schema', options.schema ?? DEFAULT_POSTGRES_SCHEMA, MAX_SCHEMA_BYTES);
    this.table = checkIdentifier('table', options.table ?? DEFAULT_POSTGRES_TABLE, MAX_TABLE_BYTES);
    const qualified = (name: string): string => `${escapeIdentifier(this.schema)}.${escapeIdentifier(name)}`;
    this.leases = qualified(this.table);
    this.queue = qualified(`${this.table}_queue`);
    this.fenceSequence = qualified(`${this.table}_fence_seq`);
    this.fenceReservation = qualified(`${this.table}_fence_reservation`);
    this.fenceEpoch = qualified(`${this.table}_fence_epoch`);
    this.fence = qualified(`${this.table}_fence_${SCHEMA_VERSION}`);
    this.acquire = qualified(`${this.table}_acquire_${SCHEMA_VERSION}`);
    this.extend = qualified(`${this.table}_extend_${SCHEMA_VERSION}`);
    this.release = qualified(`${this.table}_release_${SCHEMA_VERSION}`);
    this.housekeep = qualified(`${this.table}_housekeep_${SCHEMA_VERSION}`);
    const digest = createHash('sha256').update(`${this.schema}.${this.table}`).digest('hex').slice(0, 12);
    this.channel = `${this.table}_${digest}`;
    this.migrationLockKey = `nestjs-distributed-lock:${this.schema}.${this.table}`;
  }

  /** The function signatures, as `to_regprocedure` takes them. */
  get functionSignatures(): string[] {
    return [
      `${this.fence}()`,
      `${this.acquire}(text,text,integer,integer,boolean)`,
      `${this.extend}(text[],text[],integer[],boolean)`,
      `${this.release}(text,text,boolean,text[])`,
      `${this.housekeep}(integer,integer)`,
    ];
  }

  /** The tables, as `to_regclass` takes them. */
  get tables(): string[] {
    return [this.leases, this.queue, this.fenceReservation, this.fenceEpoch];
  }
}

/**
 * The SQL that creates everything the PostgreSQL backend needs, for teams that run their own
 * migrations (`postgresBackend({ migrate: false })`). Every statement is idempotent; run it in one
 * transaction. The backend runs the same SQL at start when `migrate` is true (the default), under a
 * transaction-level advisory lock, so many instances starting at once do not trip over each other.
 */
export function postgresLockSchemaSql(options: PostgresLockTableOptions = {}): string {
  return schemaSql(new PostgresLockNames(options));
}

/** Raises `synchronous_commit` from `off` to `local` for the rest of the transaction. */
const FLUSH_AT_COMMIT = `IF current_setting('synchronous_commit') = 'off' THEN PERFORM set_config('synchronous_commit', 'local', true); END IF;`;

/**
 * Opens every lock function: with p_relaxed the transaction commits without waiting for the WAL
 * flush (the fence function still flushes when it must); otherwise it always flushes, even on a
 * server whose default is `synchronous_commit = off`.
 */
const DURABILITY = `IF p_relaxed THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  ELSE
    ${FLUSH_AT_COMMIT}
  END IF;`;

/**
 * The value of `durable_until` written by a lock function whose lease now ends at `expires`: the
 * same when the commit flushes (durability 'full'); NULL (no bound) when it may not (p_relaxed).
 */
const FLUSHED_UNTIL = (expires: string): string => `CASE WHEN p_relaxed THEN NULL ELSE ${expires} END`;

/** Fences between two durable reservations. */
const FENCE_RESERVATION_STEP = 100_000;

export function schemaSql(n: PostgresLockNames): string {
  const { escapeIdentifier, escapeLiteral } = loadPg();
  const ms = `* interval '1 millisecond'`;
  const channel = escapeLiteral(n.channel);
  const seq = escapeLiteral(n.fenceSequence);
  const orderIndex = escapeIdentifier(`${n.table}_queue_order`);
  return `-- nestjs-distributed-lock: lease table ${n.leases} (schema ${SCHEMA_VERSION})
DO $schema$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ${escapeLiteral(n.schema)}) THEN
    CREATE SCHEMA ${escapeIdentifier(n.schema)};
  END IF;
END $schema$;

-- Fences come from one sequence: they keep increasing across releases, expiries, row cleanup,
-- crashes and restarts (see the fence function).
CREATE SEQUENCE IF NOT EXISTS ${n.fenceSequence} AS bigint;

-- Every fence returned by a commit that did not wait for its WAL flush (durability 'relaxed') is
-- below upto, which is itself durable. After a crash the sequence restarts above upto.
CREATE TABLE IF NOT EXISTS ${n.fenceReservation} (
  id   boolean PRIMARY KEY DEFAULT true CHECK (id),
  upto bigint NOT NULL
);

-- UNLOGGED, so crash recovery empties it: an empty table means the server crashed (or first use).
CREATE UNLOGGED TABLE IF NOT EXISTS ${n.fenceEpoch} (
  id    boolean PRIMARY KEY DEFAULT true CHECK (id),
  since timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Draws the next fence. Call it only while holding the row lock of the lease it is for, so that the
-- grants of a key are ordered like their fences. A fence is safe to return once its transaction
-- commits: either it is below the durable reservation, or this function made the commit flush
-- (which also flushes the sequence's own WAL record that covers it).
CREATE OR REPLACE FUNCTION ${n.fence}() RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
  v_fence bigint;
  v_upto bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ${n.fenceEpoch}) THEN
    -- First use, or a crash: values drawn by commits that were not flushed may have been lost by
    -- the sequence. Restart it above the reservation, once, with a flushed commit.
    PERFORM pg_advisory_xact_lock(hashtext(${escapeLiteral(n.migrationLockKey + ':fence')}));
    IF NOT EXISTS (SELECT 1 FROM ${n.fenceEpoch}) THEN
      SELECT r.upto INTO v_upto FROM ${n.fenceReservation} r;
      IF v_upto IS NOT NULL THEN
        PERFORM setval(${seq}, greatest(v_upto, (SELECT s.last_value FROM ${n.fenceSequence} s)));
      END IF;
      INSERT INTO ${n.fenceEpoch} DEFAULT VALUES ON CONFLICT DO NOTHING;
      ${FLUSH_AT_COMMIT}
    END IF;
  END IF;
  v_fence := nextval(${seq});
  SELECT r.upto INTO v_upto FROM ${n.fenceReservation} r;
  IF v_upto IS NULL OR v_fence >= v_upto THEN
    INSERT INTO ${n.fenceReservation} AS r (id, upto) VALUES (true, v_fence + ${FENCE_RESERVATION_STEP})
      ON CONFLICT (id) DO UPDATE SET upto = greatest(r.upto, excluded.upto);
    ${FLUSH_AT_COMMIT}
  END IF;
  RETURN v_fence;
END
$fn$;

-- One row per key. token is NULL once released; expires_at is on the database clock.
-- durable_until (durability 'full'): a crash cannot bring back a state of the row whose lease ends
-- before it. It equals expires_at after a flushed commit; a hand-off that commits without waiting for
-- the flush carries the earlier bound forward (see the release function). NULL: no bound known.
CREATE TABLE IF NOT EXISTS ${n.leases} (
  key           text COLLATE "C" PRIMARY KEY,
  token         text,
  fence         bigint NOT NULL,
  expires_at    timestamptz NOT NULL,
  durable_until timestamptz
) WITH (fillfactor = 50);
ALTER TABLE ${n.leases} ADD COLUMN IF NOT EXISTS durable_until timestamptz;

-- Waiters in FIFO order. UNLOGGED: joining the queue writes no WAL and commits without a flush;
-- a crash empties it and the waiters' re-checks rebuild it.
CREATE UNLOGGED TABLE IF NOT EXISTS ${n.queue} (
  key        text COLLATE "C" NOT NULL,
  token      text COLLATE "C" NOT NULL,
  ttl        integer NOT NULL,
  joined_at  timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (key, token)
);
CREATE INDEX IF NOT EXISTS ${orderIndex} ON ${n.queue} (key, joined_at, token);

-- Takes key for token: renews it when token already holds it; grants it when it is free or expired
-- and no live waiter is queued ahead (or hands it to the oldest live waiter, notifying it);
-- otherwise answers busy, with the time left on the lease, and (p_queue not NULL) joins or
-- refreshes token's place in the queue for p_queue ms.
-- Returns fence (NULL when busy), retry_in (ms), and the waiter the key was handed to, if any.
CREATE OR REPLACE FUNCTION ${n.acquire}(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean,
    OUT fence bigint, OUT retry_in integer, OUT granted_token text, OUT granted_fence bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now timestamptz;
  v_found boolean;
  v_token text;
  v_expires timestamptz;
  v_head_token text;
  v_head_ttl integer;
  v_fence bigint;
  v_attempt integer := 0;
BEGIN
  ${DURABILITY}
  LOOP
    v_attempt := v_attempt + 1;
    EXIT WHEN v_attempt > 3;
    v_now := clock_timestamp();
    SELECT l.token, l.expires_at INTO v_token, v_expires FROM ${n.leases} l WHERE l.key = p_key;
    v_found := FOUND;
    IF v_found AND v_token IS NOT NULL AND v_expires > v_now THEN
      IF v_token <> p_token THEN
        -- Busy: a read only, plus the queue (no WAL) for a waiter.
        IF p_queue IS NOT NULL THEN
          INSERT INTO ${n.queue} AS q (key, token, ttl, joined_at, expires_at)
            VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue ${ms})
            ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at;
        END IF;
        retry_in := ceil(extract(epoch FROM v_expires - v_now) * 1000)::integer;
        RETURN;
      END IF;
      -- token holds the key already (handed over): renew.
      DELETE FROM ${n.queue} q WHERE q.key = p_key AND q.token = p_token;
      UPDATE ${n.leases} l SET expires_at = clock_timestamp() + p_ttl ${ms}, durable_until = ${FLUSHED_UNTIL('clock_timestamp() + p_ttl ' + ms)}
        WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp()
        RETURNING l.fence INTO v_fence;
      IF FOUND THEN
        fence := v_fence;
        RETURN;
      END IF;
      CONTINUE;
    END IF;

    -- Free or expired: the oldest live waiter comes first (never the holder whose lease just ended).
    SELECT q.token, q.ttl INTO v_head_token, v_head_ttl FROM ${n.queue} q
      WHERE q.key = p_key AND q.expires_at > clock_timestamp() AND q.token IS DISTINCT FROM v_token
      ORDER BY q.joined_at, q.token LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
      v_head_token := NULL;
    END IF;
    IF v_head_token IS NULL OR v_head_token = p_token THEN
      v_token := p_token;
      v_head_ttl := p_ttl;
    ELSE
      v_token := v_head_token;
    END IF;

    UPDATE ${n.leases} l SET token = v_token, fence = ${n.fence}(), expires_at = clock_timestamp() + v_head_ttl ${ms},
        durable_until = ${FLUSHED_UNTIL('clock_timestamp() + v_head_ttl ' + ms)}
      WHERE l.key = p_key AND (l.token IS NULL OR l.expires_at <= clock_timestamp())
      RETURNING l.fence INTO v_fence;
    IF NOT FOUND THEN
      IF EXISTS (SELECT 1 FROM ${n.leases} l WHERE l.key = p_key) THEN
        CONTINUE;
      END IF;
      -- Rows are deleted only long after their lease ended (housekeeping), far longer than any
      -- statement may run, so this fence cannot be older than one granted on a deleted row.
      INSERT INTO ${n.leases} AS l (key, token, fence, expires_at, durable_until)
        VALUES (p_key, v_token, ${n.fence}(), clock_timestamp() + v_head_ttl ${ms}, ${FLUSHED_UNTIL('clock_timestamp() + v_head_ttl ' + ms)})
        ON CONFLICT (key) DO NOTHING
        RETURNING l.fence INTO v_fence;
      IF NOT FOUND THEN
        CONTINUE;
      END IF;
    END IF;

    IF v_head_token IS NOT NULL THEN
      DELETE FROM ${n.queue} q WHERE q.key = p_key AND q.token = v_head_token;
    END IF;
    IF v_token = p_token THEN
      fence := v_fence;
      RETURN;
    END IF;
    -- Handed to the head of the queue; the caller waits behind it.
    PERFORM pg_notify(${channel}, 'g ' || v_fence || ' ' || v_token || ' ' || p_key);
    granted_token := v_token;
    granted_fence := v_fence;
    retry_in := v_head_ttl;
    EXIT;
  END LOOP;

  -- After the lease row, but only the caller's own queue row: a release that could lock it as the
  -- head must hold a live lease, which nobody does while this statement changes the lease row.
  IF p_queue IS NOT NULL THEN
    INSERT INTO ${n.queue} AS q (key, token, ttl, joined_at, expires_at)
      VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue ${ms})
      ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at;
  END IF;
END
$fn$;

-- Renews the leases (p_keys[i], p_tokens[i]) to p_ttls[i] ms from now where that token still holds
-- that key. Returns one boolean per item, in order.
CREATE OR REPLACE FUNCTION ${n.extend}(p_keys text[], p_tokens text[], p_ttls integer[], p_relaxed boolean)
RETURNS boolean[]
LANGUAGE plpgsql AS $fn$
DECLARE
  v_done bigint[];
BEGIN
  ${DURABILITY}
  WITH x AS (
    SELECT * FROM unnest(p_keys, p_tokens, p_ttls) WITH ORDINALITY AS x(key, token, ttl, i)
  ), done AS (
    UPDATE ${n.leases} l SET expires_at = clock_timestamp() + x.ttl ${ms}, durable_until = ${FLUSHED_UNTIL('clock_timestamp() + x.ttl ' + ms)}
      FROM x
      WHERE l.key = x.key AND l.token = x.token AND l.expires_at > clock_timestamp()
      RETURNING x.i
  )
  SELECT coalesce(array_agg(done.i), '{}') INTO v_done FROM done;
  RETURN ARRAY(SELECT i = ANY (v_done) FROM generate_series(1, coalesce(cardinality(p_keys), 0)) AS i);
END
$fn$;

-- Ends p_token's lease on p_key and leaves p_key's queue. In the same transaction it hands the key to
-- the oldest live waiter (new fence, the waiter's own ttl) and notifies it, unless it is one of
-- p_local (waiters of the calling process, which wakes them itself from this function's result), or
-- marks the key free and notifies.
-- With durability 'full', a hand-off commits without waiting for its WAL flush when the row's state
-- is covered for long enough: a crash can then lose the hand-off, but only by bringing back a state
-- whose lease lasts until durable_until, so nobody else can take the key before it. The new holder
-- is told so (granted_valid_for, ms): its lease is certain only that long until its first flushed
-- extension. Otherwise (or when the fence function must flush anyway) the commit flushes.
CREATE OR REPLACE FUNCTION ${n.release}(p_key text, p_token text, p_relaxed boolean, p_local text[],
    OUT released boolean, OUT ended_fence bigint, OUT granted_token text, OUT granted_fence bigint,
    OUT granted_valid_for integer)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_head_token text;
  v_head_ttl integer;
  v_fence bigint;
  v_expires timestamptz;
  v_durable timestamptz;
  v_bound timestamptz;
BEGIN
  ${DURABILITY}
  -- Row locks are always taken queue rows first, lease row last (in every function).
  -- Leaving the queue comes first: a hand-off to p_token that is under way holds its queue row, so
  -- it commits before this goes on, and the check below then sees p_token as the holder.
  DELETE FROM ${n.queue} q WHERE q.key = p_key AND q.token = p_token;
  -- A token that holds no live lease (a waiter giving up) only leaves the queue: it locks no other
  -- row and waits for nothing after its own row, so give-ups never wait on each other.
  IF NOT EXISTS (SELECT 1 FROM ${n.leases} l WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp()) THEN
    released := false;
    RETURN;
  END IF;
  -- The oldest live waiter, locked so that it cannot leave the queue under the hand-off.
  SELECT q.token, q.ttl INTO v_head_token, v_head_ttl FROM ${n.queue} q
    WHERE q.key = p_key AND q.token <> p_token AND q.expires_at > clock_timestamp()
    ORDER BY q.joined_at, q.token LIMIT 1 FOR UPDATE;
  IF v_head_token IS NOT NULL AND NOT p_relaxed THEN
    SELECT l.expires_at, l.durable_until INTO v_expires, v_durable FROM ${n.leases} l
      WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp() FOR UPDATE;
    -- Covered for at least two thirds of the new holder's ttl: its watchdog extends (flushed) at a third.
    IF v_durable IS NOT NULL AND least(v_durable, v_expires) >= clock_timestamp() + (v_head_ttl * 2 / 3) ${ms} THEN
      v_bound := least(v_durable, v_expires);
      PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
  END IF;
  -- One update ends the lease and, with a waiter, starts the waiter's (new fence, its own ttl). The
  -- fence function may raise synchronous_commit again: the commit then flushes, and v_bound stays a
  -- safe (early) bound.
  UPDATE ${n.leases} l SET
      token = v_head_token,
      fence = CASE WHEN v_head_token IS NULL THEN l.fence ELSE ${n.fence}() END,
      expires_at = clock_timestamp() + coalesce(v_head_ttl, 0) ${ms},
      durable_until = coalesce(v_bound, ${FLUSHED_UNTIL('clock_timestamp() + coalesce(v_head_ttl, 0) ' + ms)})
    WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp()
    RETURNING l.fence INTO v_fence;
  released := FOUND;
  IF NOT released THEN
    RETURN;
  END IF;
  IF v_head_token IS NOT NULL THEN
    DELETE FROM ${n.queue} q WHERE q.key = p_key AND q.token = v_head_token;
    granted_token := v_head_token;
    granted_fence := v_fence;
    IF v_bound IS NOT NULL THEN
      granted_valid_for := greatest(0, floor(extract(epoch FROM v_bound - clock_timestamp()) * 1000))::integer;
    END IF;
    IF p_local IS NULL OR NOT v_head_token = ANY (p_local) THEN
      PERFORM pg_notify(${channel}, 'g ' || v_fence || ' ' || v_head_token || coalesce('/' || granted_valid_for, '') || ' ' || p_key);
    END IF;
  ELSE
    ended_fence := v_fence;
    PERFORM pg_notify(${channel}, 'r ' || v_fence || ' ' || p_key);
  END IF;
END
$fn$;

-- Deletes up to p_limit lease rows whose lease ended more than p_grace ms ago, and up to p_limit
-- queue places that lapsed as long ago (one batch: the backend calls it until a batch comes back
-- short). Rows locked by a lock statement are skipped. Fences stay safe: they come from the
-- sequence, not from the rows.
CREATE OR REPLACE FUNCTION ${n.housekeep}(p_grace integer, p_limit integer, OUT leases integer, OUT waiters integer)
LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM ${n.leases} l WHERE l.ctid = ANY (ARRAY(
    SELECT c.ctid FROM ${n.leases} c
      WHERE c.expires_at < clock_timestamp() - p_grace ${ms}
      LIMIT p_limit FOR UPDATE SKIP LOCKED));
  GET DIAGNOSTICS leases = ROW_COUNT;
  DELETE FROM ${n.queue} q WHERE q.ctid = ANY (ARRAY(
    SELECT c.ctid FROM ${n.queue} c
      WHERE c.expires_at < clock_timestamp() - p_grace ${ms}
      LIMIT p_limit FOR UPDATE SKIP LOCKED));
  GET DIAGNOSTICS waiters = ROW_COUNT;
END
$fn$;
`;
}
