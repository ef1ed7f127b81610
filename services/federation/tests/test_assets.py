"""Copies of mirrored assets (`--assets copy`) against a real origin download route: queued in
the applying transaction, copied through the route with the peer's key, resumed with a byte range,
verified against `file:size`/`file:checksum` (a mismatch discards and retries), and the item
pointed at its copy with the origin's href as an alternate; deletes take the copies with them."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from csdr_catalog.downloads import download_url
from csdr_federation import assets
from csdr_federation.mirror import ALTERNATE_EXTENSION, mirror_item, origin_form
from csdr_service import pools
from csdr_storage.lazy import LAZY_COPIES_SQL
from csdr_storage.store import S3Store, s3_client
from services.federation.tests.conftest import stac_item
from tests.support.s3 import s3_server
from tests.support.servers import served

KEY = "peer-key-of-main"
PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)  # a few chunks and a ragged end


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An origin's download route serving PAYLOAD (with byte ranges) to the peer's key only;
    the Range header of every request is recorded."""
    source = tmp_path_factory.mktemp("origin") / "scene.tif"
    source.write_bytes(PAYLOAD)
    ranges: list[str | None] = []

    async def download(request: Request) -> Response:
        if request.headers.get("x-api-key") != KEY:
            return JSONResponse({"code": "Unauthorized"}, status_code=401)
        ranges.append(request.headers.get("range"))
        return FileResponse(source, media_type="image/tiff")

    app = Starlette(routes=[Route("/collections/{c}/items/{i}/assets/{a}", download)])
    with served(app) as url:
        yield {"url": url, "ranges": ranges}


@pytest.fixture
def peer(db: psycopg.Connection) -> str:
    db.execute(
        "INSERT INTO csdr.federation_peers (name, url, api_key, assets)"
        " VALUES ('main', 'http://127.0.0.1:9', %s, 'copy')",
        (KEY,),
    )
    return "main"


def origin_item(catalog: str, item_id: str = "S1", payload: bytes = PAYLOAD) -> dict[str, Any]:
    """An item as main's feed serves it: its COG behind main's download route, size, checksum."""
    item = stac_item(item_id)
    item["assets"]["data"] |= {
        "href": download_url(catalog + "/", "gf1", item_id, "data"),
        "file:size": len(payload),
        "file:checksum": "1220" + hashlib.sha256(payload).hexdigest(),
    }
    return item


async def apply(item: dict[str, Any], root: Path, catalog: str, lazy: bool = False) -> list[str]:
    """What the sync worker does with an upsert of a `copy` (`lazy`) peer, in one transaction."""
    pool = await pools.open_pool(2, "test", pgstac=True)
    try:
        async with pool.acquire() as conn, conn.transaction():
            forgotten = await assets.plan_item(conn, "main", root, catalog, item, "main", lazy)
            await conn.execute("SELECT pgstac.upsert_item($1::jsonb)", item)
        return forgotten
    finally:
        await pool.close()


async def copy_once(root: Path) -> bool:
    pool = await pools.open_pool(2, "test", pgstac=True)
    try:
        async with httpx.AsyncClient() as client:
            return await assets.Copier(pool, client, root, lease_s=60).copy_one()
    finally:
        await pool.close()


def task_row(db: psycopg.Connection) -> dict[str, Any]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM csdr.federation_assets").fetchone()
    assert row is not None
    return row


def stored(db: psycopg.Connection, item_id: str = "S1") -> dict[str, Any]:
    return db.execute("SELECT pgstac.get_item(%s, 'gf1')", (item_id,)).fetchone()[0]


def test_a_copy_replaces_the_origin_href_and_a_reapply_keeps_it(db, peer, origin, tmp_path):
    mirrored = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    source = mirrored["assets"]["data"]["href"]
    asyncio.run(apply(copy.deepcopy(mirrored), tmp_path, origin["url"]))
    # Until the copy is done the item reads the origin.
    assert stored(db)["assets"]["data"]["href"] == source
    assert task_row(db)["status"] == "queued"
    assert asyncio.run(copy_once(tmp_path)) is True
    assert asyncio.run(copy_once(tmp_path)) is False  # nothing else is due
    row = task_row(db)
    assert (row["status"], row["attempts"]) == ("copied", 1)
    local = stored(db)["assets"]["data"]
    assert local["href"] == row["path"] and Path(row["path"]).read_bytes() == PAYLOAD
    assert Path(row["path"]).is_relative_to(tmp_path / "mirrors" / "main" / "gf1" / "S1")
    assert local["alternate"]["main"]["href"] == source
    # The digest form is the origin's item: reconcile sees no difference.
    assert origin_form(stored(db))["assets"] == mirrored["assets"]
    # The same item again (a repeated page): the copy stays, nothing is queued or fetched.
    before = len(origin["ranges"])
    asyncio.run(apply(copy.deepcopy(mirrored), tmp_path, origin["url"]))
    assert stored(db)["assets"]["data"]["href"] == row["path"]
    assert task_row(db)["status"] == "copied"
    assert asyncio.run(copy_once(tmp_path)) is False and len(origin["ranges"]) == before


def test_a_changed_asset_is_copied_under_a_new_name_and_the_old_copy_goes(
    db, peer, origin, tmp_path
):
    item = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    asyncio.run(apply(copy.deepcopy(item), tmp_path, origin["url"]))
    assert asyncio.run(copy_once(tmp_path))
    old = task_row(db)["path"]
    # Changed at the origin (here: published without its checksum now).
    changed = copy.deepcopy(item)
    del changed["assets"]["data"]["file:checksum"]
    forgotten = asyncio.run(apply(changed, tmp_path, origin["url"]))
    row = task_row(db)
    assert forgotten == [old] and row["path"] != old and row["status"] == "queued"
    assert Path(row["path"]).parent == Path(old).parent
    assert stored(db)["assets"]["data"]["href"] == item["assets"]["data"]["href"]
    assets.remove_files(forgotten)
    assert not Path(old).exists()
    assert asyncio.run(copy_once(tmp_path))
    assert stored(db)["assets"]["data"]["href"] == row["path"]
    assert Path(row["path"]).read_bytes() == PAYLOAD


def test_a_truncated_copy_resumes_with_a_range(db, peer, origin, tmp_path):
    item = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    asyncio.run(apply(item, tmp_path, origin["url"]))
    path = Path(task_row(db)["path"])
    path.parent.mkdir(parents=True)
    half = len(PAYLOAD) // 2
    Path(f"{path}.part").write_bytes(PAYLOAD[:half])  # a copier died here
    assert asyncio.run(copy_once(tmp_path))
    assert origin["ranges"][-1] == f"bytes={half}-"
    assert path.read_bytes() == PAYLOAD and not Path(f"{path}.part").exists()
    assert task_row(db)["status"] == "copied"


def test_a_checksum_mismatch_discards_the_copy_and_retries(db, peer, origin, tmp_path):
    item = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    asyncio.run(apply(item, tmp_path, origin["url"]))
    path = Path(task_row(db)["path"])
    path.parent.mkdir(parents=True)
    Path(f"{path}.part").write_bytes(b"\0" * 1000)  # wrong bytes, resumed after
    assert asyncio.run(copy_once(tmp_path))
    row = task_row(db)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert "checksum" in row["last_error"] and not path.exists()
    assert not Path(f"{path}.part").exists()
    assert stored(db)["assets"]["data"]["href"] == item["assets"]["data"]["href"]
    db.execute("UPDATE csdr.federation_assets SET due_at = now()")  # skip the backoff
    assert asyncio.run(copy_once(tmp_path))
    assert origin["ranges"][-1] is None  # afresh, the whole file
    row = task_row(db)
    assert (row["status"], row["attempts"]) == ("copied", 2)
    assert path.read_bytes() == PAYLOAD


def test_a_deleted_item_takes_its_copy_and_orphans_are_swept(db, peer, origin, tmp_path):
    item = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    asyncio.run(apply(item, tmp_path, origin["url"]))
    assert asyncio.run(copy_once(tmp_path))
    path = task_row(db)["path"]

    async def delete() -> list[str]:
        pool = await pools.open_pool(2, "test", pgstac=True)
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await assets.forget_items(conn, [("gf1", "S1")])
        finally:
            await pool.close()

    forgotten = asyncio.run(delete())
    assert forgotten == [path] and Path(path).exists()
    assets.remove_files(forgotten)
    assert not Path(path).exists()
    orphan = tmp_path / "mirrors" / "main" / "gf1" / "S9" / "data.tif"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")
    assert assets.sweep(tmp_path, kept=set()) == 1
    assert not (tmp_path / "mirrors" / "main" / "gf1").exists()


def test_a_lazy_asset_waits_for_its_first_use_then_is_copied_once(db, peer, origin, tmp_path):
    db.execute("UPDATE csdr.federation_peers SET assets = 'lazy'")
    mirrored = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    source = mirrored["assets"]["data"]["href"]
    asyncio.run(apply(copy.deepcopy(mirrored), tmp_path, origin["url"], lazy=True))
    assert task_row(db)["status"] == "wanted" and task_row(db)["used_at"] is None
    before = len(origin["ranges"])
    assert asyncio.run(copy_once(tmp_path)) is False  # nobody used it: nothing to copy
    assert len(origin["ranges"]) == before
    # A repeated page leaves it wanted.
    asyncio.run(apply(copy.deepcopy(mirrored), tmp_path, origin["url"], lazy=True))
    assert task_row(db)["status"] == "wanted"
    # Its first use queues it (and answers the peer's key, for a download passed through);
    # later uses change nothing.
    use = "SELECT csdr.use_federation_asset(%s)"
    assert db.execute(use, (source,)).fetchone() == (KEY,)
    row = task_row(db)
    assert row["status"] == "queued" and row["used_at"] is not None
    assert db.execute(use, (source,)).fetchone() == (KEY,)
    assert task_row(db)["updated_at"] == row["updated_at"]
    assert db.execute(use, ("http://elsewhere/x.tif",)).fetchone() == (None,)
    assert asyncio.run(copy_once(tmp_path)) is True
    assert asyncio.run(copy_once(tmp_path)) is False  # one copy, however many uses
    assert len(origin["ranges"]) == before + 1
    local = stored(db)["assets"]["data"]
    assert local["href"] == task_row(db)["path"] and Path(local["href"]).read_bytes() == PAYLOAD
    assert local["alternate"]["main"]["href"] == source
    # Copied: no key is handed out for the origin's URL any more.
    assert db.execute(use, (source,)).fetchone() == (None,)


def test_a_lazy_asset_used_before_is_copied_again_when_it_changes(db, peer, origin, tmp_path):
    db.execute("UPDATE csdr.federation_peers SET assets = 'lazy'")
    item = mirror_item(origin_item(origin["url"]), "main", "http://main/items/S1")
    asyncio.run(apply(copy.deepcopy(item), tmp_path, origin["url"], lazy=True))
    db.execute("SELECT csdr.use_federation_asset(%s)", (item["assets"]["data"]["href"],))
    assert asyncio.run(copy_once(tmp_path))
    item["assets"]["data"]["file:checksum"] = "1220" + "0" * 64  # changed at the origin
    asyncio.run(apply(copy.deepcopy(item), tmp_path, origin["url"], lazy=True))
    assert task_row(db)["status"] == "queued"
    # Another item's asset, never used, is wanted only; deleting the items forgets both.
    other = mirror_item(origin_item(origin["url"], "S2"), "main", "http://main/items/S2")
    asyncio.run(apply(other, tmp_path, origin["url"], lazy=True))
    statuses = db.execute("SELECT item_id, status FROM csdr.federation_assets ORDER BY 1")
    assert statuses.fetchall() == [("S1", "queued"), ("S2", "wanted")]

    async def delete() -> list[str]:
        pool = await pools.open_pool(2, "test", pgstac=True)
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await assets.forget_items(conn, [("gf1", "S1"), ("gf1", "S2")])
        finally:
            await pool.close()

    assert len(asyncio.run(delete())) == 2
    assert db.execute("SELECT count(*) FROM csdr.federation_assets").fetchone() == (0,)


def test_copies_no_row_names_leave_the_bucket_and_this_hosts_staging(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where copies are staged
    with s3_server(tmp_path) as s3:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        s3.create_bucket("node")
        store = S3Store("node", "assets", s3_client(s3.env), s3.env)
        kept, orphan = (store.href(f"mirrors/main/gf1/{i}/data_0123.tif") for i in ("S1", "S9"))
        for href in (kept, orphan):
            store.put_bytes(store.key_of(href) or "", b"copy")
            assets.staged(href).parent.mkdir(parents=True, exist_ok=True)
            assets.staged(href).write_bytes(b"partial")
        found = assets.copies_in(store)
        assert sorted(found) == sorted([kept, orphan, str(assets.staged(kept)),
                                        str(assets.staged(orphan))])  # fmt: skip
        later = store.href("mirrors/main/gf1/S2/data_4567.tif")  # copied after the listing
        store.put_bytes(store.key_of(later) or "", b"copy")
        assert assets.remove_unnamed(store, found, {kept}) == 2
        assert s3.keys("node") == [f"assets/mirrors/main/gf1/{i}" for i in (
            "S1/data_0123.tif", "S2/data_4567.tif")]  # fmt: skip
        assert assets.staged(kept).exists() and not assets.staged(orphan).exists()


async def keep_budget(root: Path, budget_bytes: int, grace_s: float) -> int:
    pool = await pools.open_pool(2, "test", pgstac=True)
    try:
        async with httpx.AsyncClient() as client:
            copier = assets.Copier(pool, client, root, budget_bytes=budget_bytes, grace_s=grace_s)
            return await copier.keep_budget()
    finally:
        await pool.close()


def test_lazy_copies_over_the_budget_go_back_to_the_origin_least_recently_used_first(
    db, peer, origin, tmp_path
):
    db.execute("UPDATE csdr.federation_peers SET assets = 'lazy'")
    sources = {}
    for item_id in ("S1", "S2", "S3"):
        item = mirror_item(origin_item(origin["url"], item_id), "main", f"http://main/{item_id}")
        sources[item_id] = item["assets"]["data"]["href"]
        asyncio.run(apply(item, tmp_path, origin["url"], lazy=True))
        db.execute("SELECT csdr.use_federation_asset(%s)", (sources[item_id],))
        assert asyncio.run(copy_once(tmp_path))
    rows = {r["item_id"]: r for r in all_rows(db)}
    paths = {item_id: Path(row["path"]) for item_id, row in rows.items()}
    assert all(stored(db, i)["assets"]["data"]["href"] == str(paths[i]) for i in paths)
    # S2 used longest ago, then S1; a use of S3's copy (read at its local path) is its last.
    for item_id, minutes in (("S1", 20), ("S2", 30), ("S3", 40)):
        db.execute(
            "UPDATE csdr.federation_assets SET used_at = now() - make_interval(mins => %s)"
            " WHERE item_id = %s",
            (minutes, item_id),
        )
    # The tiler and the catalog tell uses of paths under the lazy peer's mirrors folder.
    folders = [r[0] for r in db.execute(LAZY_COPIES_SQL).fetchall()]
    assert folders == [f"{tmp_path}/mirrors/main/"]
    db.execute("SELECT csdr.use_federation_asset(%s)", (str(paths["S3"]),))
    # Room for two copies: the least recently used goes; with a grace of 15 minutes S3 (used
    # just now) could not go either.
    assert asyncio.run(keep_budget(tmp_path, 2 * len(PAYLOAD) + 1, grace_s=900)) == 1
    evicted = {r["item_id"]: r for r in all_rows(db)}["S2"]
    assert (evicted["status"], evicted["evicted_at"] is not None) == ("wanted", True)
    back = stored(db, "S2")["assets"]["data"]
    assert back["href"] == sources["S2"] and "alternate" not in back
    assert ALTERNATE_EXTENSION not in stored(db, "S2").get("stac_extensions", [])
    assert stored(db, "S1")["assets"]["data"]["href"] == str(paths["S1"])
    # Its file stays for the grace: a request that read the item just before can still open it.
    assert paths["S2"].read_bytes() == PAYLOAD
    # Within the budget nothing more goes; past the grace the evicted file is removed.
    assert asyncio.run(keep_budget(tmp_path, 2 * len(PAYLOAD) + 1, grace_s=900)) == 0
    assert paths["S2"].exists()
    db.execute("UPDATE csdr.federation_assets SET evicted_at = now() - interval '1 hour'")
    assert asyncio.run(keep_budget(tmp_path, 2 * len(PAYLOAD) + 1, grace_s=900)) == 0
    assert not paths["S2"].exists() and paths["S1"].exists() and paths["S3"].exists()
    # Its next use copies it again (and so, over the budget, S1 goes next, not S3).
    db.execute("SELECT csdr.use_federation_asset(%s)", (sources["S2"],))
    assert asyncio.run(copy_once(tmp_path))
    assert paths["S2"].read_bytes() == PAYLOAD
    assert asyncio.run(keep_budget(tmp_path, 2 * len(PAYLOAD) + 1, grace_s=900)) == 1
    statuses = {r["item_id"]: r["status"] for r in all_rows(db)}
    assert statuses == {"S1": "wanted", "S2": "copied", "S3": "copied"}


def all_rows(db: psycopg.Connection) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM csdr.federation_assets ORDER BY item_id").fetchall()
