-- :acquire(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean, p_mode text)
--   returns (fence bigint, retry_in integer, granted_token text, granted_fence bigint, held_with text,
--            also_tokens text[], also_fences bigint[])
--
-- Takes p_key for p_token for p_ttl ms: renews it when p_token already holds it; grants it when it
-- is free or expired and no live waiter is queued ahead (or hands it to the oldest live waiter,
-- notifying it); otherwise answers busy, with the time left on the lease, and (p_queue not NULL)
-- joins or refreshes p_token's place in the queue for p_queue ms. p_relaxed: durability 'relaxed'.
-- p_mode (rule 7 of the SPI): NULL for an exclusive lease, 'shared' or 'limit:<n>'. An attempt in a
-- mode, or on a key held shared or limited, or whose oldest waiter asks for a mode, is made by the
-- take function; an exclusive attempt on a key held exclusively, or free with an exclusive waiter
-- (or none) first, is made here, at the cost it always had.
--
-- Returns fence (NULL when busy), retry_in (ms), held_with (busy because the key is held in a way
-- this mode cannot share: see the take function), and the waiters the key was handed to, if any
-- (granted_token, granted_fence: the first; also_tokens, also_fences: the others, or NULL; the
-- caller then waits behind them).
--
-- Locks: the lease row first; then the queue row of the waiter it hands the key to, or the caller's
-- own queue row (the take function: as it says). A busy answer locks only the caller's own queue row.
CREATE OR REPLACE FUNCTION :acquire(p_key text, p_token text, p_ttl integer, p_queue integer, p_relaxed boolean,
    p_mode text, OUT fence bigint, OUT retry_in integer, OUT granted_token text, OUT granted_fence bigint,
    OUT held_with text, OUT also_tokens text[], OUT also_fences bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now timestamptz;
  v_found boolean;
  v_token text;
  v_expires timestamptz;
  v_head_token text;
  v_head_ttl integer;
  v_head_sharing text;
  v_fence bigint;
  v_tokens text[];
  v_fences bigint[];
  v_attempt integer := 0;
  v_take boolean := p_mode IS NOT NULL;
BEGIN
  PERFORM :durable(p_relaxed);
  WHILE NOT v_take LOOP
    v_attempt := v_attempt + 1;
    EXIT WHEN v_attempt > 3;
    v_now := clock_timestamp();
    SELECT l.token, l.expires_at INTO v_token, v_expires FROM :leases l WHERE l.key = p_key;
    v_found := FOUND;
    IF v_token = 'shared' OR v_token LIKE 'limit:%' THEN
      v_take := true;
      EXIT;
    END IF;
    IF v_found AND v_token IS NOT NULL AND v_expires > v_now THEN
      IF v_token <> p_token THEN
        -- Busy: a read only, plus the queue (no WAL) for a waiter.
        IF p_queue IS NOT NULL THEN
          INSERT INTO :queue AS q (key, token, ttl, joined_at, expires_at)
            VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue * interval '1 millisecond')
            ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at, sharing = NULL;
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
    -- Read only: it leaves the queue once the lease row is locked (below).
    SELECT q.token, q.ttl, q.sharing INTO v_head_token, v_head_ttl, v_head_sharing FROM :queue q
      WHERE q.key = p_key AND q.expires_at > clock_timestamp() AND q.token IS DISTINCT FROM v_token
      ORDER BY q.joined_at, q.token LIMIT 1;
    IF NOT FOUND THEN
      v_head_token := NULL;
    ELSIF v_head_sharing IS NOT NULL THEN
      -- It asks for a shared or limited lease: a run of waiters may take the key together.
      v_take := true;
      EXIT;
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
      IF NOT FOUND AND v_head_token <> p_token THEN
        -- It left the queue while this chose it: the key goes to whom the take function finds.
        UPDATE :leases l SET token = NULL WHERE l.key = p_key;
        v_take := true;
        EXIT;
      END IF;
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

  IF v_take THEN
    SELECT t.fence, t.retry_in, t.held_with, t.tokens, t.fences INTO fence, retry_in, held_with, v_tokens, v_fences
      FROM :take(p_key, p_token, p_ttl, p_queue, p_relaxed, p_mode) t;
    granted_token := v_tokens[1];
    granted_fence := v_fences[1];
    IF cardinality(v_tokens) > 1 THEN
      also_tokens := v_tokens[2:];
      also_fences := v_fences[2:];
    END IF;
    RETURN;
  END IF;

  -- After the lease row (the lock order): the caller's own queue row, behind the waiter it handed
  -- the key to.
  IF p_queue IS NOT NULL THEN
    INSERT INTO :queue AS q (key, token, ttl, joined_at, expires_at)
      VALUES (p_key, p_token, p_ttl, clock_timestamp(), clock_timestamp() + p_queue * interval '1 millisecond')
      ON CONFLICT (key, token) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at, sharing = NULL;
  END IF;
END
$fn$;
