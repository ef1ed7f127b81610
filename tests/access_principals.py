"""The principals of the access matrix tests: four organisations, the collection policies under
test, and one key per principal (a revoked and an expired one included)."""

from datetime import date, timedelta

import psycopg

from csdr_access.admin import add_org, issue_key, revoke_key, set_policy

# The matrix: one collection per policy, and what each principal may see of them.
POLICIES = {"open": "public", "members": "registered", "thai": "partners", "inhouse": "private"}
SEES = {
    "anonymous": {"open"},
    "registered": {"open", "members"},
    "partner A": {"open", "members", "thai"},
    "partner B": {"open", "members"},
    "admin": {"open", "members", "thai", "inhouse"},
}

ORGANISATIONS = [
    ("GISTDA", "TH", "partner"),  # partner A: the one `partners` collections list
    ("KenSpace", "KE", "partner"),  # partner B
    ("CRESDA", "CN", "main"),
    ("UNOOSA", "AT", "agency"),  # registered, nothing more
]


def grant(conn: psycopg.Connection, policies: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Register the organisations, set `policies` (partners: GISTDA), issue the keys; return
    principal -> (key, prefix)."""
    for org, country, kind in ORGANISATIONS:
        add_org(conn, org, country, kind, "test")
    for cid, policy in policies.items():
        set_policy(conn, cid, policy, ["GISTDA"] if policy == "partners" else [], "test")
    issued = {
        "registered": issue_key(conn, "UNOOSA", ["read"], "test"),
        "partner A": issue_key(conn, "GISTDA", ["read"], "test"),
        "partner B": issue_key(conn, "KenSpace", ["read"], "test"),
        "admin": issue_key(conn, "CRESDA", ["admin"], "test"),
        "ingest": issue_key(conn, "CRESDA", ["read", "ingest"], "test"),
        "revoked": issue_key(conn, "GISTDA", ["read"], "test"),
        "expired": issue_key(conn, "GISTDA", ["read"], "test", date.today() + timedelta(1)),
    }
    revoke_key(conn, issued["revoked"][1], "test")
    conn.execute(
        "UPDATE csdr.api_keys SET expires_at = now() - interval '1 hour' WHERE prefix = %s",
        (issued["expired"][1],),
    )
    return issued


def collection(cid: str, **extra: object) -> dict:
    """A minimal collection of the matrix (fields in `extra` replace the defaults)."""
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": f"{cid} scenes",
        "license": "other",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[100, 10, 101, 11]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        **extra,
    }


def item(cid: str, item_id: str | None = None, day: int = 1, **extra: object) -> dict:
    """A minimal item of collection `cid` (`<cid>-scene` unless named), acquired on March `day`."""
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id or f"{cid}-scene",
        "collection": cid,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[100, 10], [101, 10], [101, 11], [100, 11], [100, 10]]],
        },
        "bbox": [100, 10, 101, 11],
        "links": [],
        "assets": {},
        "properties": {"datetime": f"2024-03-{day:02d}T03:00:00Z", "platform": "gf-1"},
        **extra,
    }


def key_headers(keys: dict[str, str], who: str) -> dict[str, str]:
    """The headers a principal's requests carry (none for the anonymous one)."""
    return {} if who == "anonymous" else {"Authorization": f"Bearer {keys[who]}"}
