-- :durable(p_relaxed boolean) returns void
--
-- Opens every lock function: sets how the calling transaction commits. With p_relaxed (durability
-- 'relaxed') it commits without waiting for the WAL flush (the fence function still flushes when it
-- must); otherwise it always flushes, even on a server whose default is synchronous_commit = off.
--
-- Locks: none.
CREATE OR REPLACE FUNCTION :durable(p_relaxed boolean) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF p_relaxed THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  ELSE
    PERFORM :flush();
  END IF;
END
$fn$;
