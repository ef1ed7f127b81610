"""Two whole nodes on this machine (two databases, two port sets): a partner (`la`) mirrors two
collections of the main node limited to an area and a cloud cover, through main's change feed and
its own sync worker, both real processes. The link goes down while items are created, updated and
deleted on main; the partner converges exactly. A `kill -9` mid-page changes nothing; a
transaction committing after a later one is still delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import morecantile
import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key, set_policy
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings as IngestSettings
from csdr_ingest.synthetic import Scene, write_scene
from csdr_service.errors import run_again_on_conflict
from infra.local.pgcluster import Cluster
from services.federation.tests.conftest import stac_collection, stac_item
from tests.e2e.processes import service, service_process

pytestmark = pytest.mark.slow

AREA = "100,10,110,25"  # Laos and around
NEAR, FAR = {"lon": 102.6, "lat": 17.9}, {"lon": 118.9, "lat": 37.8}
MAX_CLOUD = 20
MIRRORED = ("gf1", "gf2")
# A small synthetic scene over Vientiane (UTM zone 48N), inside AREA.
VIENTIANE = Scene(
    "LA_VIENTIANE_20240301", "EPSG:32648", 246_000, 1_990_000, datetime(2024, 3, 1, 3, 0), seed=7,
    size=512,
)  # fmt: skip


@dataclass
class Federation:
    """The two nodes: their databases, the partner's STAC API, and main's feed to stop/start."""

    cluster: Cluster
    main_db: str
    partner_db: str
    main_catalog: str
    partner_catalog: str
    base: Path
    stack: ExitStack
    main_feed_port: int
    partner_feed_port: int
    main_env: dict[str, str]
    partner_env: dict[str, str]
    main_feed: ExitStack | None = None
    partner_feed: ExitStack | None = None
    partner_proc: subprocess.Popen[bytes] | None = None

    @property
    def main_assets(self) -> Path:
        return self.base / "main-assets"

    def main(self) -> psycopg.Connection:
        return connect(self.cluster.conninfo(self.main_db))

    def partner(self) -> psycopg.Connection:
        return connect(self.cluster.conninfo(self.partner_db))

    def start_main_feed(self) -> None:
        self.main_feed = ExitStack()
        self.main_feed.enter_context(
            service("csdr_federation.app:create_app", self.main_feed_port, self.main_env, self.base)
        )

    def stop_main_feed(self) -> None:
        assert self.main_feed is not None
        self.main_feed.close()
        self.main_feed = None

    def start_partner_worker(self) -> None:
        self.partner_feed = ExitStack()
        _, self.partner_proc = self.partner_feed.enter_context(
            service_process(
                "csdr_federation.app:create_app",
                self.partner_feed_port,
                self.partner_env,
                self.base,
            )
        )

    def kill_partner_worker(self) -> None:
        assert self.partner_proc is not None and self.partner_feed is not None
        os.kill(self.partner_proc.pid, signal.SIGKILL)
        self.partner_proc.wait()
        self.partner_feed.close()
        self.partner_feed = None


def connect(conninfo: str) -> psycopg.Connection:
    """An autocommit connection with pgSTAC on the search path (content_hydrate needs it)."""
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.execute("SET search_path TO pgstac, public")
    return conn


def wait_until(check: Callable[[], Any], timeout_s: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {timeout_s}s: {what}")
        time.sleep(0.2)


def write_items(conn: psycopg.Connection, items: list[dict[str, Any]]) -> None:
    """Write items in one transaction, as ingest and pypgstac do (pgSTAC's upsert), again when
    it lost to the node's own writers (a new partition against federation's page)."""

    def write() -> None:
        with conn.transaction():
            conn.execute("SELECT pgstac.upsert_items(%s)", (Jsonb(items),))

    run_again_on_conflict(write, "writing items")


def delete_items(conn: psycopg.Connection, keys: list[tuple[str, str]]) -> None:
    with conn.transaction():
        for collection, item_id in keys:
            conn.execute("SELECT pgstac.delete_item(%s, %s)", (item_id, collection))


def hydrated(conn: psycopg.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    rows = conn.execute(
        "SELECT collection, id, pgstac.content_hydrate(i) FROM pgstac.items i"
    ).fetchall()
    return {(c, i): item for c, i, item in rows}


def expected_on_partner(
    fed: Federation, main: psycopg.Connection
) -> dict[tuple[str, str], dict[str, Any]]:
    """Main's items that the partner's selection covers (the two collections, area, cloud)."""
    west, south, east, north = (float(v) for v in AREA.split(","))
    inside = {
        (c, i)
        for c, i in main.execute(
            "SELECT collection, id FROM pgstac.items WHERE collection = ANY(%s)"
            " AND st_intersects(geometry, st_makeenvelope(%s, %s, %s, %s, 4326))",
            (list(MIRRORED), west, south, east, north),
        ).fetchall()
    }
    return {
        key: published(fed, item)
        for key, item in hydrated(main).items()
        if key in inside and item["properties"].get("eo:cloud_cover", 100) <= MAX_CLOUD
    }


def published(fed: Federation, item: dict[str, Any]) -> dict[str, Any]:
    """Main's stored item as its feed serves it: its files (under main's asset directory) as
    main's download URLs, no stored navigation links (the STAC API writes its own)."""
    base = f"{fed.main_catalog}/collections/{item['collection']}/items/{item['id']}/assets"
    assets = {
        key: {**asset, "href": f"{base}/{key}"}
        if asset["href"].startswith(str(fed.main_assets))
        else asset
        for key, asset in item["assets"].items()
    }
    links = [link for link in item["links"] if link["rel"] not in ("self", "collection", "root")]
    return {**item, "assets": assets, "links": links}


def as_origin(item: dict[str, Any]) -> dict[str, Any]:
    """A mirrored item without what the mirror added: what the origin published (copied assets
    read the origin's href again, kept as their alternate `main`)."""
    properties = {k: v for k, v in item["properties"].items() if k != "csdr:origin"}
    links = [link for link in item["links"] if link["rel"] != "via"]
    origin = {**item, "properties": properties, "links": links}
    assets = {}
    for key, asset in item["assets"].items():
        alternate = dict(asset.get("alternate", {}))
        if "main" in alternate:
            asset = {**asset, "href": alternate.pop("main")["href"]}
            asset = {k: v for k, v in asset.items() if k != "alternate"}
            if alternate:
                asset["alternate"] = alternate
            extensions = [e for e in origin["stac_extensions"] if "alternate-assets" not in e]
            origin = {**origin, "stac_extensions": extensions}
        assets[key] = asset
    return {**origin, "assets": assets}


def peer_row(partner: psycopg.Connection) -> dict[str, Any]:
    with partner.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM csdr.federation_peers WHERE name = 'main'").fetchone()
    assert row is not None
    return row


def converged(fed: Federation) -> bool:
    with fed.main() as main, fed.partner() as partner:
        want = expected_on_partner(fed, main)
        have = {k: as_origin(v) for k, v in hydrated(partner).items() if k[0] in MIRRORED}
        return have == want and peer_row(partner)["at_head"]


def set_status(partner: psycopg.Connection, status: str) -> None:
    partner.execute("UPDATE csdr.federation_peers SET status = %s", (status,))


def partner_events(partner: psycopg.Connection, after_id: int) -> dict[tuple[str, str], list[str]]:
    events: dict[tuple[str, str], list[str]] = {}
    for c, i, kind in partner.execute(
        "SELECT collection, item_id, type FROM csdr.item_events WHERE id > %s ORDER BY id",
        (after_id,),
    ).fetchall():
        events.setdefault((c, i), []).append(kind)
    return events


def last_event_id(partner: psycopg.Connection) -> int:
    return int(partner.execute("SELECT coalesce(max(id), 0) FROM csdr.item_events").fetchone()[0])


def csdr_admin(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "csdr_access.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def fed(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    main_db, partner_db = (f"fed_{n}_{uuid.uuid4().hex[:8]}" for n in ("main", "la"))
    for name in (main_db, partner_db):
        pg_cluster.create_database(name, template=TEMPLATE_DB)
    base = tmp_path_factory.mktemp("federation")
    with psycopg.connect(pg_cluster.conninfo(main_db), autocommit=True) as main:
        for cid in ("gf1", "gf2", "gf6"):
            main.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection(cid)),))
        add_org(main, "LASAC", "LA", "partner", "test")
        set_policy(main, "gf2", "partners", ["LASAC"], "test")
        key = issue_key(main, "LASAC", ["read"], "test")[0]
    main_port, main_catalog_port, partner_catalog_port = free_port(), free_port(), free_port()
    main_push_port, partner_feed_port = free_port(), free_port()
    main_env = {
        **pg_cluster.env(main_db),
        "CSDR_INGEST_ASSETS_DIR": str(base / "main-assets"),  # Federation.main_assets
        "CSDR_FEDERATION_NODE_NAME": "main",
        "CSDR_FEDERATION_CATALOG_URL": f"http://127.0.0.1:{main_catalog_port}",
        # Main mirrors the partner's own products too (test_both_ways...).
        "CSDR_FEDERATION_POLL_INTERVAL_S": "0.3",
        "CSDR_FEDERATION_BACKOFF_MAX_S": "1",
    }
    partner_env = {
        **pg_cluster.env(partner_db),
        "CSDR_INGEST_ASSETS_DIR": str(base / "la-assets"),
        "CSDR_FEDERATION_NODE_NAME": "la",
        # Main's push service wakes the partner's worker (peer add --push) at this URL.
        "CSDR_FEDERATION_PUBLIC_URL": f"http://127.0.0.1:{partner_feed_port}",
        "CSDR_FEDERATION_CATALOG_URL": f"http://127.0.0.1:{partner_catalog_port}",
        "CSDR_FEDERATION_POLL_INTERVAL_S": "0.3",
        "CSDR_FEDERATION_BACKOFF_MAX_S": "1",
        "CSDR_FEDERATION_PAGE_SIZE": "50",
        "CSDR_FEDERATION_APPLY_CHUNK": "20",
    }
    # The partner registers main with the command an operator types.
    csdr_admin(
        pg_cluster.env(partner_db), "peer", "add", "main", f"http://127.0.0.1:{main_port}",
        "--key", key, "--collections", ",".join(MIRRORED), "--bbox", AREA,
        "--max-cloud", str(MAX_CLOUD), "--assets", "copy",
        "--push", f"http://127.0.0.1:{main_push_port}",
    )  # fmt: skip
    with ExitStack() as stack:
        main_catalog, partner_catalog = (
            stack.enter_context(service("csdr_catalog.app:create_app", port, env, base))
            for port, env in ((main_catalog_port, main_env), (partner_catalog_port, partner_env))
        )
        push_env = {**main_env, "CSDR_PUSH_ALLOW_PRIVATE_TARGETS": "true"}
        stack.enter_context(service("csdr_push.app:create_app", main_push_port, push_env, base))
        fed = Federation(
            pg_cluster, main_db, partner_db, main_catalog, partner_catalog, base, stack, main_port,
            partner_feed_port, main_env, partner_env,
        )  # fmt: skip
        fed.start_main_feed()
        fed.start_partner_worker()
        try:
            yield fed
        finally:
            for running in (fed.main_feed, fed.partner_feed):
                if running is not None:
                    running.close()
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        for name in (main_db, partner_db):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scene(n: int, collection: str, where: dict[str, float], cloud: float, **props: Any):
    return stac_item(
        f"S{n:04d}", collection=collection, **where, **{"eo:cloud_cover": cloud}, **props
    )


def test_partner_mirrors_exactly_the_matching_items_of_two_collections(fed):
    with fed.main() as main:
        write_items(main, [
            scene(1, "gf1", NEAR, 5), scene(2, "gf1", NEAR, 50), scene(3, "gf1", FAR, 5),
            scene(4, "gf2", NEAR, 10), scene(5, "gf6", NEAR, 5),
        ])  # fmt: skip
    wait_until(lambda: converged(fed), what="partner holds main's matching items")
    with fed.partner() as partner:
        assert set(hydrated(partner)) == {("gf1", "S0001"), ("gf2", "S0004")}
        collection = partner.execute("SELECT content FROM pgstac.collections WHERE id = 'gf2'")
        content = collection.fetchone()[0]
        assert content["csdr:origin"] == "main"
        assert {"name": "la", "roles": ["host"]}.items() <= content["providers"][-1].items()
    # Searchable through the partner's own STAC API, with the origin named and linked.
    found = httpx.get(f"{fed.partner_catalog}/search", params={"limit": 100}).json()["features"]
    assert {f["id"] for f in found} == {"S0001", "S0004"}
    s1 = next(f for f in found if f["id"] == "S0001")
    assert s1["properties"]["csdr:origin"] == "main"
    via = [link["href"] for link in s1["links"] if link["rel"] == "via"]
    assert via == [f"{fed.main_env['CSDR_FEDERATION_CATALOG_URL']}/collections/gf1/items/S0001"]
    self_link = next(link["href"] for link in s1["links"] if link["rel"] == "self")
    assert self_link.startswith(fed.partner_catalog)


def test_link_down_then_the_partner_converges_exactly(fed):
    wait_until(lambda: converged(fed), what="partner at main's state before the outage")
    with fed.partner() as partner:
        before = {k: as_origin(v) for k, v in hydrated(partner).items()}
        mark = last_event_id(partner)
    fed.stop_main_feed()
    with fed.main() as main:
        # 200 new scenes, most of them inside the partner's selection.
        write_items(main, [
            scene(100 + n, MIRRORED[n % 2], FAR if n % 10 == 0 else NEAR, (n * 7) % 40)
            for n in range(200)
        ])  # fmt: skip
        # Updates: twice for some (one net change), cloud out of the selection for others.
        write_items(main, [scene(100 + n, MIRRORED[n % 2], NEAR, 1, gsd=2) for n in range(1, 40)])
        write_items(main, [scene(100 + n, MIRRORED[n % 2], NEAR, 1, gsd=3) for n in range(1, 20)])
        write_items(main, [scene(1, "gf1", NEAR, 80)])  # mirrored before: leaves the selection
        delete_items(main, [(MIRRORED[n % 2], f"S{100 + n:04d}") for n in range(40, 60)])
        delete_items(main, [("gf2", "S0004")])  # mirrored before the outage
    # The worker keeps failing meanwhile, and says so.
    with fed.partner() as partner:
        wait_until(lambda: peer_row(partner)["last_error"], what="the outage recorded")
        assert "unreachable" in peer_row(partner)["last_error"]
        assert {k: as_origin(v) for k, v in hydrated(partner).items()} == before
    fed.start_main_feed()
    wait_until(lambda: converged(fed), timeout_s=120, what="convergence after the outage")
    with fed.main() as main, fed.partner() as partner:
        want = expected_on_partner(fed, main)
        assert len(want) > 100
        assert ("gf1", "S0001") not in want and ("gf2", "S0004") not in want
        row = peer_row(partner)
        assert row["last_error"] is None
        # The checkpoint is main's head: nothing more to read from it.
        head = httpx.get(
            f"http://127.0.0.1:{fed.main_feed_port}/federation/changes",
            params={"after": row["cursor"], "collections": "gf1,gf2", "bbox": AREA},
            headers={"X-API-Key": _key_of(partner)},
        ).json()
        assert head["at_head"] and head["changes"] == [] and head["next"] == row["cursor"]
        # One local event per net change.
        events = partner_events(partner, mark)
        changed = {k for k in set(want) | set(before) if want.get(k) != before.get(k)}
        assert set(events) == changed
        assert all(len(kinds) == 1 for kinds in events.values()), events
        assert events[("gf1", "S0001")] == ["deleted"] and events[("gf2", "S0004")] == ["deleted"]


def _key_of(partner: psycopg.Connection) -> str:
    return str(partner.execute("SELECT api_key FROM csdr.federation_peers").fetchone()[0])


def test_kill_9_mid_page_then_restart_equals_a_clean_run(fed):
    wait_until(lambda: converged(fed), what="partner at main's state")
    with fed.main() as main:
        targets = sorted(expected_on_partner(fed, main))[:60]
    assert len(targets) == 60
    with fed.partner() as partner, fed.partner() as blocker:
        mark = last_event_id(partner)
        set_status(partner, "paused")
        with fed.main() as main:  # one transaction: the first page is targets[:50] in order
            write_items(main, [
                scene(int(i[1:]), c, NEAR, 2, gsd=9) for c, i in targets
            ])  # fmt: skip
        # Hold a row of the page's second chunk: the worker applies the first chunk, then waits.
        # (Taken after main's write: both databases share one cluster here, and an open
        # transaction holds back the feed's horizon for every database of its cluster.)
        blocker.autocommit = False
        blocker.execute(
            "SELECT 1 FROM pgstac.items WHERE collection = %s AND id = %s FOR UPDATE", targets[25]
        )
        set_status(partner, "active")

        def worker_waits_on_the_lock() -> bool:
            return bool(
                partner.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'csdr-federation' AND wait_event_type = 'Lock'"
                ).fetchone()[0]
            )

        wait_until(worker_waits_on_the_lock, what="the worker blocked mid-page")
        cursor_before = peer_row(partner)["cursor"]
        fed.kill_partner_worker()
        blocker.rollback()
        # Nothing of the half-applied page is visible, and the checkpoint did not move.
        wait_until(lambda: not worker_waits_on_the_lock(), what="the dead worker's backend gone")
        assert partner_events(partner, mark) == {}
        assert peer_row(partner)["cursor"] == cursor_before
        fed.start_partner_worker()
        wait_until(lambda: converged(fed), timeout_s=120, what="convergence after kill -9")
        events = partner_events(partner, mark)
        assert events == {k: ["updated"] for k in targets}
        assert all(hydrated(partner)[k]["properties"]["gsd"] == 9 for k in targets)


def test_a_transaction_committing_after_a_later_one_is_still_delivered(fed):
    wait_until(lambda: converged(fed), what="partner at main's state")
    with fed.main() as main, fed.partner() as partner:
        with psycopg.connect(fed.cluster.conninfo(fed.main_db)) as t1:  # not autocommit
            t1.execute("SELECT pgstac.upsert_item(%s)", (Jsonb(scene(900, "gf1", NEAR, 3)),))
            # A later transaction, committed (in the other collection: pgSTAC's partition check
            # locks a collection's partition until commit).
            write_items(main, [scene(901, "gf2", NEAR, 3)])
            polled = peer_row(partner)["last_page_at"]
            wait_until(
                lambda: peer_row(partner)["last_page_at"] != polled, what="the partner polled"
            )
            t1.commit()
        wait_until(lambda: converged(fed), what="both late and early commits delivered")
        assert {("gf1", "S0900"), ("gf2", "S0901")} <= set(hydrated(partner))


def test_both_ways_the_partners_products_reach_main_and_never_come_back(fed):
    with fed.partner() as partner:
        # The partner's own product, and a collection id that main owns.
        for cid in ("la-dom-vientiane", "gf6"):
            partner.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection(cid)),))
        write_items(partner, [
            stac_item("DOM1", collection="la-dom-vientiane", **NEAR),
            stac_item("X1", collection="gf6", **NEAR),
        ])  # fmt: skip
        add_org(partner, "CRESDA", "CN", "main", "test")
        key = issue_key(partner, "CRESDA", ["read"], "test")[0]
    main_env = {k: v for k, v in fed.main_env.items() if k.startswith("PG")}
    csdr_admin(main_env, "peer", "add", "la", f"http://127.0.0.1:{fed.partner_feed_port}",
               "--key", key)  # fmt: skip
    with fed.main() as main:

        def main_mirrored_the_partner() -> bool:
            row = main.execute("SELECT at_head FROM csdr.federation_peers WHERE name = 'la'")
            return ("la-dom-vientiane", "DOM1") in hydrated(main) and row.fetchone()[0]

        wait_until(main_mirrored_the_partner, what="main holds the partner's product")
        dom = hydrated(main)[("la-dom-vientiane", "DOM1")]
        assert dom["properties"]["csdr:origin"] == "la"
        content = main.execute(
            "SELECT content FROM pgstac.collections WHERE id = 'la-dom-vientiane'"
        ).fetchone()[0]
        assert content["csdr:origin"] == "la"
        # gf6 is main's own: the partner's collection and item for it were refused, and nothing
        # main fed the partner came back (it would have been refused too, and counted).
        assert ("gf6", "X1") not in hydrated(main)
        assert main.execute(
            "SELECT content ->> 'csdr:origin' FROM pgstac.collections WHERE id = 'gf6'"
        ).fetchone() == (None,)
        add_org(main, "Main ops", "CN", "main", "test")
        ops_key = issue_key(main, "Main ops", ["admin"], "test")[0]
    status = httpx.get(
        f"http://127.0.0.1:{fed.main_feed_port}/federation/peers", headers={"X-API-Key": ops_key}
    )
    assert status.status_code == 200, status.text
    (la,) = status.json()["peers"]
    assert la["name"] == "la" and la["node"] == "la" and la["at_head"]
    assert la["refused"] == 2 and la["last_error"] is None and "api_key" not in la
    # Main never feeds the partner's product back to it.
    with fed.partner() as partner:
        partner_key = _key_of(partner)
        assert "csdr:origin" not in hydrated(partner)[("la-dom-vientiane", "DOM1")]["properties"]
    seen: set[str] = set()
    after = None
    while True:
        page = httpx.get(
            f"http://127.0.0.1:{fed.main_feed_port}/federation/changes",
            params={"after": after} if after else {},
            headers={"X-API-Key": partner_key},
        ).json()
        seen |= {c["collection"] for c in page["changes"]}
        after = page["next"]
        if page["at_head"]:
            break
    assert "gf1" in seen and "la-dom-vientiane" not in seen


def test_a_cursor_older_than_the_retention_is_reconciled(fed):
    wait_until(lambda: converged(fed), what="partner at main's state")
    with fed.partner() as partner, fed.main() as main:
        set_status(partner, "paused")
        held = sorted(k for k in hydrated(partner) if k[0] in MIRRORED)
        gone, changed = held[:3], held[3:5]
        write_items(main, [scene(700 + n, MIRRORED[n % 2], NEAR, 5) for n in range(10)])
        write_items(main, [scene(int(i[1:]), c, NEAR, 4, gsd=30) for c, i in changed])
        delete_items(main, gone)
        # The partner stays away longer than main keeps its events.
        for table in ("item_events", "collection_events"):
            main.execute(f"UPDATE csdr.{table} SET created_at = now() - interval '61 days'")
        assert main.execute("SELECT csdr.prune_feed_events('60 days')").fetchone()[0] > 0
        expired = httpx.get(
            f"http://127.0.0.1:{fed.main_feed_port}/federation/changes",
            params={"after": peer_row(partner)["cursor"]},
            headers={"X-API-Key": _key_of(partner)},
        )
        assert expired.status_code == 410 and expired.json()["reconcile"] is True
        mark = last_event_id(partner)
        set_status(partner, "active")
        wait_until(lambda: converged(fed), timeout_s=120, what="convergence by reconciling")
        events = partner_events(partner, mark)
        assert {k: events.get(k) for k in gone} == {k: ["deleted"] for k in gone}
        assert {k: events.get(k) for k in changed} == {k: ["updated"] for k in changed}
        assert sum(kinds == ["created"] for kinds in events.values()) == 10
        assert len(events) == 15
        assert peer_row(partner)["last_error"] is None
        # The partner's own collections are not the reconcile's business.
        assert ("la-dom-vientiane", "DOM1") in hydrated(partner)


def test_drift_the_feed_cannot_show_is_reconciled_on_schedule(fed):
    wait_until(lambda: converged(fed), what="partner at main's state")
    with fed.partner() as partner:
        lost, edited = sorted(k for k in hydrated(partner) if k[0] in MIRRORED)[:2]
        delete_items(partner, [lost])  # an operator's slip on the partner, no event on main
        partner.execute(
            "UPDATE pgstac.items SET content = jsonb_set(content, '{properties,gsd}', '77')"
            " WHERE collection = %s AND id = %s",
            edited,
        )
    assert not converged(fed)
    assert fed.partner_feed is not None
    fed.partner_feed.close()
    fed.partner_env["CSDR_FEDERATION_RECONCILE_INTERVAL_S"] = "1"
    fed.start_partner_worker()
    wait_until(lambda: converged(fed), timeout_s=90, what="drift repaired by the reconcile")


def test_copied_assets_tile_byte_identically_on_the_partner(fed, tmp_path):
    """A real scene ingested on main, inside the partner's selection: the partner copies its
    files through main's download route (the peer's key), points the item at them, and its own
    tiler serves the same tile bytes as main's."""
    scene_tif = write_scene(VIENTIANE, tmp_path)
    with fed.main() as main:
        settings = IngestSettings(assets_dir=fed.main_assets)
        item = ingest_file(scene_tif, main, settings, collection="gf1")
        with main.transaction():
            main.execute(
                "UPDATE pgstac.items"
                " SET content = jsonb_set(content, '{properties,eo:cloud_cover}', '4')"
                " WHERE collection = 'gf1' AND id = %s",
                (item["id"],),
            )

    def copied() -> dict[str, Any] | None:
        with fed.partner() as partner:
            row = hydrated(partner).get(("gf1", item["id"]))
            if row is None or any(
                not a["href"].startswith("/") for k, a in row["assets"].items() if k != "metadata"
            ):
                return None
            return row

    mirrored = wait_until(copied, timeout_s=90, what="the scene's assets copied to the partner")
    wait_until(lambda: converged(fed), what="partner at main's state with the copied scene")
    la_assets = fed.base / "la-assets" / "mirrors" / "main" / "gf1" / item["id"]
    for key, asset in mirrored["assets"].items():
        local = Path(asset["href"])
        assert local.is_relative_to(la_assets), key
        assert local.read_bytes() == Path(item["assets"][key]["href"]).read_bytes(), key
        assert asset["alternate"]["main"]["href"].startswith(fed.main_catalog)
    with fed.partner() as partner:
        status = partner.execute(
            "SELECT status, count(*) FROM csdr.federation_assets WHERE item_id = %s GROUP BY 1",
            (item["id"],),
        ).fetchall()
        assert status == [("copied", len(mirrored["assets"]))]
    # The partner's STAC API serves the copy from its own download route.
    via_partner = httpx.get(f"{fed.partner_catalog}/collections/gf1/items/{item['id']}").json()
    data_href = via_partner["assets"]["data"]["href"]
    assert data_href.startswith(fed.partner_catalog)
    assert httpx.get(data_href).content == Path(item["assets"]["data"]["href"]).read_bytes()
    # Both tilers, same tile: byte-identical.
    lon, lat = (item["bbox"][0] + item["bbox"][2]) / 2, (item["bbox"][1] + item["bbox"][3]) / 2
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 13)
    path = f"/collections/gf1/items/{item['id']}/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}.tif"
    tiles = []
    for env in (fed.main_env, fed.partner_env):
        with service("csdr_tiler.app:create_app", free_port(), env, fed.base) as tiler:
            r = httpx.get(f"{tiler}{path}", params={"assets": "data"}, timeout=60)
            assert r.status_code == 200, r.text
            tiles.append(r.content)
    assert tiles[0] == tiles[1] and len(tiles[0]) > 1000


def test_mains_push_service_wakes_the_partners_worker(fed):
    """The worker subscribed at main's push service (`--push`) to what it mirrors; main's
    webhooks reach the partner's wake-up route, and the peer's lag is counted in events."""
    with fed.partner() as partner:
        subscription = wait_until(
            lambda: peer_row(partner)["wake_subscription"], what="the wake-up subscription"
        )
    wake = f"http://127.0.0.1:{fed.partner_feed_port}/federation/peers/main/wake"
    with fed.main() as main:
        row = main.execute(
            "SELECT collections, webhook_url, ST_AsText(ST_Envelope(geometry))"
            " FROM csdr.subscriptions WHERE id = %s",
            (subscription,),
        ).fetchone()
        assert row is not None and row[0] == list(MIRRORED) and row[1] == wake
        assert row[2].startswith("POLYGON((100 10,")
        write_items(main, [scene(950, "gf1", NEAR, 2)])
        delivered = wait_until(
            lambda: main.execute(
                "SELECT d.last_status_code FROM csdr.deliveries d"
                " JOIN csdr.item_events e ON e.id = d.event_id"
                " WHERE d.subscription_id = %s AND e.item_id = 'S0950' AND d.status = 'delivered'",
                (subscription,),
            ).fetchone(),
            what="main's webhook delivered to the partner's wake-up route",
        )
        assert delivered[0] == 202
    wait_until(lambda: converged(fed), what="the woken partner at main's state")
    with fed.partner() as partner:
        assert peer_row(partner)["lag_events"] == 0


def test_a_proxied_scene_tiles_through_its_origin_and_503_while_it_is_down(fed, tmp_path):
    """An item whose assets stay at their origin's download route (`--assets proxy`): the
    partner's tiler reads it through the origin, answers 503 with Retry-After while the origin
    is down, and tiles again once it is back."""
    scene = Scene(
        "LA_PROXY_20240302", "EPSG:32648", 250_000, 1_995_000, datetime(2024, 3, 2, 3, 0),
        seed=8, size=2048, rotation_deg=0,
    )  # fmt: skip
    with fed.main() as main:
        item = ingest_file(
            write_scene(scene, tmp_path), main, IngestSettings(assets_dir=fed.main_assets), "gf1"
        )
    origin_port = free_port()
    origin = f"http://127.0.0.1:{origin_port}"
    proxied = {
        **{k: v for k, v in item.items() if k not in ("assets", "links")},
        "id": "PROXY1",
        "collection": "la-proxy",
        "links": [],
        "assets": {
            key: {**asset, "href": f"{origin}/collections/gf1/items/{item['id']}/assets/{key}"}
            for key, asset in item["assets"].items()
        },
    }
    proxied["properties"] = {**item["properties"], "csdr:origin": "elsewhere"}
    with fed.partner() as partner:
        partner.execute(
            "SELECT pgstac.create_collection(%s)",
            (Jsonb(stac_collection("la-proxy", **{"csdr:origin": "elsewhere"})),),
        )
        write_items(partner, [proxied])
    # An overview tile first; then full-resolution tiles at two far corners, whose blocks no read
    # has fetched yet (GDAL keeps what it read of a remote file).
    west, south, east, north = item["bbox"]
    dx, dy = (east - west) / 8, (north - south) / 8
    wmq = morecantile.tms.get("WebMercatorQuad")
    tiles = [
        wmq.tile((west + east) / 2, (south + north) / 2, 12),
        wmq.tile(west + dx, north - dy, 15),
        wmq.tile(east - dx, south + dy, 15),
    ]

    def tile_path(collection: str, item_id: str, n: int) -> str:
        t = tiles[n]
        return (
            f"/collections/{collection}/items/{item_id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.tif"
        )

    with ExitStack() as stack:
        main_tiler, partner_tiler = (
            stack.enter_context(service("csdr_tiler.app:create_app", free_port(), env, fed.base))
            for env in (fed.main_env, fed.partner_env)
        )
        up = ExitStack()
        up.enter_context(
            service("csdr_catalog.app:create_app", origin_port, fed.main_env, fed.base)
        )
        read = httpx.get(f"{partner_tiler}{tile_path('la-proxy', 'PROXY1', 0)}",
                         params={"assets": "data"}, timeout=60)  # fmt: skip
        assert read.status_code == 200, read.text
        at_origin = httpx.get(f"{main_tiler}{tile_path('gf1', item['id'], 0)}",
                              params={"assets": "data"}, timeout=60)  # fmt: skip
        assert read.content == at_origin.content
        up.close()  # the origin goes down
        down = httpx.get(f"{partner_tiler}{tile_path('la-proxy', 'PROXY1', 1)}",
                         params={"assets": "data"}, timeout=60)  # fmt: skip
        assert down.status_code == 503, down.text
        assert int(down.headers["retry-after"]) > 0
        assert f"127.0.0.1:{origin_port}" in down.json()["detail"]
        with service("csdr_catalog.app:create_app", origin_port, fed.main_env, fed.base):
            back = httpx.get(f"{partner_tiler}{tile_path('la-proxy', 'PROXY1', 2)}",
                             params={"assets": "data"}, timeout=60)  # fmt: skip
            assert back.status_code == 200, back.text


def test_a_private_proxied_scene_is_read_with_the_key_the_origin_issued(fed, tmp_path):
    """A scene of a partners-only collection kept at its origin: the origin refuses it to an
    anonymous reader, the partner's tiler reads it with the key main issued to the partner
    (bound to main's STAC API only) and draws the origin's tile bytes."""
    scene = Scene(
        "LA_PRIVATE_20240303", "EPSG:32648", 240_000, 1_985_000, datetime(2024, 3, 3, 3, 0),
        seed=9, size=512,
    )  # fmt: skip
    with fed.main() as main:
        item = ingest_file(
            write_scene(scene, tmp_path), main, IngestSettings(assets_dir=fed.main_assets), "gf2"
        )
        with main.transaction():
            main.execute(
                "UPDATE pgstac.items"
                " SET content = jsonb_set(content, '{properties,eo:cloud_cover}', '4')"
                " WHERE collection = 'gf2' AND id = %s",
                (item["id"],),
            )
    data = f"{fed.main_catalog}/collections/gf2/items/{item['id']}/assets/data"
    assert httpx.get(data).status_code == 404  # partners only: invisible without a key
    with fed.partner() as partner:
        wait_until(lambda: peer_row(partner)["catalog_url"] == fed.main_catalog,
                   what="the peer's STAC API recorded")  # fmt: skip
        key = _key_of(partner)
        partner.execute(
            "SELECT pgstac.create_collection(%s)",
            (Jsonb(stac_collection("la-private", **{"csdr:origin": "elsewhere"})),),
        )
        write_items(partner, [{
            **{k: v for k, v in item.items() if k not in ("assets", "links")},
            "id": "PRIVATE1", "collection": "la-private", "links": [],
            "assets": {"data": {**item["assets"]["data"], "href": data}},
        }])  # fmt: skip
    lon, lat = (item["bbox"][0] + item["bbox"][2]) / 2, (item["bbox"][1] + item["bbox"][3]) / 2
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 13)
    tile = f"tiles/WebMercatorQuad/13/{t.x}/{t.y}.tif"
    partner_env = {**fed.partner_env, "CSDR_TILER_PEER_KEYS_REFRESH_S": "1"}
    with (
        service("csdr_tiler.app:create_app", free_port(), fed.main_env, fed.base) as main_tiler,
        service("csdr_tiler.app:create_app", free_port(), partner_env, fed.base) as tiler,
    ):
        read = httpx.get(f"{tiler}/collections/la-private/items/PRIVATE1/{tile}",
                         params={"assets": "data"}, timeout=60)  # fmt: skip
        assert read.status_code == 200, read.text
        at_origin = httpx.get(
            f"{main_tiler}/collections/gf2/items/{item['id']}/{tile}",
            params={"assets": "data"}, headers={"X-API-Key": key}, timeout=60,
        )  # fmt: skip
        assert at_origin.status_code == 200 and read.content == at_origin.content
