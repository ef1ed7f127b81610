import asyncio
import time
from datetime import date, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from csdr_access import ANONYMOUS, AccessControl, InvalidKey, api_key_from
from csdr_access.admin import AdminError, add_org, issue_key, revoke_key, set_policy
from csdr_access.cli import main

UNCACHED = AccessControl(ttl_s=0)


def authenticate(conn, key):
    return UNCACHED.principal(conn, key)


POLICIES = {
    "open": "public",
    "members": "registered",
    "thai-only": "partners",
    "inhouse": "private",
}


def collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": cid,
        "license": "other",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[0, 0, 1, 1]]},
            "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
        },
    }


@pytest.fixture
def conn(pg_env):
    with psycopg.connect(autocommit=True) as c:
        for cid in [*POLICIES, "no-policy"]:
            c.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection(cid)),))
        add_org(c, "GISTDA", "TH", "partner", "test")
        add_org(c, "KenSpace", "ke", "partner", "test")
        add_org(c, "CRESDA", "CN", "main", "test")
        for cid, policy in POLICIES.items():
            set_policy(c, cid, policy, ["GISTDA"] if policy == "partners" else [], "test")
        yield c


@pytest.fixture
def keys(conn):
    keys = {
        "partner A": issue_key(conn, "GISTDA", ["read"], "test")[0],
        "partner B": issue_key(conn, "KenSpace", ["read"], "test")[0],
        "admin": issue_key(conn, "CRESDA", ["admin"], "test")[0],
        "revoked": issue_key(conn, "GISTDA", ["read"], "test"),
        "expired": issue_key(conn, "GISTDA", ["read"], "test", expires=date.today() + timedelta(1)),
    }
    revoke_key(conn, keys["revoked"][1], "test")
    keys["revoked"] = keys["revoked"][0]
    conn.execute(
        "UPDATE csdr.api_keys SET expires_at = now() - interval '1 day' WHERE prefix = %s",
        (keys["expired"][1],),
    )
    keys["expired"] = keys["expired"][0]
    return keys


EXPECTED = {
    "anonymous": {"open", "no-policy"},
    "partner A": {"open", "no-policy", "members", "thai-only"},
    "partner B": {"open", "no-policy", "members"},
    "admin": {"open", "no-policy", "members", "thai-only", "inhouse"},
}


def test_visibility_matrix(conn, keys):
    for who, visible in EXPECTED.items():
        principal = ANONYMOUS if who == "anonymous" else authenticate(conn, keys[who])
        assert UNCACHED.visible(conn, principal) == visible, who


def test_asyncpg_path_applies_the_same_rule(conn, keys, pg_env):
    import asyncio

    import asyncpg

    async def check():
        aconn = await asyncpg.connect()
        try:
            for who, visible in EXPECTED.items():
                key = None if who == "anonymous" else keys[who]
                principal = await UNCACHED.principal_async(aconn, key)
                assert await UNCACHED.visible_async(aconn, principal) == visible, who
            with pytest.raises(InvalidKey, match="revoked"):
                await UNCACHED.principal_async(aconn, keys["revoked"])
        finally:
            await aconn.close()

    asyncio.run(check())


def test_bad_revoked_expired_keys_are_refused_with_the_reason(conn, keys):
    with pytest.raises(InvalidKey, match="revoked"):
        authenticate(conn, keys["revoked"])
    with pytest.raises(InvalidKey, match="expired"):
        authenticate(conn, keys["expired"])
    with pytest.raises(InvalidKey, match="not valid"):
        authenticate(conn, keys["partner A"][:-1] + ("A" if keys["partner A"][-1] != "A" else "B"))
    with pytest.raises(InvalidKey, match="not valid"):
        authenticate(conn, "hello")


def test_revocation_takes_effect_within_the_cache_time(conn, keys):
    access = AccessControl(ttl_s=0.5)
    key = keys["partner B"]
    assert access.principal(conn, key).org == "KenSpace"
    revoke_key(conn, key.split("_")[1], "test")
    assert access.principal(conn, key).org == "KenSpace"  # cached for at most ttl_s
    time.sleep(0.6)
    with pytest.raises(InvalidKey, match="revoked"):
        access.principal(conn, key)


def test_keys_are_stored_as_digests_and_never_audited(conn, keys):
    rows = conn.execute("SELECT t::text FROM csdr.api_keys t").fetchall()
    audit = conn.execute("SELECT string_agg(detail::text, ' ') FROM csdr.audit_log").fetchone()[0]
    for key in keys.values():
        secret = key.split("_", 2)[2]
        assert secret not in audit
        assert not any(secret in r[0] or secret.encode().hex() in r[0] for r in rows)
    assert "key.revoke" in {r[0] for r in conn.execute("SELECT action FROM csdr.audit_log")}


def test_key_sources_in_order():
    assert (
        api_key_from({"authorization": "Bearer k1", "x-api-key": "k2"}, {"api_key": "k3"}) == "k1"
    )
    assert api_key_from({"x-api-key": "k2"}, {"api_key": "k3"}) == "k2"
    assert api_key_from({}, {"api_key": "k3"}) == "k3"
    assert api_key_from({}, {}) is None


def test_admin_refuses_what_makes_no_sense(conn):
    with pytest.raises(AdminError, match="at least one --org"):
        set_policy(conn, "open", "partners", [], "test")
    with pytest.raises(AdminError, match="no collection"):
        set_policy(conn, "opne", "public", [], "test")
    with pytest.raises(AdminError, match="no organisation"):
        issue_key(conn, "Nobody", ["read"], "test")
    with pytest.raises(AdminError, match="exists already"):
        add_org(conn, "GISTDA", "TH", "partner", "test")
    with pytest.raises(AdminError, match="in the past"):
        issue_key(conn, "GISTDA", ["read"], "test", expires=date(2020, 1, 1))


def test_cli_round_trip(conn, capsys):
    assert main(["org", "add", "NRSCC", "--country", "CN", "--kind", "agency"]) == 0
    assert (
        main(
            [
                "key",
                "issue",
                "--org",
                "NRSCC",
                "--scope",
                "read",
                "--scope",
                "ingest",
                "--expires",
                "2099-12-31",
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert authenticate(conn, key).scopes == {"read", "ingest"}
    assert main(["policy", "set", "members", "partners", "--org", "NRSCC"]) == 0
    assert main(["policy", "list"]) == 0
    assert "members     partners  NRSCC" in capsys.readouterr().out
    assert main(["key", "list", "--org", "NRSCC"]) == 0
    listing = capsys.readouterr().out
    assert key.split("_")[1] in listing and key.split("_", 2)[2] not in listing
    assert main(["key", "revoke", key.split("_")[1]]) == 0
    assert main(["key", "revoke", key.split("_")[1]]) == 1
    assert "no active key" in capsys.readouterr().err
    assert main(["policy", "set", "open", "partners"]) == 1


def test_rate_limiter_allows_bursts_then_paces(conn):
    from csdr_access.ratelimit import RateLimiter

    limiter = RateLimiter(rate_per_s=10, burst=3, service="catalog", batch=1)
    assert [limiter.acquire(conn, "k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire(conn, "k")
    assert 0 < wait <= 0.1 and RateLimiter.retry_after(wait) == "1"
    assert limiter.acquire(conn, "other") == 0.0  # buckets are per caller...
    assert RateLimiter(10, 3, service="tiler").acquire(conn, "k") == 0.0  # ...and service
    time.sleep(0.15)
    assert limiter.acquire(conn, "k") == 0.0


def test_a_batch_taken_by_a_concurrent_request_serves_the_other(conn, monkeypatch):
    """Two requests of one key in one process find no token held; the first takes the bucket's
    last batch (burst = batch), the second is refused by the database: it spends a token of the
    first's batch instead of answering 429, and neither batch's tokens are lost."""
    from csdr_access.ratelimit import RateLimiter

    limiter = RateLimiter(rate_per_s=0.01, burst=4, service="catalog", batch=4)
    spend, raced = limiter._spend, []

    def spend_while_another_takes_the_batch(caller: str) -> bool:
        found = spend(caller)
        if not raced:  # the other request runs now, between this one's look and its take
            raced.append(True)
            with psycopg.connect(autocommit=True) as other:
                assert limiter.acquire(other, caller) == 0.0
        return found

    monkeypatch.setattr(limiter, "_spend", spend_while_another_takes_the_batch)
    assert limiter.acquire(conn, "k") == 0.0
    # The batch of 4: one each for the two racing requests, two more, then a wait.
    assert [limiter.acquire(conn, "k") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire(conn, "k") > 0


def test_processes_of_a_service_share_its_rate(conn, pg_env):
    """Two limiters stand for two processes (one over psycopg, one over asyncpg): together they
    allow the burst once, not twice, and then the rate."""
    import asyncpg

    from csdr_access.ratelimit import RateLimiter

    first = RateLimiter(rate_per_s=2, burst=20, service="catalog", batch=4)
    second = RateLimiter(rate_per_s=2, burst=20, service="catalog", batch=4)

    async def from_second(count: int) -> list[float]:
        pool = await asyncpg.create_pool(min_size=1, max_size=1)
        try:
            return [await second.acquire_async(pool, "k") for _ in range(count)]
        finally:
            await pool.close()

    allowed = 0
    for _ in range(5):
        allowed += sum(first.acquire(conn, "k") == 0.0 for _ in range(6))
        allowed += sum(w == 0.0 for w in asyncio.run(from_second(6)))
    # 60 asked within a second or so: the burst of 20 and a few tokens of refill, not 40.
    assert 20 <= allowed <= 26, allowed
    assert first.acquire(conn, "k") > 0 or second.acquire(conn, "k") > 0


def guessed_key(i: int) -> str:
    return f"csdr_{i:08x}_" + "g" * 43


def test_an_address_guessing_keys_is_refused_unchecked_on_every_process(conn, keys):
    from csdr_access.access import KeyFailureLimit
    from csdr_access.principals import TooManyKeyFailures

    limit = KeyFailureLimit(max_key_failures=3, key_failure_window_s=60)
    # Two AccessControls stand for two processes (or two services): they share the count.
    first, second = AccessControl(ttl_s=0, failures=limit), AccessControl(ttl_s=0, failures=limit)
    for i, process in enumerate((first, second, first)):
        with pytest.raises(InvalidKey) as refused:
            process.principal(conn, guessed_key(i), client="203.0.113.9")
        assert not isinstance(refused.value, TooManyKeyFailures)
    # From now on even the right key is not checked from that address...
    with pytest.raises(TooManyKeyFailures, match="3 in the last 60 s"):
        second.principal(conn, keys["admin"], client="203.0.113.9")
    # ...while another address, and a caller without a key, are served as before.
    assert second.principal(conn, keys["admin"], client="198.51.100.7").is_admin
    assert second.principal(conn, None, client="203.0.113.9") == ANONYMOUS
    # A malformed key counts like an unknown one.
    for _ in range(3):
        with pytest.raises(InvalidKey):
            first.principal(conn, "not-a-key", client="192.0.2.1")
    with pytest.raises(TooManyKeyFailures):
        first.principal(conn, keys["partner A"], client="192.0.2.1")


def test_key_failures_end_with_their_window_and_clean_themselves(conn, keys):
    from csdr_access.access import KeyFailureLimit

    limit = KeyFailureLimit(max_key_failures=2, key_failure_window_s=0.5)
    access = AccessControl(ttl_s=0, failures=limit)
    for i in range(2):
        with pytest.raises(InvalidKey):
            access.principal(conn, guessed_key(i), client="203.0.113.9")
    with pytest.raises(InvalidKey):
        access.principal(conn, keys["admin"], client="203.0.113.9")
    time.sleep(0.6)
    assert access.principal(conn, keys["admin"], client="203.0.113.9").is_admin
    # 300 addresses fail once each; once their window has passed, new failures remove them.
    for n in range(300):
        conn.execute("SELECT csdr.record_key_failure(%s, 0.5)", (f"10.0.{n // 256}.{n % 256}",))
    time.sleep(0.6)
    for n in range(4):
        conn.execute("SELECT csdr.record_key_failure(%s, 0.5)", (f"10.9.9.{n}",))
    rows = conn.execute("SELECT count(*) FROM csdr.key_failures").fetchone()[0]
    assert rows == 4  # the 301 stale rows went, up to 100 with each new failure
