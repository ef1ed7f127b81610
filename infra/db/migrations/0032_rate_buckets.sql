-- Rate limits shared by every process of a service (csdr_access.ratelimit): one token bucket per
-- (service, key prefix). A process takes a few tokens at a time; the bucket refills at the
-- service's rate up to its burst, so N processes together allow the rate once, not N times.
CREATE TABLE csdr.rate_buckets (
    caller      text PRIMARY KEY,
    tokens      float8 NOT NULL,
    refilled_at timestamptz NOT NULL
);

-- Refill `_caller`'s bucket for the time gone by, then take up to `_want` whole tokens:
-- `granted` is how many were taken, `wait_s` how long until one is there when none was.
CREATE FUNCTION csdr.take_tokens(
    _caller text, _rate float8, _burst float8, _want integer,
    OUT granted integer, OUT wait_s float8
) LANGUAGE plpgsql AS $$
DECLARE
    moment timestamptz := clock_timestamp();
    level float8;
BEGIN
    INSERT INTO csdr.rate_buckets (caller, tokens, refilled_at)
    VALUES (_caller, _burst, moment)
    ON CONFLICT (caller) DO NOTHING;
    SELECT least(_burst, b.tokens + extract(epoch FROM moment - b.refilled_at) * _rate)
    INTO level
    FROM csdr.rate_buckets b WHERE b.caller = _caller FOR UPDATE;
    granted := least(_want, floor(level))::integer;
    UPDATE csdr.rate_buckets SET tokens = level - granted, refilled_at = moment
    WHERE caller = _caller;
    wait_s := CASE WHEN granted >= 1 THEN 0 ELSE (1 - level) / _rate END;
END
$$;
