-- :notify(p_key text, p_fence bigint, p_token text, p_valid_for integer) returns void
--
-- Sends the one notification of a lock event on the table's channel. The payload is parsed by
-- postgres-notification.payload.ts, next to this file; change both together.
--   p_token NULL:     'r <fence> <key>'                      the key was released, nobody waiting
--   p_token not NULL: 'g <fence> <token>[/<valid for>] <key>' the key was handed to p_token with
--                     fence p_fence; '/<valid for>' (ms) only when p_valid_for is not NULL
-- The key comes last and may contain anything (spaces, newlines); tokens and fences hold no space.
--
-- One SELECT in LANGUAGE sql, inlined by the planner into the caller's PERFORM (see :durable).
--
-- Locks: no row lock. The payload is queued and sent at commit, where PostgreSQL serialises the
-- commits of all notifying transactions on one lock of its notification queue.
CREATE OR REPLACE FUNCTION :notify(p_key text, p_fence bigint, p_token text, p_valid_for integer) RETURNS void
LANGUAGE sql AS $fn$
  SELECT pg_notify(:'channel', CASE
    WHEN p_token IS NULL THEN 'r ' || p_fence || ' ' || p_key
    ELSE 'g ' || p_fence || ' ' || p_token || coalesce('/' || p_valid_for, '') || ' ' || p_key
  END)
$fn$;
