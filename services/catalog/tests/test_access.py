"""Who sees what through the STAC API: every principal against every policy on every read path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from conftest import TEMPLATE_DB
from csdr_access.admin import add_org, issue_key
from csdr_catalog.app import create_app
from csdr_catalog.settings import Settings
from tests.access_principals import POLICIES, SEES, collection, grant, item
from tests.access_principals import key_headers as as_


@pytest.fixture(scope="module")
def setup(pg_cluster) -> Iterator[tuple[TestClient, dict[str, str]]]:
    name = f"acc_{uuid.uuid4().hex[:10]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        for cid in POLICIES:
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(collection(cid)),))
            conn.execute("SELECT pgstac.create_item(%s)", (Jsonb(item(cid)),))
        keys = {who: key for who, (key, _) in grant(conn, POLICIES).items()}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        app = create_app(Settings(transactions=True, access_ttl_s=0))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, keys
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("who", list(SEES))
def test_every_read_path_shows_exactly_what_the_policy_allows(setup, who):
    client, keys = setup
    headers = as_(keys, who)
    sees = SEES[who]
    hidden = set(POLICIES) - sees

    def get(path, **params):
        r = client.get(path, headers=headers, params=params)
        for cid in hidden - {path.split("/")[2] if path.count("/") > 1 else ""}:
            assert cid not in r.text, (path, cid)  # never named in an answer about other things
        return r

    landing = get("/").json()
    assert {
        link["href"].rsplit("/", 1)[1] for link in landing["links"] if link["rel"] == "child"
    } == sees
    assert {c["id"] for c in get("/collections").json()["collections"]} == sees
    for cid in POLICIES:
        expected = 200 if cid in sees else 404
        assert get(f"/collections/{cid}").status_code == expected
        assert get(f"/collections/{cid}/items").status_code == expected
        assert get(f"/collections/{cid}/items/{cid}-scene").status_code == expected
        assert get(f"/collections/{cid}/queryables").status_code == expected
    found = {f["collection"] for f in get("/search", limit=100).json()["features"]}
    assert found == sees
    asked = client.post("/search", headers=headers, json={"collections": list(POLICIES)})
    assert {f["collection"] for f in asked.json()["features"]} == sees
    counts = get("/aggregate", aggregations="collection_frequency").json()
    buckets = {b["key"] for a in counts["aggregations"] for b in a.get("buckets", [])}
    assert buckets == sees


@pytest.mark.parametrize("how", ["bearer", "header", "query"])
def test_keys_are_accepted_in_three_places(setup, how):
    client, keys = setup
    key = keys["partner A"]
    kwargs = {
        "bearer": {"headers": {"Authorization": f"Bearer {key}"}},
        "header": {"headers": {"X-API-Key": key}},
        "query": {"params": {"api_key": key}},
    }[how]
    assert client.get("/collections/thai", **kwargs).status_code == 200


@pytest.mark.parametrize("who", ["revoked", "expired"])
def test_bad_keys_answer_401_with_the_reason(setup, who):
    client, keys = setup
    r = client.get("/collections", headers=as_(keys, who))
    assert r.status_code == 401
    assert r.json()["code"] == "Unauthorized" and who in r.json()["description"]
    r = client.get("/search", params={"api_key": "csdr_deadbeef_" + "x" * 43})
    assert r.status_code == 401 and "not valid" in r.json()["description"]


def test_writes_need_the_ingest_scope(setup):
    client, keys = setup
    body = collection("new-one")
    assert client.post("/collections", json=body).status_code == 401
    assert client.post("/collections", json=body, headers=as_(keys, "partner A")).status_code == 403
    assert client.post("/collections", json=body, headers=as_(keys, "ingest")).status_code in (
        200,
        201,
    )


def test_authenticated_answers_are_not_cached_publicly(setup):
    client, keys = setup
    r = client.get("/collections/open", headers=as_(keys, "partner A"))
    assert "private" in r.headers["cache-control"]
    assert "Authorization" in r.headers["vary"]


def test_rate_limit_per_key_answers_429_with_retry_after(pg_env):
    with psycopg.connect(autocommit=True) as conn:
        add_org(conn, "Busy", "TH", "partner", "test")
        key = issue_key(conn, "Busy", ["read"], "test")[0]
    settings = Settings(rate_limit_per_s=1, rate_limit_burst=2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        keyed = {"X-API-Key": key}
        codes = [client.get("/collections", headers=keyed).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.get("/collections", headers=keyed)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["code"] == "TooManyRequests"
        assert client.get("/collections").status_code == 200  # another caller: not limited
        assert client.get("/healthz", headers=keyed).status_code == 200  # health never is


def test_admin_endpoints_do_what_the_cli_does(setup):
    client, keys = setup
    admin_h = as_(keys, "admin")
    assert client.get("/admin/keys").status_code == 401
    assert client.get("/admin/keys", headers=as_(keys, "partner A")).status_code == 403
    r = client.post(
        "/admin/organisations",
        headers=admin_h,
        json={"name": "INPE", "country": "BR", "kind": "partner"},
    )
    assert r.status_code == 201
    r = client.post("/admin/keys", headers=admin_h, json={"org": "INPE", "scopes": ["read"]})
    assert r.status_code == 201
    inpe = r.json()["key"]
    assert client.get("/collections/inhouse", headers={"X-API-Key": inpe}).status_code == 404
    r = client.put(
        "/admin/policies/inhouse", headers=admin_h, json={"policy": "partners", "orgs": ["INPE"]}
    )
    assert r.status_code == 200
    assert client.get("/collections/inhouse", headers={"X-API-Key": inpe}).status_code == 200
    listing = client.get("/admin/keys", headers=admin_h, params={"org": "INPE"}).json()
    assert [k["prefix"] for k in listing] == [r_prefix := inpe.split("_")[1]]
    assert inpe.split("_", 2)[2] not in str(listing)
    assert client.delete(f"/admin/keys/{r_prefix}", headers=admin_h).status_code == 204
    assert client.get("/collections", headers={"X-API-Key": inpe}).status_code == 401
    r = client.put("/admin/policies/inhouse", headers=admin_h, json={"policy": "partners"})
    assert r.status_code == 400 and "at least one" in r.json()["description"]
    r = client.put("/admin/policies/inhouse", headers=admin_h, json={"policy": "private"})
    assert r.status_code == 200


def test_admin_registers_organisations_and_switches_their_approval(setup):
    client, keys = setup
    admin_h = as_(keys, "admin")
    body = {"name": "NARSS", "country": "eg", "kind": "agency"}
    manual = {"approval": "manual"}
    # Anonymous: 401; a partner's key and an ingest key: 403, in the STAC error shape.
    assert client.post("/admin/organisations", json=body).status_code == 401
    assert client.put("/admin/organisations/GISTDA/approval", json=manual).status_code == 401
    for who in ("partner A", "ingest"):
        r = client.post("/admin/organisations", headers=as_(keys, who), json=body)
        assert r.status_code == 403 and r.json()["code"] == "Forbidden", r.text
        r = client.put("/admin/organisations/GISTDA/approval", headers=as_(keys, who), json=manual)
        assert r.status_code == 403 and r.json()["code"] == "Forbidden", r.text
    assert "NARSS" not in {
        o["name"] for o in client.get("/admin/organisations", headers=admin_h).json()
    }

    r = client.post("/admin/organisations", headers=admin_h, json=body)
    assert r.status_code == 201, r.text
    again = client.post("/admin/organisations", headers=admin_h, json=body)
    assert again.status_code == 409 and again.json()["code"] == "Conflict"
    bad = client.post("/admin/organisations", headers=admin_h, json=body | {"country": "E1"})
    assert bad.status_code == 400 and "two-letter" in bad.json()["description"]

    def listed() -> dict[str, dict]:
        return {o["name"]: o for o in client.get("/admin/organisations", headers=admin_h).json()}

    assert (listed()["NARSS"]["country"], listed()["NARSS"]["approval"]) == ("EG", "auto")
    r = client.put("/admin/organisations/NARSS/approval", headers=admin_h, json=manual)
    assert r.status_code == 200 and r.json() == {"name": "NARSS", "approval": "manual"}
    assert listed()["NARSS"]["approval"] == "manual"
    assert listed()["GISTDA"]["approval"] == "auto", "only the organisation named"
    with psycopg.connect(autocommit=True) as conn:  # what the orders service reads
        held = conn.execute(
            "SELECT o.name FROM csdr.manual_approval m JOIN csdr.organisations o ON o.id = m.org_id"
        ).fetchall()
        actions = conn.execute(
            "SELECT actor, detail->>'approval' FROM csdr.audit_log"
            " WHERE action = 'quota.approval' AND detail->>'org' = 'NARSS'"
        ).fetchall()
    assert ("NARSS",) in held
    assert actions == [(f"key:{keys['admin'].split('_')[1]}", "manual")]
    r = client.put(
        "/admin/organisations/NARSS/approval", headers=admin_h, json={"approval": "auto"}
    )
    assert r.status_code == 200 and listed()["NARSS"]["approval"] == "auto"

    missing = client.put("/admin/organisations/Nobody/approval", headers=admin_h, json=manual)
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    assert "Nobody" in missing.json()["description"]
    wrong = client.put(
        "/admin/organisations/NARSS/approval", headers=admin_h, json={"approval": "x"}
    )
    assert wrong.status_code == 400 and "approval" in wrong.json()["description"]


def test_account_shows_the_callers_organisation_and_its_keys_only(setup):
    client, keys = setup
    assert client.get("/account").status_code == 401
    assert client.get("/account/keys").status_code == 401
    assert client.get("/account/keys", headers=as_(keys, "revoked")).status_code == 401
    me = client.get("/account", headers=as_(keys, "partner A"))
    assert me.status_code == 200
    prefix = keys["partner A"].split("_")[1]
    assert me.json() == {
        "organisation": "GISTDA",
        "country": "TH",
        "kind": "partner",
        "key": prefix,
        "scopes": ["read"],
        "admin": False,
        "grants": [],
    }
    listed = client.get("/account/keys", headers=as_(keys, "partner A")).json()
    gistda = {keys[w].split("_")[1] for w in ("partner A", "revoked", "expired")}
    assert {k["prefix"] for k in listed} >= gistda
    assert {k["org"] for k in listed} == {"GISTDA"}, "another organisation's keys are not shown"
    assert not any(keys[w].split("_", 2)[2] in str(listed) for w in keys)
    revoked = next(k for k in listed if k["prefix"] == keys["revoked"].split("_")[1])
    assert revoked["revoked_at"] is not None
    other = client.get("/account/keys", headers=as_(keys, "partner B")).json()
    assert {k["org"] for k in other} == {"KenSpace"}
    assert client.get("/account", headers=as_(keys, "admin")).json()["admin"] is True


def test_an_organisations_administrator_manages_its_own_keys_only(setup):
    client, keys = setup
    admin_h = as_(keys, "admin")
    r = client.post(
        "/admin/keys", headers=admin_h, json={"org": "GISTDA", "scopes": ["read", "org-admin"]}
    )
    assert r.status_code == 201, r.text
    manager = {"X-API-Key": r.json()["key"]}
    manager_prefix = r.json()["prefix"]
    assert client.get("/account", headers=manager).json()["grants"] == ["read", "org-admin"]
    assert client.get("/account", headers=admin_h).json()["grants"] == [
        "read",
        "ingest",
        "admin",
        "mirror",
        "org-admin",
    ]

    def gistda_keys() -> set[str]:
        return {k["prefix"] for k in client.get("/account/keys", headers=manager).json()}

    before = gistda_keys()
    # Neither anonymous callers nor a plain partner key issue keys; nor does the manager grant
    # what only node administrators grant.
    assert client.post("/account/keys", json={"scopes": ["read"]}).status_code == 401
    plain = client.post("/account/keys", headers=as_(keys, "partner A"), json={"scopes": ["read"]})
    assert plain.status_code == 403 and plain.json()["code"] == "Forbidden"
    assert "org-admin" in plain.json()["description"]
    for scopes in (["ingest"], ["read", "admin"], ["mirror"]):
        r = client.post("/account/keys", headers=manager, json={"scopes": scopes})
        assert r.status_code == 403, (scopes, r.text)
    assert gistda_keys() == before, "nothing was issued"

    # Issued for its own organisation, shown once; the key works at once.
    r = client.post(
        "/account/keys", headers=manager, json={"scopes": ["read"], "label": "field team"}
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["org"] == "GISTDA" and issued["scopes"] == ["read"]
    assert issued["key"].split("_")[1] == issued["prefix"]
    assert client.get("/collections/thai", headers={"X-API-Key": issued["key"]}).status_code == 200
    listed = {k["prefix"]: k for k in client.get("/account/keys", headers=manager).json()}
    assert listed[issued["prefix"]]["label"] == "field team"
    assert issued["key"].split("_", 2)[2] not in str(listed)

    # Another organisation's key is not found, and keeps working; a plain partner key revokes
    # nothing; a key holding a node administrator's scope is the node administrators'.
    partner_b = keys["partner B"].split("_")[1]
    r = client.delete(f"/account/keys/{partner_b}", headers=manager)
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
    assert client.get("/collections", headers=as_(keys, "partner B")).status_code == 200
    r = client.delete(f"/account/keys/{issued['prefix']}", headers=as_(keys, "partner A"))
    assert r.status_code == 403
    mirror = client.post(
        "/admin/keys", headers=admin_h, json={"org": "GISTDA", "scopes": ["read", "mirror"]}
    ).json()
    r = client.delete(f"/account/keys/{mirror['prefix']}", headers=manager)
    assert r.status_code == 403 and "mirror" in r.json()["description"]
    assert client.get("/collections", headers={"X-API-Key": mirror["key"]}).status_code == 200

    # Revoked: the key stops working; a second revocation finds no active key.
    assert client.delete(f"/account/keys/{issued['prefix']}", headers=manager).status_code == 204
    assert client.get("/collections", headers={"X-API-Key": issued["key"]}).status_code == 401
    assert client.delete(f"/account/keys/{issued['prefix']}", headers=manager).status_code == 404
    with psycopg.connect(autocommit=True) as conn:
        actors = conn.execute(
            "SELECT actor FROM csdr.audit_log WHERE detail->>'prefix' = %s ORDER BY id",
            (issued["prefix"],),
        ).fetchall()
    assert actors == [(f"key:{manager_prefix}",)] * 2  # issued and revoked by the manager

    # Policies and every key stay the node administrators'.
    for headers in (manager, as_(keys, "partner A")):
        r = client.put(
            "/admin/policies/thai",
            headers=headers,
            json={"policy": "partners", "orgs": ["KenSpace"]},
        )
        assert r.status_code == 403 and r.json()["code"] == "Forbidden"
        assert client.get("/admin/keys", headers=headers).status_code == 403
    assert client.get("/collections/thai", headers=as_(keys, "partner B")).status_code == 404
