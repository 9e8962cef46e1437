-- :flush() returns text (ignored)
--
-- Makes the calling transaction's commit wait for its WAL flush: raises synchronous_commit from
-- 'off' to 'local' for the rest of the transaction (a stricter setting, such as 'on' or
-- 'remote_apply', is left as it is). Called by the fence function when a fence must be on disk
-- before it is returned. One SELECT in LANGUAGE sql, inlined by the planner (see :durable).
--
-- Locks: none.
CREATE OR REPLACE FUNCTION :flush() RETURNS text
LANGUAGE sql AS $fn$
  SELECT CASE
    WHEN current_setting('synchronous_commit') = 'off' THEN set_config('synchronous_commit', 'local', true)
  END
$fn$;
