-- :release(p_key text, p_token text, p_relaxed boolean, p_local text[])
--   returns (released boolean, ended_fence bigint, granted_token text, granted_fence bigint,
--            granted_valid_for integer, also_tokens text[], also_fences bigint[])
--
-- Ends p_token's lease on p_key and leaves p_key's queue. In the same transaction it hands the key to
-- the oldest live waiter (new fence, the waiter's own ttl) and notifies it, unless it is one of
-- p_local (waiters of the calling process, which wakes them itself from this function's result), or
-- marks the key free and notifies. p_relaxed: durability 'relaxed'.
-- With durability 'full', a hand-off commits without waiting for its WAL flush when the row's state
-- is covered for long enough: a crash can then lose the hand-off, but only by bringing back a state
-- whose lease lasts until durable_until, so nobody else can take the key before it. The new holder
-- is told so (granted_valid_for, ms): its lease is certain only that long until its first flushed
-- extension. Otherwise (or when the fence function must flush anyway) the commit flushes.
-- The release of a shared or limited lease (rule 7 of the SPI), and of an exclusive lease whose
-- oldest waiter asks for one (or left the queue while this chose it), is made by the give-back
-- function: the key may then go to several waiters, each with a flushed commit.
--
-- Returns released (false: p_token held no live lease), ended_fence (released, nobody waiting), or
-- the hand-offs (granted_token, granted_fence, granted_valid_for: NULL when the commit flushed; the
-- further ones of a hand-off to several waiters in also_tokens, also_fences, NULL otherwise).
--
-- Locks: p_token's queue row (which no hand-off takes while p_token holds the key), then the lease
-- row, then the queue row of the waiter it hands the key to (the give-back function: as it says).
CREATE OR REPLACE FUNCTION :release(p_key text, p_token text, p_relaxed boolean, p_local text[],
    OUT released boolean, OUT ended_fence bigint, OUT granted_token text, OUT granted_fence bigint,
    OUT granted_valid_for integer, OUT also_tokens text[], OUT also_fences bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_head_token text;
  v_head_ttl integer;
  v_head_sharing text;
  v_fence bigint;
  v_tokens text[];
  v_fences bigint[];
  v_give_back boolean := false;
  v_left boolean;
  v_left_sharing text;
  v_expires timestamptz;
  v_durable timestamptz;
  v_bound timestamptz;
BEGIN
  PERFORM :durable(p_relaxed);
  -- Leaving the queue comes first: a hand-off to p_token that is under way holds its queue row, so
  -- it commits before this goes on, and the check below then sees p_token as the holder.
  DELETE FROM :queue q WHERE q.key = p_key AND q.token = p_token RETURNING q.sharing INTO v_left_sharing;
  v_left := FOUND;
  -- A token that holds no live lease (a waiter giving up) only leaves the queue: it waits for no
  -- row after its own, so give-ups never wait on each other.
  IF NOT EXISTS (SELECT 1 FROM :leases l WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp()) THEN
    released := false;
    IF NOT EXISTS (SELECT 1 FROM :holders h WHERE h.key = p_key AND h.token = p_token AND h.expires_at > clock_timestamp()) THEN
      -- An exclusive waiter leaving a key held shared may have held back the shared waiters behind
      -- it: they may hold the key beside the holders now. Handed on here when the lease row is free
      -- to lock (SKIP LOCKED: this waits for nothing); otherwise they are told to try again.
      IF v_left AND v_left_sharing IS NULL
          AND EXISTS (SELECT 1 FROM :leases l WHERE l.key = p_key AND l.token = 'shared') THEN
        PERFORM 1 FROM :leases l WHERE l.key = p_key FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
          SELECT h.tokens, h.fences INTO v_tokens, v_fences FROM :hand_off(p_key, p_relaxed, p_local, p_token) h;
          granted_token := v_tokens[1];
          granted_fence := v_fences[1];
          IF cardinality(v_tokens) > 1 THEN
            also_tokens := v_tokens[2:];
            also_fences := v_fences[2:];
          END IF;
        ELSE
          -- The row is busy (an extension, an attempt that stopped at this waiter's place): the
          -- waiters try again once this commits, and find the place gone.
          PERFORM :notify(p_key, (SELECT l.fence FROM :leases l WHERE l.key = p_key), NULL, NULL);
        END IF;
      END IF;
      RETURN;
    END IF;
    v_give_back := true;
  ELSE
    -- The oldest live waiter, read only: it leaves the queue once the lease row is locked (below).
    SELECT q.token, q.ttl, q.sharing INTO v_head_token, v_head_ttl, v_head_sharing FROM :queue q
      WHERE q.key = p_key AND q.token <> p_token AND q.expires_at > clock_timestamp()
      ORDER BY q.joined_at, q.token LIMIT 1;
    v_give_back := v_head_sharing IS NOT NULL;
  END IF;
  IF v_give_back THEN
    SELECT g.released, g.ended_fence, g.tokens, g.fences INTO released, ended_fence, v_tokens, v_fences
      FROM :give_back(p_key, p_token, p_relaxed, p_local) g;
    granted_token := v_tokens[1];
    granted_fence := v_fences[1];
    IF cardinality(v_tokens) > 1 THEN
      also_tokens := v_tokens[2:];
      also_fences := v_fences[2:];
    END IF;
    RETURN;
  END IF;
  IF v_head_token IS NOT NULL AND NOT p_relaxed THEN
    SELECT l.expires_at, l.durable_until INTO v_expires, v_durable FROM :leases l
      WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp() FOR UPDATE;
    -- Covered for at least two thirds of the new holder's ttl: its watchdog extends (flushed) at a third.
    IF v_durable IS NOT NULL AND least(v_durable, v_expires) >= clock_timestamp() + (v_head_ttl * 2 / 3) * interval '1 millisecond' THEN
      v_bound := least(v_durable, v_expires);
      PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
  END IF;
  -- One update ends the lease and, with a waiter, starts the waiter's (new fence, its own ttl). The
  -- fence function may raise synchronous_commit again: the commit then flushes, and v_bound stays a
  -- safe (early) bound. Without a bound, durable_until is the new end when the commit flushes
  -- (durability 'full') and unknown otherwise.
  UPDATE :leases l SET
      token = v_head_token,
      fence = CASE WHEN v_head_token IS NULL THEN l.fence ELSE :fence() END,
      expires_at = clock_timestamp() + coalesce(v_head_ttl, 0) * interval '1 millisecond',
      durable_until = coalesce(v_bound,
        CASE WHEN p_relaxed THEN NULL ELSE clock_timestamp() + coalesce(v_head_ttl, 0) * interval '1 millisecond' END)
    WHERE l.key = p_key AND l.token = p_token AND l.expires_at > clock_timestamp()
    RETURNING l.fence INTO v_fence;
  released := FOUND;
  IF NOT released THEN
    RETURN;
  END IF;
  IF v_head_token IS NOT NULL THEN
    DELETE FROM :queue q WHERE q.key = p_key AND q.token = v_head_token;
    IF NOT FOUND THEN
      -- It left the queue while this chose it: the key goes on as a release by the give-back
      -- function hands it, with a flushed commit (durability 'full').
      PERFORM :durable(p_relaxed);
      UPDATE :leases l SET token = p_token, fence = v_fence WHERE l.key = p_key;
      SELECT g.released, g.ended_fence, g.tokens, g.fences INTO released, ended_fence, v_tokens, v_fences
        FROM :give_back(p_key, p_token, p_relaxed, p_local) g;
      granted_token := v_tokens[1];
      granted_fence := v_fences[1];
      IF cardinality(v_tokens) > 1 THEN
        also_tokens := v_tokens[2:];
        also_fences := v_fences[2:];
      END IF;
      RETURN;
    END IF;
    granted_token := v_head_token;
    granted_fence := v_fence;
    IF v_bound IS NOT NULL THEN
      granted_valid_for := greatest(0, floor(extract(epoch FROM v_bound - clock_timestamp()) * 1000))::integer;
    END IF;
    IF p_local IS NULL OR NOT v_head_token = ANY (p_local) THEN
      PERFORM :notify(p_key, v_fence, v_head_token, granted_valid_for);
    END IF;
  ELSE
    ended_fence := v_fence;
    PERFORM :notify(p_key, v_fence, NULL, NULL);
  END IF;
END
$fn$;
