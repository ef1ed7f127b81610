"""`--assets lazy` between two whole nodes on this machine (two databases, real processes): the
partner mirrors main's scenes with main's download URLs and copies nothing until a scene is used
on it. A tile through the partner's tiler is drawn through main and queues one copy; the copy
then replaces the href (main's URL kept as its alternate) and tiles stay byte-identical. A
download through the partner's download route is passed through from main and queues the copy
too. With main gone the partner still draws and serves what it copied."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
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
from csdr_access.admin import add_org, issue_key
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings as IngestSettings
from csdr_ingest.synthetic import Scene, write_scene
from infra.local.pgcluster import Cluster
from services.federation.tests.conftest import stac_collection
from tests.e2e.processes import service
from tests.e2e.test_federation import connect, csdr_admin, hydrated, wait_until

pytestmark = pytest.mark.slow

SCENE = Scene(
    "LA_LAZY_20240304", "EPSG:32648", 246_000, 1_990_000, datetime(2024, 3, 4, 3, 0), seed=11,
    size=512, rotation_deg=0,
)  # fmt: skip
# Another scene, only described (its info), never drawn.
OTHER = Scene(
    "LA_LAZY_20240305", "EPSG:32648", 256_000, 1_990_000, datetime(2024, 3, 5, 3, 0), seed=12,
    size=256, rotation_deg=0,
)  # fmt: skip


@dataclass
class Nodes:
    """Main (catalog, feed) and the partner (sync worker, tiler), one database each."""

    cluster: Cluster
    main_db: str
    partner_db: str
    main_catalog: str
    partner_catalog: str
    partner_tiler: str
    base: Path
    item: dict[str, Any]
    other: dict[str, Any]
    main_services: ExitStack

    def main(self) -> psycopg.Connection:
        return connect(self.cluster.conninfo(self.main_db))

    def partner(self) -> psycopg.Connection:
        return connect(self.cluster.conninfo(self.partner_db))


@pytest.fixture(scope="module")
def nodes(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    main_db, partner_db = (f"lazy_{n}_{uuid.uuid4().hex[:8]}" for n in ("main", "la"))
    for name in (main_db, partner_db):
        pg_cluster.create_database(name, template=TEMPLATE_DB)
    base = tmp_path_factory.mktemp("lazy")
    main_assets = base / "main-assets"
    with psycopg.connect(pg_cluster.conninfo(main_db), autocommit=True) as main:
        main.execute("SELECT pgstac.create_collection(%s)", (Jsonb(stac_collection("gf1")),))
        add_org(main, "LASAC", "LA", "partner", "test")
        key = issue_key(main, "LASAC", ["read"], "test")[0]
        item, other = (
            ingest_file(
                write_scene(scene, base), main, IngestSettings(assets_dir=main_assets), "gf1"
            )
            for scene in (SCENE, OTHER)
        )
    feed_port, catalog_port = free_port(), free_port()
    main_env = {
        **pg_cluster.env(main_db),
        "CSDR_INGEST_ASSETS_DIR": str(main_assets),
        "CSDR_FEDERATION_NODE_NAME": "main",
        "CSDR_FEDERATION_CATALOG_URL": f"http://127.0.0.1:{catalog_port}",
        "CSDR_FEDERATION_WORKER": "false",
    }
    partner_env = {
        **pg_cluster.env(partner_db),
        "CSDR_INGEST_ASSETS_DIR": str(base / "la-assets"),
        "CSDR_FEDERATION_NODE_NAME": "la",
        "CSDR_FEDERATION_POLL_INTERVAL_S": "0.3",
        "CSDR_FEDERATION_BACKOFF_MAX_S": "1",
        "CSDR_TILER_PEER_KEYS_REFRESH_S": "1",
        "CSDR_CATALOG_PEERS_REFRESH_S": "1",
    }
    csdr_admin(
        pg_cluster.env(partner_db), "peer", "add", "main", f"http://127.0.0.1:{feed_port}",
        "--key", key, "--collections", "gf1", "--assets", "lazy",
    )  # fmt: skip
    with ExitStack() as stack:
        main_services = stack.enter_context(ExitStack())
        main_catalog = main_services.enter_context(
            service("csdr_catalog.app:create_app", catalog_port, main_env, base)
        )
        main_services.enter_context(
            service("csdr_federation.app:create_app", feed_port, main_env, base)
        )
        stack.enter_context(
            service("csdr_federation.app:create_app", free_port(), partner_env, base)
        )
        partner_catalog, partner_tiler = (
            stack.enter_context(service(f"csdr_{name}.app:create_app", free_port(), partner_env,
                                        base))
            for name in ("catalog", "tiler")
        )  # fmt: skip
        yield Nodes(
            pg_cluster, main_db, partner_db, main_catalog, partner_catalog, partner_tiler, base,
            item, other, main_services,
        )  # fmt: skip
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        for name in (main_db, partner_db):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copies(partner: psycopg.Connection, item_id: str) -> dict[str, tuple[str, int]]:
    rows = partner.execute(
        "SELECT asset, status, attempts FROM csdr.federation_assets WHERE item_id = %s", (item_id,)
    )
    return {asset: (status, attempts) for asset, status, attempts in rows.fetchall()}


def tile_path(item: dict[str, Any], z: int, fx: float, fy: float) -> str:
    """The item's tile at zoom `z` at a fraction (fx, fy) across its bbox from the west, north."""
    west, south, east, north = item["bbox"]
    t = morecantile.tms.get("WebMercatorQuad").tile(
        west + fx * (east - west), north - fy * (north - south), z
    )
    return f"/collections/gf1/items/{item['id']}/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.tif"


def test_a_lazy_scene_is_copied_on_its_first_use_and_then_read_locally(nodes):
    item = nodes.item
    source = f"{nodes.main_catalog}/collections/gf1/items/{item['id']}/assets/data"
    with nodes.partner() as partner:
        # Mirrored with main's download URLs; nothing copied, every asset merely wanted.
        mirrored = wait_until(
            lambda: hydrated(partner).get(("gf1", item["id"])), what="the scene mirrored"
        )
        assert mirrored["assets"]["data"]["href"] == source
        wanted = copies(partner, item["id"])
        assert wanted and set(wanted.values()) == {("wanted", 0)}
        assert not (nodes.base / "la-assets" / "mirrors").exists()
        wait_until(
            lambda: partner.execute("SELECT catalog_url FROM csdr.federation_peers").fetchone()[0],
            what="main's STAC API recorded for its key",
        )

    def tile(path: str) -> httpx.Response:
        return httpx.get(f"{nodes.partner_tiler}{path}", params={"assets": "data"}, timeout=60)

    first = tile(tile_path(item, 13, 0.5, 0.5))  # drawn through main
    assert first.status_code == 200, first.text
    with nodes.partner() as partner:
        # The first use queued the data asset's copy (the tiler tells the database off the
        # request's thread); more tiles read meanwhile queue nothing more.
        wait_until(lambda: copies(partner, item['id'])["data"][0] != "wanted", timeout_s=10,
                   what="the first tile queued the copy")  # fmt: skip
        # An item's info reads headers only: no use of the scene it describes.
        info = httpx.get(
            f"{nodes.partner_tiler}/collections/gf1/items/{nodes.other['id']}/info",
            params={"assets": "data"}, timeout=60,
        )  # fmt: skip
        assert info.status_code == 200, info.text
        for fx, fy in ((0.2, 0.2), (0.8, 0.8), (0.2, 0.8)):
            assert tile(tile_path(item, 14, fx, fy)).status_code == 200
        copied = wait_until(
            lambda: (row := hydrated(partner)[("gf1", item["id"])])["assets"]["data"]["href"]
            .startswith("/") and row,
            timeout_s=30, what="the data asset copied and the item pointed at it",
        )  # fmt: skip
        assert copies(partner, item["id"])["data"] == ("copied", 1)
        # Only the asset read was copied: the others still read main and wait for a use.
        others = {k: v for k, v in copies(partner, item["id"]).items() if k != "data"}
        assert others and set(others.values()) == {("wanted", 0)}
        assert set(copies(partner, nodes.other["id"]).values()) == {("wanted", 0)}
        used = partner.execute(
            "SELECT used_at IS NOT NULL FROM csdr.federation_assets"
            " WHERE asset = 'data' AND item_id = %s",
            (item["id"],),
        ).fetchone()
        assert used == (True,)
    local = Path(copied["assets"]["data"]["href"])
    assert local.is_relative_to(nodes.base / "la-assets" / "mirrors" / "main" / "gf1")
    origin_bytes = Path(item["assets"]["data"]["href"]).read_bytes()
    assert local.read_bytes() == origin_bytes
    checksum = "1220" + hashlib.sha256(origin_bytes).hexdigest()
    assert copied["assets"]["data"]["file:checksum"] == checksum
    assert copied["assets"]["data"]["alternate"]["main"]["href"] == source
    # The same tile from the local copy: byte-identical to the one drawn through main.
    again = wait_until(
        lambda: (r := tile(tile_path(item, 13, 0.5, 0.5))).content == first.content and r,
        timeout_s=10, what="the tile drawn again from the copy",
    )  # fmt: skip
    assert again.status_code == 200 and len(again.content) > 1000
    other = nodes.other
    other_bytes = Path(other["assets"]["data"]["href"]).read_bytes()
    # The partner's STAC API lists the other scene's assets at its own download route, which
    # passes main's bytes through (with the key main issued to the partner) until the copy is
    # done; a HEAD is no use, a GET is.
    route = f"{nodes.partner_catalog}/collections/gf1/items/{other['id']}/assets/data"
    wait_until(
        lambda: httpx.get(f"{nodes.partner_catalog}/collections/gf1/items/{other['id']}")
        .json()["assets"]["data"]["href"] == route,
        timeout_s=10, what="the partner's catalog publishing its own download route",
    )  # fmt: skip
    head = httpx.head(route)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(other_bytes)
    with nodes.partner() as partner:
        assert copies(partner, other["id"])["data"] == ("wanted", 0)
        part = httpx.get(route, headers={"Range": "bytes=100-1123"})
        assert part.status_code == 206 and part.content == other_bytes[100:1124]
        wait_until(
            lambda: copies(partner, other["id"])["data"] == ("copied", 1),
            timeout_s=30, what="the downloaded asset copied",
        )  # fmt: skip
        assert copies(partner, other["id"])["thumbnail"] == ("wanted", 0)
    # Main goes away: the partner still draws the scene, at addresses not drawn before, and
    # serves the downloaded asset from its copy, under the same URL; an asset never used answers
    # 503 with Retry-After.
    nodes.main_services.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(source, timeout=5)
    for fx, fy in ((0.8, 0.2), (0.5, 0.9)):
        read = tile(tile_path(item, 14, fx, fy))
        assert read.status_code == 200, read.text
    whole = httpx.get(route)
    assert whole.status_code == 200 and whole.content == other_bytes
    unused = httpx.get(route.removesuffix("/data") + "/thumbnail")
    assert unused.status_code == 503, unused.text
    assert int(unused.headers["retry-after"]) > 0
