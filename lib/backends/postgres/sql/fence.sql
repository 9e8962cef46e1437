-- :fence() returns bigint
--
-- Draws the next fence. Call it only while holding the row lock of the lease it is for, so that the
-- grants of a key are ordered like their fences. A fence is safe to return once its transaction
-- commits: either it is below the durable reservation, or this function made the commit flush
-- (which also flushes the sequence's own WAL record that covers it).
--
-- Locks: only under the caller's lease row lock. On first use or after a crash, a transaction-level
-- advisory lock, then the epoch row; the reservation row when the fence reaches it.
CREATE OR REPLACE FUNCTION :fence() RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
  v_fence bigint;
  v_upto bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM :fence_epoch) THEN
    -- First use, or a crash: values drawn by commits that were not flushed may have been lost by
    -- the sequence. Restart it above the reservation, once, with a flushed commit.
    PERFORM pg_advisory_xact_lock(hashtext(:'fence_lock'));
    IF NOT EXISTS (SELECT 1 FROM :fence_epoch) THEN
      SELECT r.upto INTO v_upto FROM :fence_reservation r;
      IF v_upto IS NOT NULL THEN
        PERFORM setval(:'fence_seq', greatest(v_upto, (SELECT s.last_value FROM :fence_seq s)));
      END IF;
      INSERT INTO :fence_epoch DEFAULT VALUES ON CONFLICT DO NOTHING;
      PERFORM :flush();
    END IF;
  END IF;
  v_fence := nextval(:'fence_seq');
  SELECT r.upto INTO v_upto FROM :fence_reservation r;
  -- Fences between two durable reservations: 100000.
  IF v_upto IS NULL OR v_fence >= v_upto THEN
    INSERT INTO :fence_reservation AS r (id, upto) VALUES (true, v_fence + 100000)
      ON CONFLICT (id) DO UPDATE SET upto = greatest(r.upto, excluded.upto);
    PERFORM :flush();
  END IF;
  RETURN v_fence;
END
$fn$;
