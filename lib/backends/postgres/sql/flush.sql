-- :flush() returns void
--
-- Makes the calling transaction's commit wait for its WAL flush: raises synchronous_commit from
-- 'off' to 'local' for the rest of the transaction (a stricter setting, such as 'on' or
-- 'remote_apply', is left as it is). Called by the fence function when a fence must be on disk
-- before it is returned, and by :durable for durability 'full'.
--
-- Locks: none.
CREATE OR REPLACE FUNCTION :flush() RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF current_setting('synchronous_commit') = 'off' THEN
    PERFORM set_config('synchronous_commit', 'local', true);
  END IF;
END
$fn$;
