-- :housekeep(p_grace integer, p_limit integer) returns (leases integer, waiters integer, holders integer)
--
-- Deletes up to p_limit lease rows whose lease ended more than p_grace ms ago, up to p_limit queue
-- places that lapsed as long ago, and up to p_limit leases of shared or limited holders that ended
-- as long ago (one batch: the backend calls it until a batch comes back short). Returns how many of
-- each it deleted. Fences stay safe: they come from the sequence, not from the rows. A lease row of
-- a key held shared or limited ends no earlier than any of its holders' leases, so it outlives them.
--
-- Locks: lease rows, then queue rows, then holder rows, each with SKIP LOCKED: rows locked by a lock
-- statement are skipped, never waited for.
CREATE OR REPLACE FUNCTION :housekeep(p_grace integer, p_limit integer,
    OUT leases integer, OUT waiters integer, OUT holders integer)
LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM :leases l WHERE l.ctid = ANY (ARRAY(
    SELECT c.ctid FROM :leases c
      WHERE c.expires_at < clock_timestamp() - p_grace * interval '1 millisecond'
      LIMIT p_limit FOR UPDATE SKIP LOCKED));
  GET DIAGNOSTICS leases = ROW_COUNT;
  DELETE FROM :queue q WHERE q.ctid = ANY (ARRAY(
    SELECT c.ctid FROM :queue c
      WHERE c.expires_at < clock_timestamp() - p_grace * interval '1 millisecond'
      LIMIT p_limit FOR UPDATE SKIP LOCKED));
  GET DIAGNOSTICS waiters = ROW_COUNT;
  DELETE FROM :holders h WHERE h.ctid = ANY (ARRAY(
    SELECT c.ctid FROM :holders c
      WHERE c.expires_at < clock_timestamp() - p_grace * interval '1 millisecond'
      LIMIT p_limit FOR UPDATE SKIP LOCKED));
  GET DIAGNOSTICS holders = ROW_COUNT;
END
$fn$;
