"""`csdr-admin backup` and `restore` round trip: a node with ingested scenes, keys and a push
subscription is backed up; restored onto an empty database, a catalog and a tiler over it answer
the same searches and the same tile bytes, the subscriptions are the same, and a missing asset
file is named. A restore onto a database that holds collections is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import morecantile
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from infra.local.pgcluster import Cluster
from tests.e2e.conftest import Node
from tests.e2e.processes import service

pytestmark = pytest.mark.slow

COLLECTION = "e2e-backup"


def csdr_admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csdr_access.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def searched(catalog: str) -> list[dict[str, Any]]:
    """The collection's items as the STAC API returns them, with its own base URL taken out."""
    r = httpx.get(f"{catalog}/search", params={"collections": COLLECTION, "limit": 100})
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    assert features
    text = r.text.replace(catalog, "BASE")
    return sorted(httpx.Response(200, text=text).json()["features"], key=lambda f: f["id"])


def subscriptions(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, owner, webhook_url, webhook_secret, collections, filter, area,"
        " ST_AsText(geometry), status"
        " FROM csdr.subscriptions ORDER BY id"
    ).fetchall()


def tile_of(tiler: str, item: dict[str, Any]) -> bytes:
    lon, lat = (item["bbox"][0] + item["bbox"][2]) / 2, (item["bbox"][1] + item["bbox"][3]) / 2
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 12)
    item_url = f"{tiler}/collections/{COLLECTION}/items/{item['id']}"
    r = httpx.get(
        f"{item_url}/tiles/WebMercatorQuad/12/{t.x}/{t.y}.tif",
        params={"assets": "data"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.content


def test_backup_then_restore_onto_an_empty_node(
    node: Node,
    push: tuple[str, dict[str, str]],
    pg_cluster: Cluster,
    tmp_path: Path,
) -> None:
    for scene in DEMO_SCENES[:2]:
        assert node.run_job(write_scene(scene, tmp_path), COLLECTION)["status"] == "succeeded"
    push_url, headers = push
    subscription = {
        "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "whsec_" + "A" * 32},
        "collections": [COLLECTION],
        "bbox": [118, 37, 120, 39],
        "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]},
    }
    r = httpx.post(f"{push_url}/subscriptions", json=subscription, headers=headers)
    assert r.status_code == 201, r.text
    original_db = node.env["PGDATABASE"]
    with psycopg.connect(pg_cluster.conninfo(original_db), autocommit=True) as conn:
        original_subscriptions = subscriptions(conn)
    before = searched(node.catalog)

    saved = tmp_path / "backup"
    done = csdr_admin(node.env, "backup", str(saved))
    assert done.returncode == 0, done.stderr
    assert "2 items" in done.stdout and "1 subscriptions" in done.stdout
    manifest = (saved / "assets.tsv").read_text().splitlines()
    assert manifest[0].split("\t") == ["collection", "item", "asset", "href", "size", "checksum"]
    listed = [line.split("\t") for line in manifest[1:]]
    assert {row[1] for row in listed if row[0] == COLLECTION} == {f["id"] for f in before}
    assert all(row[5].startswith("1220") and int(row[4]) > 0 for row in listed)

    # An empty, migrated node (as `make up` leaves one without demo data).
    restored_db = f"restored_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(restored_db, template=TEMPLATE_DB)
    restored_env = {**node.env, **pg_cluster.env(restored_db)}
    done = csdr_admin(restored_env, "restore", str(saved), "--checksums")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "2 items" in done.stdout and "1 subscriptions" in done.stdout

    with psycopg.connect(pg_cluster.conninfo(restored_db), autocommit=True) as conn:
        assert subscriptions(conn) == original_subscriptions
    with (
        service("csdr_catalog.app:create_app", free_port(), restored_env, tmp_path) as catalog,
        service("csdr_tiler.app:create_app", free_port(), restored_env, tmp_path) as tiler,
    ):
        assert searched(catalog) == before
        # The keys came along: the restored catalog knows the node's ingest key.
        r = httpx.get(f"{catalog}/collections", headers=node.ingest_headers)
        assert r.status_code == 200
        assert tile_of(tiler, before[0]) == tile_of(node.tiler, before[0])

    # Onto a database that holds collections: refused, nothing touched.
    done = csdr_admin(restored_env, "restore", str(saved))
    assert done.returncode == 1 and "not empty" in done.stderr

    # Onto a bare database (no pgSTAC yet) with one asset file gone: restored, the file named.
    gone = Path(listed[0][3])
    aside = tmp_path / "aside"
    gone.rename(aside)
    try:
        bare_db = f"bare_{uuid.uuid4().hex[:8]}"
        pg_cluster.create_database(bare_db)
        done = csdr_admin({**node.env, **pg_cluster.env(bare_db)}, "restore", str(saved))
        assert done.returncode == 3, done.stderr + done.stdout
        assert f"missing: {gone}" in done.stdout and "1 asset files missing" in done.stdout
        with psycopg.connect(pg_cluster.conninfo(bare_db), autocommit=True) as conn:
            count = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0]
            assert count == len(before)
    finally:
        aside.rename(gone)
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        for name in (restored_db, bare_db):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
