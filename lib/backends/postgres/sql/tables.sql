-- The schema, tables, sequence and index of one lease table (the functions are in the other files
-- of this folder). Every statement is idempotent. Object names are placeholders, a colon before a
-- name, filled in by the loader (postgres-lock.sql.ts), which documents them.
--
-- Lock order: the lease row of a key is its point of serialisation. Every change of who holds a key
-- (a grant, a hand-off, a release, an expiry settled) is made under that row's lock, taken first;
-- a hand-off then takes its waiters out of the queue (queue rows after the lease row), and the
-- holder rows of the key are written only under the lease row's lock (an extension of a shared or
-- limited holder takes it too, in key order). A transaction that locks a queue row without holding
-- the lease row (a waiter joining, refreshing or leaving its place) waits for no other row after it,
-- except a holder's own release or renewal, whose queue row no hand-off takes (a current holder is
-- never handed the key). The fence function runs under its caller's lease row lock and locks only
-- rows of its own one-row tables (and, after a crash, an advisory lock). Housekeeping locks with
-- SKIP LOCKED, so it never waits for a row.

-- CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database even when the schema
-- exists: look first.
DO $schema$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :'schema_name') THEN
    CREATE SCHEMA :schema;
  END IF;
END $schema$;

-- Fences come from one sequence: they keep increasing across releases, expiries, row cleanup,
-- crashes and restarts (see the fence function).
CREATE SEQUENCE IF NOT EXISTS :fence_seq AS bigint;

-- Every fence returned by a commit that did not wait for its WAL flush (durability 'relaxed') is
-- below upto, which is itself durable. After a crash the sequence restarts above upto.
CREATE TABLE IF NOT EXISTS :fence_reservation (
  id   boolean PRIMARY KEY DEFAULT true CHECK (id),
  upto bigint NOT NULL
);

-- UNLOGGED, so crash recovery empties it: an empty table means the server crashed (or first use).
CREATE UNLOGGED TABLE IF NOT EXISTS :fence_epoch (
  id    boolean PRIMARY KEY DEFAULT true CHECK (id),
  since timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per key. token is NULL once released; expires_at is on the database clock.
-- While shared or limited holders (rule 7 of the SPI) hold the key, token is how they hold it,
-- 'shared' or 'limit:<n>' (never a token: tokens are 32 hex digits), fence the last fence granted,
-- and expires_at no earlier than the end of any holder's lease (their leases are in the holders
-- table): a version of this library that knows only exclusive leases sees the key held until then.
-- durable_until (durability 'full'): a crash cannot bring back a state of the row whose lease ends
-- before it. It equals expires_at after a flushed commit; a hand-off that commits without waiting for
-- the flush carries the earlier bound forward (see the release function). NULL: no bound known.
CREATE TABLE IF NOT EXISTS :leases (
  key           text COLLATE "C" PRIMARY KEY,
  token         text,
  fence         bigint NOT NULL,
  expires_at    timestamptz NOT NULL,
  durable_until timestamptz
) WITH (fillfactor = 50);
ALTER TABLE :leases ADD COLUMN IF NOT EXISTS durable_until timestamptz;

-- The shared or limited holders of keys whose lease row's token says so, one row per holder, with
-- its own fence and lease (on the database clock). Written only under the lease row's lock (but
-- for housekeeping, which deletes leases that ended long ago).
CREATE TABLE IF NOT EXISTS :holders (
  key        text COLLATE "C" NOT NULL,
  token      text COLLATE "C" NOT NULL,
  fence      bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (key, token)
) WITH (fillfactor = 50);

-- Waiters in FIFO order. sharing: how the waiter asks for the key, NULL (exclusive), 'shared' or
-- 'limit:<n>'. UNLOGGED: joining the queue writes no WAL and commits without a flush;
-- a crash empties it and the waiters' re-checks rebuild it.
CREATE UNLOGGED TABLE IF NOT EXISTS :queue (
  key        text COLLATE "C" NOT NULL,
  token      text COLLATE "C" NOT NULL,
  ttl        integer NOT NULL,
  joined_at  timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  sharing    text,
  PRIMARY KEY (key, token)
);
ALTER TABLE :queue ADD COLUMN IF NOT EXISTS sharing text;
CREATE INDEX IF NOT EXISTS :queue_order ON :queue (key, joined_at, token);
