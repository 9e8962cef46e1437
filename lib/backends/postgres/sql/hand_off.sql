-- :hand_off(p_key text, p_relaxed boolean, p_local text[], p_skip text)
--   returns (tokens text[], fences bigint[])
--
-- Settles p_key and hands it on, under the lock of its lease row, which the caller holds (rule 7 of
-- the SPI: several waiters may take a key together). Does nothing while an exclusive lease is live.
-- Otherwise it ends an expired exclusive lease and the expired leases of shared or limited holders,
-- then gives the key to the oldest live waiters, in order, as many as may hold it together with the
-- holders left (one exclusive waiter; a run of shared waiters; waiters of the key's limit up to the
-- limit), stopping at the first that may not. Each gets a new fence and the ttl it asked for, leaves
-- the queue and is notified, unless it is one of p_local. Never handed the key: p_skip (a token that
-- is releasing), the holder whose lease just ended, and tokens that hold it now (a stale queue place
-- of a holder). A waiter that left the queue meanwhile is passed over. A commit of a hand-off made
-- here flushes (durability 'full'): durable_until is then the new end; p_relaxed: NULL (unknown).
--
-- Returns the tokens handed the key, in order, and their fences (empty arrays: none).
--
-- Locks: only under the caller's lease row lock: the queue rows of the waiters handed the key, and
-- holder rows of p_key.
CREATE OR REPLACE FUNCTION :hand_off(p_key text, p_relaxed boolean, p_local text[], p_skip text,
    OUT tokens text[], OUT fences bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_token text;
  v_old_token text;
  v_expires timestamptz;
  v_fence bigint;
  v_sharing text;
  v_count integer := 0;
  v_end timestamptz;
  v_changed boolean := false;
  w record;
BEGIN
  tokens := '{}';
  fences := '{}';
  SELECT l.token, l.expires_at, l.fence INTO v_token, v_expires, v_fence FROM :leases l WHERE l.key = p_key;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  v_old_token := v_token;
  IF v_token = 'shared' OR v_token LIKE 'limit:%' THEN
    v_sharing := v_token;
    DELETE FROM :holders h WHERE h.key = p_key AND h.expires_at <= clock_timestamp();
    SELECT count(*) INTO v_count FROM :holders h WHERE h.key = p_key;
    IF v_count = 0 THEN
      v_sharing := NULL;
      v_token := NULL;
    END IF;
  ELSIF v_token IS NOT NULL THEN
    IF v_expires > clock_timestamp() THEN
      RETURN;
    END IF;
    v_token := NULL;
  END IF;

  FOR w IN
    SELECT q.token, q.ttl, q.sharing FROM :queue q
      WHERE q.key = p_key AND q.expires_at > clock_timestamp()
        AND q.token IS DISTINCT FROM v_old_token AND q.token IS DISTINCT FROM p_skip
        AND NOT EXISTS (SELECT 1 FROM :holders h WHERE h.key = p_key AND h.token = q.token)
      ORDER BY q.joined_at, q.token
  LOOP
    -- Whether w may hold the key together with the holders it has now.
    IF w.sharing IS NULL THEN
      EXIT WHEN v_count > 0;
    ELSIF v_count > 0 THEN
      EXIT WHEN w.sharing IS DISTINCT FROM v_sharing;
      EXIT WHEN w.sharing <> 'shared' AND v_count >= substr(w.sharing, 7)::integer;
    END IF;
    DELETE FROM :queue q WHERE q.key = p_key AND q.token = w.token;
    CONTINUE WHEN NOT FOUND;
    v_fence := :fence();
    v_end := clock_timestamp() + w.ttl * interval '1 millisecond';
    tokens := tokens || w.token;
    fences := fences || v_fence;
    v_changed := true;
    IF p_local IS NULL OR NOT w.token = ANY (p_local) THEN
      PERFORM :notify(p_key, v_fence, w.token, NULL);
    END IF;
    IF w.sharing IS NULL THEN
      v_token := w.token;
      v_expires := v_end;
      EXIT;
    END IF;
    INSERT INTO :holders AS h (key, token, fence, expires_at) VALUES (p_key, w.token, v_fence, v_end)
      ON CONFLICT (key, token) DO UPDATE SET fence = excluded.fence, expires_at = excluded.expires_at;
    -- The lease row's end stays no earlier than any holder's.
    v_expires := CASE WHEN v_sharing IS NULL THEN v_end ELSE greatest(v_expires, v_end) END;
    v_sharing := w.sharing;
    v_token := w.sharing;
    v_count := v_count + 1;
  END LOOP;

  IF v_changed OR v_token IS DISTINCT FROM v_old_token THEN
    UPDATE :leases l SET token = v_token, fence = v_fence, expires_at = v_expires,
        durable_until = CASE WHEN v_token IS NOT NULL AND v_sharing IS NULL AND NOT p_relaxed THEN v_expires END
      WHERE l.key = p_key;
  END IF;
END
$fn$;
