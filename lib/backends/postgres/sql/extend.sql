-- :extend(p_keys text[], p_tokens text[], p_ttls integer[], p_relaxed boolean) returns boolean[]
--
-- Renews the leases (p_keys[i], p_tokens[i]) to p_ttls[i] ms from now where that token still holds
-- that key, exclusively or as one of its shared or limited holders (rule 7 of the SPI). p_relaxed:
-- durability 'relaxed'. Returns one boolean per item, in order. The leases of holders are renewed
-- only when an item is not an exclusive lease, so an extension of exclusive leases alone costs what
-- it always did.
--
-- Locks: the lease rows of the items that are still held exclusively; then, for items held shared
-- or limited, their keys' lease rows in key order (the holder rows are written only under them, and
-- each lease row's end is kept no earlier than its holders'), then their holder rows.
CREATE OR REPLACE FUNCTION :extend(p_keys text[], p_tokens text[], p_ttls integer[], p_relaxed boolean)
RETURNS boolean[]
LANGUAGE plpgsql AS $fn$
DECLARE
  v_done bigint[];
  v_shared bigint[];
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
  IF cardinality(v_done) < coalesce(cardinality(p_keys), 0) THEN
    PERFORM 1 FROM :leases l
      WHERE l.key IN (SELECT h.key FROM :holders h
        JOIN unnest(p_keys, p_tokens) WITH ORDINALITY AS x(key, token, i) ON h.key = x.key AND h.token = x.token
        WHERE NOT x.i = ANY (v_done) AND h.expires_at > clock_timestamp())
      ORDER BY l.key FOR UPDATE;
    WITH x AS (
      SELECT * FROM unnest(p_keys, p_tokens, p_ttls) WITH ORDINALITY AS x(key, token, ttl, i)
        WHERE NOT x.i = ANY (v_done)
    ), done AS (
      UPDATE :holders h SET expires_at = clock_timestamp() + x.ttl * interval '1 millisecond'
        FROM x
        WHERE h.key = x.key AND h.token = x.token AND h.expires_at > clock_timestamp()
        RETURNING x.i, h.key, h.expires_at
    ), bound AS (
      UPDATE :leases l SET expires_at = greatest(l.expires_at, e.until)
        FROM (SELECT done.key, max(done.expires_at) AS until FROM done GROUP BY done.key) e
        WHERE l.key = e.key
    )
    SELECT coalesce(array_agg(done.i), '{}') INTO v_shared FROM done;
    v_done := v_done || v_shared;
  END IF;
  RETURN ARRAY(SELECT i = ANY (v_done) FROM generate_series(1, coalesce(cardinality(p_keys), 0)) AS i);
END
$fn$;
