-- :extend(p_keys text[], p_tokens text[], p_ttls integer[], p_relaxed boolean) returns boolean[]
--
-- Renews the leases (p_keys[i], p_tokens[i]) to p_ttls[i] ms from now where that token still holds
-- that key. p_relaxed: durability 'relaxed'. Returns one boolean per item, in order.
--
-- Locks: the lease rows of the items that are still held; no queue row.
CREATE OR REPLACE FUNCTION :extend(p_keys text[], p_tokens text[], p_ttls integer[], p_relaxed boolean)
RETURNS boolean[]
LANGUAGE plpgsql AS $fn$
DECLARE
  v_done bigint[];
BEGIN
  PERFORM :durable(p_relaxed);
  WITH x AS (
    SELECT * FROM unnest(p_keys, p_tokens, p_ttls) WITH ORDINALITY AS x(key, token, ttl, i)
  ), done AS (
    UPDATE :leases l SET expires_at = clock_timestamp() + x.ttl * interval '1 millisecond',
        durable_until = CASE WHEN p_relaxed THEN NULL ELSE clock_timestamp() + x.ttl * interval '1 millisecond' END
      FROM x
      WHERE l.key = x.key AND l.token = x.token AND l.expires_at > clock_timestamp()
      RETURNING x.i
  )
  SELECT coalesce(array_agg(done.i), '{}') INTO v_done FROM done;
  RETURN ARRAY(SELECT i = ANY (v_done) FROM generate_series(1, coalesce(cardinality(p_keys), 0)) AS i);
END
$fn$;
