-- :give_back(p_key text, p_token text, p_relaxed boolean, p_local text[])
--   returns (released boolean, ended_fence bigint, tokens text[], fences bigint[])
--
-- The release function's release when the key may go on to several holders (rule 7 of the SPI):
-- p_token's shared or limited lease on p_key, or its exclusive lease when the oldest live waiter
-- asks for a shared or limited one. Under the lease row's lock it ends p_token's lease and hands the
-- key on (see the hand-off function; waiters of p_local are not notified); when it hands the key to
-- nobody and nobody is queued, it notifies that the key was released. The caller has already taken
-- p_token out of the queue.
--
-- Returns released (false: p_token held no live lease), ended_fence (the fence of the lease that
-- ended, when the release was notified), and the waiters handed the key, in order, with their fences.
--
-- Locks: the lease row first, then p_token's holder row, then as the hand-off function.
CREATE OR REPLACE FUNCTION :give_back(p_key text, p_token text, p_relaxed boolean, p_local text[],
    OUT released boolean, OUT ended_fence bigint, OUT tokens text[], OUT fences bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_token text;
  v_expires timestamptz;
  v_ended bigint;
BEGIN
  released := false;
  tokens := '{}';
  fences := '{}';
  SELECT l.token, l.expires_at, l.fence INTO v_token, v_expires, v_ended FROM :leases l WHERE l.key = p_key FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  IF v_token = p_token AND v_expires > clock_timestamp() THEN
    UPDATE :leases l SET token = NULL WHERE l.key = p_key;
  ELSE
    DELETE FROM :holders h WHERE h.key = p_key AND h.token = p_token AND h.expires_at > clock_timestamp()
      RETURNING h.fence INTO v_ended;
    IF NOT FOUND THEN
      RETURN;
    END IF;
  END IF;
  released := true;
  SELECT h.tokens, h.fences INTO tokens, fences FROM :hand_off(p_key, p_relaxed, p_local, p_token) h;
  IF cardinality(tokens) = 0 AND NOT EXISTS (SELECT 1 FROM :queue q
      WHERE q.key = p_key AND q.expires_at > clock_timestamp()) THEN
    ended_fence := v_ended;
    PERFORM :notify(p_key, v_ended, NULL, NULL);
  END IF;
END
$fn$;
