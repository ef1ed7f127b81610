"""Changes on the portal's organisation pages, in a real browser over a real node's services
(catalog, orders and portal as processes over pgSTAC): an organisation's administrator issues
and revokes its keys; the node's administrator sets a collection's policy and approves or
refuses orders held for approval. Each change is checked against the services' APIs, appears on
the page without a reload, and is refused by the services themselves to keys that may not make
it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_access.quotas import set_approval
from tests.e2e import catalog_scenes
from tests.e2e.browser import Watched, chromium, watch
from tests.e2e.processes import service

RESTRICTED = catalog_scenes.SENSORS[1].collection  # the collection whose policy changes


@pytest.fixture(scope="module")
def site(pg_cluster, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Catalog, orders and the portal over a fresh database with eight catalogue scenes (no
    tiler or ingest: these pages need neither); Partner (orders held for approval) with a
    manager's key and a plain one; Other with a plain key; the node administrator's key."""
    name = f"padm_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    base = tmp_path_factory.mktemp("portal-admin")
    ports = {svc: free_port() for svc in ("catalog", "orders", "portal")}
    urls = {svc: f"http://127.0.0.1:{port}" for svc, port in ports.items()}
    env = {
        **pg_cluster.env(name),
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",  # revoked keys on purpose, all from 127.0.0.1
        "CSDR_CATALOG_ACCESS_TTL_S": "0",  # a change applies at once: nothing to wait for
        "CSDR_ORDERS_PUBLIC_URL": urls["orders"],
        "CSDR_ORDERS_CATALOG_URL": urls["catalog"],
        "CSDR_ORDERS_ASSET_ROOTS": str(base),
        "CSDR_ORDERS_WORKER": "false",
    }
    portal_env = {
        "CSDR_PORTAL_CATALOG_URL": urls["catalog"],
        "CSDR_PORTAL_TILER_URL": "",
        "CSDR_PORTAL_PUSH_URL": "",
        "CSDR_PORTAL_ORDERS_URL": urls["orders"],
    }
    catalog_scenes.load(env, 8)
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        add_org(conn, "Node", "CN", "main", "test")
        add_org(conn, "Partner", "TH", "partner", "test")
        add_org(conn, "Other", "KE", "partner", "test")
        set_approval(conn, "Partner", "manual", "test")
        keys = {
            "admin": issue_key(conn, "Node", ["admin"], "test")[0],
            "manager": issue_key(conn, "Partner", ["read", "org-admin"], "test")[0],
            "partner": issue_key(conn, "Partner", ["read"], "test")[0],
            "other": issue_key(conn, "Other", ["read"], "test")[0],
        }
    try:
        with (
            service("csdr_catalog.app:create_app", ports["catalog"], env, base),
            service("csdr_orders.app:create_app", ports["orders"], env, base),
            service("csdr_portal.app:create_app", ports["portal"], portal_env, base),
        ):
            yield {**urls, **keys}
    finally:
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser(site) -> Iterator:
    with chromium() as b:
        yield b


def keyed(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def settle(w: Watched) -> None:
    w.page.wait_for_selector('body[data-ready="true"][data-pending="0"]', state="attached")


def open_org(w: Watched, portal: str, key: str, page: str) -> None:
    """The organisation page `page` with `key` in use, marked to tell a reload apart."""
    w.page.goto(f"{portal}/?org={page}")
    settle(w)
    w.page.click("#key-button")
    w.page.fill("#key-input", key)
    w.page.click("#key-save")
    settle(w)
    w.page.wait_for_selector(f'#org-body[data-page="{page}"]', state="attached")
    w.page.evaluate("window.notReloaded = true")


def not_reloaded(w: Watched) -> bool:
    return w.page.evaluate("window.notReloaded === true")


def rows(w: Watched, name: str, attribute: str = "row") -> dict[str, str]:
    """Row key -> the row's data attribute `attribute`, for the table `name`."""
    return dict(
        w.page.eval_on_selector_all(
            f'#org-body table[data-table="{name}"] tbody tr[data-row]',
            f"els => els.map(e => [e.dataset.row, e.dataset.{attribute}])",
        )
    )


def row(name: str, key: str) -> str:
    return f'#org-body table[data-table="{name}"] tr[data-row="{key}"]'


def eventually(check: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait (bounded) for the services' access caches to see a change."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the change did not take effect in time"
        time.sleep(0.2)


def test_an_organisations_administrator_issues_and_revokes_its_keys(browser, site):
    catalog = site["catalog"]
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    open_org(w, site["portal"], site["manager"], "keys")
    assert w.page.locator("#usage-form").is_hidden(), "the usage form is the usage page's"
    # Only the scopes this key may grant are offered.
    offered = w.page.eval_on_selector_all("#issue-scopes input", "els => els.map(e => e.value)")
    assert (
        offered
        == httpx.get(f"{catalog}/account", headers=keyed(site["manager"])).json()["grants"]
        == ["read", "org-admin"]
    )

    w.page.fill("#issue-label", "field team")
    w.page.click("#issue-submit")
    settle(w)
    secret = w.page.inner_text("#issued-secret")
    prefix = secret.split("_")[1]
    me = httpx.get(f"{catalog}/account", headers=keyed(secret))
    assert me.status_code == 200 and me.json()["organisation"] == "Partner"
    assert me.json()["scopes"] == ["read"]
    listed = httpx.get(f"{catalog}/account/keys", headers=keyed(site["manager"])).json()
    assert list(rows(w, "keys")) == [k["prefix"] for k in listed]
    assert rows(w, "keys", "status")[prefix] == "active"
    assert w.page.inner_text(f"{row('keys', prefix)} td >> nth=3") == "field team"
    # Shown once: not in the URL, not kept by the browser, gone once hidden.
    stored = w.page.evaluate("JSON.stringify(sessionStorage) + JSON.stringify(localStorage)")
    assert secret not in w.page.url and secret not in stored
    w.page.click("#issued-key button.forget")
    assert w.page.locator("#issued-secret").count() == 0

    # Revoking takes two clicks; the key in use and Other's keys offer none.
    other_prefix = site["other"].split("_")[1]
    assert other_prefix not in rows(w, "keys")
    assert (
        w.page.locator(f"{row('keys', site['manager'].split('_')[1])} button.revoke").count() == 0
    )
    revoke = f"{row('keys', prefix)} button.revoke"
    w.page.click(revoke)
    assert w.page.get_attribute(revoke, "data-confirm") == "true"
    assert httpx.get(f"{catalog}/account", headers=keyed(secret)).status_code == 200
    w.page.click(revoke)
    settle(w)
    assert rows(w, "keys", "status")[prefix] == "revoked"
    assert w.page.locator(revoke).count() == 0
    eventually(lambda: httpx.get(f"{catalog}/account", headers=keyed(secret)).status_code == 401)
    assert not_reloaded(w)
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()

    # The services refuse what the page does not offer: another organisation's key, a plain key.
    r = httpx.delete(f"{catalog}/account/keys/{other_prefix}", headers=keyed(site["manager"]))
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
    assert httpx.get(f"{catalog}/account", headers=keyed(site["other"])).status_code == 200
    r = httpx.post(
        f"{catalog}/account/keys", json={"scopes": ["read"]}, headers=keyed(site["partner"])
    )
    assert r.status_code == 403 and r.json()["code"] == "Forbidden"
    r = httpx.post(
        f"{catalog}/account/keys", json={"scopes": ["ingest"]}, headers=keyed(site["manager"])
    )
    assert r.status_code == 403

    # A plain partner key sees its keys, with nothing to change.
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    open_org(w, site["portal"], site["partner"], "keys")
    assert prefix in rows(w, "keys")
    assert w.page.locator("#key-issue").count() == 0
    assert w.page.locator("#org-body button.revoke").count() == 0
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


def test_the_node_administrator_sets_policies_and_decides_held_orders(browser, site):
    catalog, orders = site["catalog"], site["orders"]
    admin = keyed(site["admin"])

    def sees(key: str) -> bool:
        return (
            httpx.get(f"{catalog}/collections/{RESTRICTED}", headers=keyed(key)).status_code == 200
        )

    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    open_org(w, site["portal"], site["admin"], "policies")
    assert rows(w, "policies", "policy")[RESTRICTED] == "public"
    editor = f"{row('policies', RESTRICTED)} .policy-editor"

    # `partners` with nobody named: the catalog's 400, in its words, on the page.
    w.page.select_option(f"{editor} select.policy", "partners")
    w.page.click(f"{editor} button.save-policy")
    settle(w)
    assert w.page.get_attribute("#org-status", "data-error") == "400"
    assert "at least one" in w.page.inner_text("#org-status")
    assert [e for e in w.errors if "status of 400" not in e] == []
    w.errors.clear()  # the browser logs the refused request itself

    w.page.select_option(f"{editor} select.partners", ["Partner"])
    w.page.click(f"{editor} button.save-policy")
    settle(w)
    assert w.page.inner_text("#org-status") == ""
    assert rows(w, "policies", "policy")[RESTRICTED] == "partners"
    assert w.page.inner_text(f"{row('policies', RESTRICTED)} td >> nth=2") == "Partner"
    stored = {
        p["collection"]: p for p in httpx.get(f"{catalog}/admin/policies", headers=admin).json()
    }
    assert (stored[RESTRICTED]["policy"], stored[RESTRICTED]["orgs"]) == ("partners", ["Partner"])
    eventually(lambda: sees(site["partner"]) and not sees(site["other"]))

    w.page.select_option(f"{editor} select.policy", "private")
    assert w.page.is_disabled(f"{editor} select.partners")
    w.page.click(f"{editor} button.save-policy")
    settle(w)
    assert rows(w, "policies", "policy")[RESTRICTED] == "private"
    eventually(lambda: not sees(site["partner"]) and sees(site["admin"]))
    # Only the node's administrators set policies, an organisation's administrator included.
    for who in ("manager", "partner"):
        r = httpx.put(
            f"{catalog}/admin/policies/{RESTRICTED}",
            json={"policy": "public"},
            headers=keyed(site[who]),
        )
        assert r.status_code == 403 and r.json()["code"] == "Forbidden"
    w.page.select_option(f"{editor} select.policy", "public")
    w.page.click(f"{editor} button.save-policy")
    settle(w)
    assert rows(w, "policies", "policy")[RESTRICTED] == "public"
    eventually(lambda: sees(site["other"]))

    # Orders: two of Partner's wait for approval, Other's was delivered at once.
    scenes = [f for f in catalog_scenes.items(8) if f["collection"] != RESTRICTED][:3]

    def place(key: str, scene: dict) -> dict:
        body = {"items": [{"collection": scene["collection"], "id": scene["id"]}]}
        r = httpx.post(f"{orders}/orders", json=body, headers=keyed(key))
        assert r.status_code == 201, r.text
        return r.json()

    approve_me, refuse_me = place(site["partner"], scenes[0]), place(site["partner"], scenes[1])
    delivered = place(site["other"], scenes[2])
    assert approve_me["awaiting_approval"] and refuse_me["awaiting_approval"]
    assert delivered["status"] == "succeeded"
    for who in ("manager", "partner", "other"):
        r = httpx.post(f"{orders}/orders/{approve_me['id']}/approve", headers=keyed(site[who]))
        assert r.status_code == 403 and r.json()["code"] == "Forbidden"

    w.page.click("#org-tab-orders")
    settle(w)
    w.page.wait_for_selector('#org-body[data-page="orders"]', state="attached")
    awaiting = rows(w, "orders", "awaiting")
    assert awaiting[approve_me["id"]] == awaiting[refuse_me["id"]] == "true"
    assert awaiting[delivered["id"]] == "false"
    assert w.page.locator(f"{row('orders', delivered['id'])} button.approve").count() == 0

    w.page.fill(f"{row('orders', approve_me['id'])} input.reason", "within the MOU")
    w.page.click(f"{row('orders', approve_me['id'])} button.approve")
    settle(w)
    approved = httpx.get(f"{orders}/orders/{approve_me['id']}", headers=admin).json()
    assert approved["status"] == "succeeded" and not approved["awaiting_approval"]
    decided = [h for h in approved["history"] if h["reason_code"] == "approved"]
    assert len(decided) == 1 and "within the MOU" in decided[0]["reason_text"]
    assert rows(w, "orders", "status")[approve_me["id"]] == "succeeded"
    assert rows(w, "orders", "awaiting")[approve_me["id"]] == "false"

    w.page.click(f"{row('orders', refuse_me['id'])} button.refuse")
    settle(w)
    refused = httpx.get(f"{orders}/orders/{refuse_me['id']}", headers=admin).json()
    assert refused["status"] == "canceled"
    assert refused["history"][-1]["reason_code"] == "rejected"
    assert rows(w, "orders", "status")[refuse_me["id"]] == "canceled"
    assert w.page.locator("#org-body button.approve").count() == 0

    # A key for another organisation, through /admin/keys, and its revocation.
    w.page.click("#org-tab-keys")
    settle(w)
    w.page.wait_for_selector("#key-issue", state="attached")
    offered = w.page.eval_on_selector_all("#issue-scopes input", "els => els.map(e => e.value)")
    assert offered == ["read", "ingest", "admin", "mirror", "org-admin"]
    w.page.select_option("#issue-org", "Other")
    w.page.click("#issue-submit")
    settle(w)
    secret = w.page.inner_text("#issued-secret")
    prefix = secret.split("_")[1]
    assert httpx.get(f"{catalog}/account", headers=keyed(secret)).json()["organisation"] == "Other"
    assert w.page.inner_text(f"{row('keys', prefix)} td >> nth=1") == "Other"
    for _ in range(2):
        w.page.click(f"{row('keys', prefix)} button.revoke")
    settle(w)
    assert rows(w, "keys", "status")[prefix] == "revoked"
    eventually(lambda: httpx.get(f"{catalog}/account", headers=keyed(secret)).status_code == 401)
    assert not_reloaded(w)
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()


def test_the_node_administrator_registers_organisations_and_switches_approval(browser, site):
    catalog, orders = site["catalog"], site["orders"]
    admin = keyed(site["admin"])
    scene = next(f for f in catalog_scenes.items(8) if f["collection"] != RESTRICTED)

    def listed() -> dict[str, dict]:
        found = httpx.get(f"{catalog}/admin/organisations", headers=admin).json()
        return {o["name"]: o for o in found}

    def held(key: str) -> bool:
        body = {"items": [{"collection": scene["collection"], "id": scene["id"]}]}
        r = httpx.post(f"{orders}/orders", json=body, headers=keyed(key))
        assert r.status_code == 201, r.text
        return bool(r.json()["awaiting_approval"])

    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    open_org(w, site["portal"], site["admin"], "organisations")
    assert rows(w, "organisations", "approval") == {
        name: o["approval"] for name, o in listed().items()
    }
    assert rows(w, "organisations", "approval")["Partner"] == "manual"

    w.page.fill("#register-name", "Lao GIS")
    w.page.fill("#register-country", "la")
    w.page.select_option("#register-kind", "agency")
    w.page.click("#register-submit")
    settle(w)
    assert w.page.inner_text("#org-status") == ""
    lao = listed()["Lao GIS"]
    assert (lao["country"], lao["kind"], lao["approval"]) == ("LA", "agency", "auto")
    assert rows(w, "organisations", "approval")["Lao GIS"] == "auto"
    assert w.page.inner_text(f"{row('organisations', 'Lao GIS')} td >> nth=1") == "LA"

    # The same name again: the catalog's 409, in its words, on the page; nothing changes.
    w.page.fill("#register-name", "Lao GIS")
    w.page.fill("#register-country", "LA")
    w.page.click("#register-submit")
    settle(w)
    assert w.page.get_attribute("#org-status", "data-error") == "409"
    assert "exists already" in w.page.inner_text("#org-status")
    assert [e for e in w.errors if "status of 409" not in e] == []
    w.errors.clear()  # the browser logs the refused request itself
    assert list(listed()).count("Lao GIS") == 1

    # A key for it; its orders are accepted at once, then held once approval is manual.
    r = httpx.post(
        f"{catalog}/admin/keys", json={"org": "Lao GIS", "scopes": ["read"]}, headers=admin
    )
    lao_key = r.json()["key"]
    assert not held(lao_key)
    switch = f"{row('organisations', 'Lao GIS')} input.approval"
    w.page.check(switch)
    settle(w)
    assert rows(w, "organisations", "approval")["Lao GIS"] == "manual"
    assert w.page.is_checked(switch)
    assert listed()["Lao GIS"]["approval"] == "manual"
    assert listed()["Other"]["approval"] == "auto", "only the organisation switched"
    assert held(lao_key)
    w.page.uncheck(switch)
    settle(w)
    assert rows(w, "organisations", "approval")["Lao GIS"] == "auto"
    assert listed()["Lao GIS"]["approval"] == "auto"
    assert not held(lao_key)
    assert not_reloaded(w)
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()

    # Only node administrators: an organisation's administrator has no such page, and the
    # catalog refuses it (403) what the page would send; an unknown organisation is 404.
    w = watch(browser.new_context(viewport={"width": 1280, "height": 800}))
    open_org(w, site["portal"], site["manager"], "keys")
    assert w.page.locator("#org-tab-organisations").count() == 0
    assert not w.errors and not w.blocked, (w.errors, w.blocked)
    w.context.close()
    for who in ("manager", "partner"):
        r = httpx.put(
            f"{catalog}/admin/organisations/Partner/approval",
            json={"approval": "auto"},
            headers=keyed(site[who]),
        )
        assert r.status_code == 403 and r.json()["code"] == "Forbidden"
        r = httpx.post(
            f"{catalog}/admin/organisations",
            json={"name": "Mine", "country": "TH", "kind": "partner"},
            headers=keyed(site[who]),
        )
        assert r.status_code == 403 and r.json()["code"] == "Forbidden"
    assert listed()["Partner"]["approval"] == "manual" and "Mine" not in listed()
    r = httpx.put(
        f"{catalog}/admin/organisations/Nobody/approval", json={"approval": "manual"}, headers=admin
    )
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
