-- :durable(p_relaxed boolean) returns text (ignored)
--
-- Opens every lock function: sets how the calling transaction commits. With p_relaxed (durability
-- 'relaxed') it commits without waiting for the WAL flush (the fence function still flushes when it
-- must); otherwise it always flushes, even on a server whose default is synchronous_commit = off
-- (as :flush does).
--
-- One SELECT in LANGUAGE sql, so that the planner inlines it into the caller's PERFORM: a PL/pgSQL
-- call costs about 2 us more in every lock statement.
--
-- Locks: none.
CREATE OR REPLACE FUNCTION :durable(p_relaxed boolean) RETURNS text
LANGUAGE sql AS $fn$
  SELECT CASE
    WHEN p_relaxed THEN set_config('synchronous_commit', 'off', true)
    WHEN current_setting('synchronous_commit') = 'off' THEN set_config('synchronous_commit', 'local', true)
  END
$fn$;
