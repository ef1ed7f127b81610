-- Failed API key attempts per client address, shared by every process of every service: an
-- address past the limit is refused (429) without its key being checked, so guessing keys is
-- slowed node-wide. Rows clean themselves: each recorded failure deletes up to 100 expired rows.
CREATE TABLE csdr.key_failures (
    address  text PRIMARY KEY,
    failures integer NOT NULL,
    since    timestamptz NOT NULL DEFAULT now()
);

-- Failures recorded for the address within the last p_window_s seconds.
CREATE FUNCTION csdr.key_failures_of(p_address text, p_window_s double precision)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT f.failures FROM csdr.key_failures f
         WHERE f.address = p_address AND f.since >= now() - make_interval(secs => p_window_s)),
        0)
$$;

-- Record one failed attempt of the address; the failures within the window, this one included.
CREATE FUNCTION csdr.record_key_failure(p_address text, p_window_s double precision)
RETURNS integer LANGUAGE sql AS $$
    DELETE FROM csdr.key_failures
    WHERE address IN (
        SELECT f.address FROM csdr.key_failures f
        WHERE f.since < now() - make_interval(secs => p_window_s) AND f.address <> p_address
        LIMIT 100);
    INSERT INTO csdr.key_failures AS f (address, failures, since)
    VALUES (p_address, 1, now())
    ON CONFLICT (address) DO UPDATE SET
        failures = CASE WHEN f.since < now() - make_interval(secs => p_window_s)
                        THEN 1 ELSE f.failures + 1 END,
        since = CASE WHEN f.since < now() - make_interval(secs => p_window_s)
                     THEN now() ELSE f.since END
    RETURNING failures;
$$;
