-- :take(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean, p_mode text)
--   returns (fence bigint, retry_in integer, held_with text, tokens text[], fences bigint[])
--
-- The acquire function's attempt when p_key is, or may become, held by several holders (rule 7 of
-- the SPI): p_mode is 'shared' or 'limit:<n>', or p_key is held shared or limited, or its oldest
-- waiter asks so; p_mode NULL: exclusive. Under the lease row's lock (the row is made, free, when
-- missing) it settles the key and hands it on (see the hand-off function), then, as the memory
-- backend does:
-- - p_token holds the key (exclusively or not): renews its lease to p_ttl ms from now.
-- - the key is held in a way p_mode cannot share whatever its holders do (held with a limit and
--   asked for with another limit, shared or exclusive; asked for with a limit and held exclusive or
--   shared): busy, held_with says how it is held ('exclusive', 'shared' or 'limit:<n>'), and p_token
--   leaves the queue rather than join it.
-- - free enough for p_mode (no exclusive holder; only shared holders for 'shared'; fewer than n
--   holders of limit n), and no other live waiter queued (so a queued writer is never overtaken):
--   grants it with a new fence (one sequence for every mode).
-- - otherwise busy, and (p_queue not NULL) p_token joins or refreshes its place in the queue, asking
--   for p_mode, for p_queue ms.
-- retry_in (ms): time left until the first lease of the key ends (0: none). tokens, fences: the
-- waiters the settlement handed the key to, other than p_token, notified.
--
-- Locks: the lease row first; then, under it, queue and holder rows of p_key (see the hand-off
-- function) and p_token's own queue and holder rows.
CREATE OR REPLACE FUNCTION :take(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean,
    p_mode text, OUT fence bigint, OUT retry_in integer, OUT held_with text, OUT tokens text[], OUT fences bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_token text;
  v_expires timestamptz;
  v_fence bigint;
  v_sharing text;
  v_wanted text;
  v_count integer := 0;
  v_first timestamptz;
  v_end timestamptz;
  v_at integer;
  v_attempt integer := 0;
BEGIN
  LOOP
    PERFORM 1 FROM :leases l WHERE l.key = p_key FOR UPDATE;
    EXIT WHEN FOUND;
    v_attempt := v_attempt + 1;
    IF v_attempt > 3 THEN
      RAISE EXCEPTION 'the lease row of % keeps vanishing', p_key USING ERRCODE = 'serialization_failure';
    END IF;
    -- Free: rows are deleted only long after their lease ended, so no fence is lost with fence 0.
    INSERT INTO :leases AS l (key, token, fence, expires_at) VALUES (p_key, NULL, 0, clock_timestamp())
      ON CONFLICT (key) DO NOTHING;
  END LOOP;

  SELECT h.tokens, h.fences INTO tokens, fences FROM :hand_off(p_key, p_relaxed, ARRAY[p_token], NULL) h;
  v_at := array_position(tokens, p_token);
  IF v_at IS NOT NULL THEN
    -- Handed to p_token itself (the head of the queue): renewed below, as any holder's attempt.
    tokens := tokens[1:v_at - 1] || tokens[v_at + 1:];
    fences := fences[1:v_at - 1] || fences[v_at + 1:];
  END IF;

  SELECT l.token, l.expires_at, l.fence INTO v_token, v_expires, v_fence FROM :leases l WHERE l.key = p_key;
  IF v_token = 'shared' OR v_token LIKE 'limit:%' THEN
    v_sharing := v_token;
    v_token := NULL;
  END IF;

  IF v_token = p_token THEN
    -- Held exclusively (handed over, or granted by a version without modes): renewed as it is.
    DELETE FROM :queue q WHERE q.key = p_key AND q.token = p_token;
    UPDATE :leases l SET expires_at = clock_timestamp() + p_ttl * interval '1 millisecond',
        durable_until = CASE WHEN p_relaxed THEN NULL ELSE clock_timestamp() + p_ttl * interval '1 millisecond' END
      WHERE l.key = p_key;
    fence := v_fence;
    RETURN;
  END IF;
  IF v_sharing IS NOT NULL THEN
    v_end := clock_timestamp() + p_ttl * interval '1 millisecond';
    UPDATE :holders h SET expires_at = v_end
      WHERE h.key = p_key AND h.token = p_token AND h.expires_at > clock_timestamp()
      RETURNING h.fence INTO v_fence;
    IF FOUND THEN
      DELETE FROM :queue q WHERE q.key = p_key AND q.token = p_token;
      UPDATE :leases l SET expires_at = greatest(l.expires_at, v_end) WHERE l.key = p_key;
      fence := v_fence;
      RETURN;
    END IF;
    SELECT count(*), min(h.expires_at) INTO v_count, v_first FROM :holders h
      WHERE h.key = p_key AND h.expires_at > clock_timestamp();
  ELSIF v_token IS NOT NULL THEN
    v_first := v_expires;
  END IF;
  retry_in := CASE WHEN v_first IS NULL THEN 0
    ELSE greatest(0, ceil(extract(epoch FROM v_first - clock_timestamp()) * 1000))::integer END;

  -- Held in a way p_mode cannot share, whatever the holders do.
  v_wanted := CASE WHEN p_mode LIKE 'limit:%' THEN p_mode END;
  IF v_token IS NOT NULL THEN
    IF v_wanted IS NOT NULL THEN
      held_with := 'exclusive';
    END IF;
  ELSIF v_sharing IS DISTINCT FROM v_wanted AND (v_wanted IS NOT NULL OR v_sharing <> 'shared') THEN
    held_with := v_sharing;
  END IF;
  IF held_with IS NOT NULL THEN
    DELETE FROM :queue q WHERE q.key = p_key AND q.token = p_token;
    RETURN;
  END IF;

  IF v_token IS NULL
      AND (v_count = 0 OR (p_mode = 'shared' AND v_sharing = 'shared')
        OR (v_wanted IS NOT NULL AND v_sharing = v_wanted AND v_count < substr(v_wanted, 7)::integer))
      AND NOT EXISTS (SELECT 1 FROM :queue q
        WHERE q.key = p_key AND q.token <> p_token AND q.expires_at > clock_timestamp()
          AND NOT EXISTS (SELECT 1 FROM :holders h WHERE h.key = p_key AND h.token = q.token)) THEN
    v_fence := :fence();
    v_end := clock_timestamp() + p_ttl * interval '1 millisecond';
    IF p_mode IS NULL THEN
      UPDATE :leases l SET token = p_token, fence = v_fence, expires_at = v_end,
          durable_until = CASE WHEN p_relaxed THEN NULL ELSE v_end END
        WHERE l.key = p_key;
    ELSE
      INSERT INTO :holders AS h (key, token, fence, expires_at) VALUES (p_key, p_token, v_fence, v_end)
        ON CONFLICT (key, token) DO UPDATE SET fence = excluded.fence, expires_at = excluded.expires_at;
      UPDATE :leases l SET token = p_mode, fence = v_fence,
          expires_at = CASE WHEN v_count = 0 THEN v_end ELSE greatest(l.expires_at, v_end) END, durable_until = NULL
        WHERE l.key = p_key;
    END IF;
    DELETE FROM :queue q WHERE q.key = p_key AND q.token = p_token;
    fence := v_fence;
    RETURN;
  END IF;

  IF p_queue IS NOT NULL THEN
    INSERT INTO :queue AS q (key, token, ttl, joined_at, expires_at, sharing)
      VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue * interval '1 millisecond', p_mode)
      ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at, sharing = excluded.sharing;
  END IF;
END
$fn$;
