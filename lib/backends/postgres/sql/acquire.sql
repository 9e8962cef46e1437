-- :acquire(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean)
--   returns (fence bigint, retry_in integer, granted_token text, granted_fence bigint)
--
-- Takes p_key for p_token for p_ttl ms: renews it when p_token already holds it; grants it when it
-- is free or expired and no live waiter is queued ahead (or hands it to the oldest live waiter,
-- notifying it); otherwise answers busy, with the time left on the lease, and (p_queue not NULL)
-- joins or refreshes p_token's place in the queue for p_queue ms. p_relaxed: durability 'relaxed'.
--
-- Returns fence (NULL when busy), retry_in (ms), and the waiter the key was handed to, if any
-- (granted_token, granted_fence; the caller then waits behind it).
--
-- Locks: the head of the queue (FOR UPDATE) before the lease row; the caller's own queue row only
-- after the lease row (see the end).
CREATE OR REPLACE FUNCTION :acquire(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean,
    OUT fence bigint, OUT retry_in integer, OUT granted_token text, OUT granted_fence bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now timestamptz;
  v_found boolean;
  v_token text;
  v_expires timestamptz;
  v_head_token text;
  v_head_ttl integer;
  v_fence bigint;
  v_attempt integer := 0;
BEGIN
  PERFORM :durable(p_relaxed);
  LOOP
    v_attempt := v_attempt + 1;
    EXIT WHEN v_attempt > 3;
    v_now := clock_timestamp();
    SELECT l.token, l.expires_at INTO v_token, v_expires FROM :leases l WHERE l.key = p_key;
    v_found := FOUND;
    IF v_found AND v_token IS NOT NULL AND v_expires > v_now THEN
      IF v_token <> p_token THEN
        -- Busy: a read only, plus the queue (no WAL) for a waiter.
        IF p_queue IS NOT NULL THEN
          INSERT INTO :queue AS q (key, token, ttl, joined_at, expires_at)
            VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue * interval '1 millisecond')
            ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at;
        END IF;
        retry_in := ceil(extract(epoch FROM v_expires - v_now) * 1000)::integer;
        RETURN;
      END IF;
      -- token holds the key already (handed over): renew.
      DELETE FROM :queue q WHERE q.key = p_key AND q.token = p_token;
      UPDATE :leases l SET expires_at = clock_timestamp() + p_ttl * interval '1 millisecond',
          durable_until = CASE WHEN p_relaxed THEN NULL ELSE clock_timestamp() + p_ttl * interval '1 millisecond' END
        WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp()
        RETURNING l.fence INTO v_fence;
      IF FOUND THEN
        fence := v_fence;
        RETURN;
      END IF;
      CONTINUE;
    END IF;

    -- Free or expired: the oldest live waiter comes first (never the holder whose lease just ended).
    SELECT q.token, q.ttl INTO v_head_token, v_head_ttl FROM :queue q
      WHERE q.key = p_key AND q.expires_at > clock_timestamp() AND q.token IS DISTINCT FROM v_token
      ORDER BY q.joined_at, q.token LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
      v_head_token := NULL;
    END IF;
    IF v_head_token IS NULL OR v_head_token = p_token THEN
      v_token := p_token;
      v_head_ttl := p_ttl;
    ELSE
      v_token := v_head_token;
    END IF;

    -- durable_until: the new end when the commit flushes (durability 'full'); no bound otherwise.
    UPDATE :leases l SET token = v_token, fence = :fence(), expires_at = clock_timestamp() + v_head_ttl * interval '1 millisecond',
        durable_until = CASE WHEN p_relaxed THEN NULL ELSE clock_timestamp() + v_head_ttl * interval '1 millisecond' END
      WHERE l.key = p_key AND (l.token IS NULL OR l.expires_at <= clock_timestamp())
      RETURNING l.fence INTO v_fence;
    IF NOT FOUND THEN
      IF EXISTS (SELECT 1 FROM :leases l WHERE l.key = p_key) THEN
        CONTINUE;
      END IF;
      -- Rows are deleted only long after their lease ended (housekeeping), far longer than any
      -- statement may run, so this fence cannot be older than one granted on a deleted row.
      INSERT INTO :leases AS l (key, token, fence, expires_at, durable_until)
        VALUES (p_key, v_token, :fence(), clock_timestamp() + v_head_ttl * interval '1 millisecond',
          CASE WHEN p_relaxed THEN NULL ELSE clock_timestamp() + v_head_ttl * interval '1 millisecond' END)
        ON CONFLICT (key) DO NOTHING
        RETURNING l.fence INTO v_fence;
      IF NOT FOUND THEN
        CONTINUE;
      END IF;
    END IF;

    IF v_head_token IS NOT NULL THEN
      DELETE FROM :queue q WHERE q.key = p_key AND q.token = v_head_token;
    END IF;
    IF v_token = p_token THEN
      fence := v_fence;
      RETURN;
    END IF;
    -- Handed to the head of the queue; the caller waits behind it.
    PERFORM :notify(p_key, v_fence, v_token, NULL);
    granted_token := v_token;
    granted_fence := v_fence;
    retry_in := v_head_ttl;
    EXIT;
  END LOOP;

  -- After the lease row, but only the caller's own queue row: a release that could lock it as the
  -- head must hold a live lease, which nobody does while this statement changes the lease row.
  IF p_queue IS NOT NULL THEN
    INSERT INTO :queue AS q (key, token, ttl, joined_at, expires_at)
      VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue * interval '1 millisecond')
      ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at;
  END IF;
END
$fn$;
