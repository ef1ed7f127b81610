"""Item tiles read from object storage against the same tiles read from local disk: the demo
scenes ingested twice, once into a local asset directory and once into a bucket of moto's S3
server on 127.0.0.1 (`CSDR_INGEST_ASSETS_URL`), served by one tiler process. The same distinct
z12-z14 tiles of each copy at 8 concurrent clients after a warm-up pass on other zooms, three
passes alternating, each pass new to the response cache; once with opened datasets kept
(the default: the bucket's objects never change under one name) and once with every asset
opened for every tile (`CSDR_TILER_OPEN_DATASETS=0`). Prints tiles/s ratios; asserts equal
images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import write_demo_scenes
from tests.bench.bench_tiler import (
    CLIENTS,
    PASSES,
    QUERY,
    WARM_UP_ZOOMS,
    WEB_MERCATOR,
    ZOOMS,
    decode,
    fire,
    interleaved,
    load_average,
    our_tiler,
)
from tests.support.s3 import S3Server, s3_server

BUCKET = "bench-assets"
ASSETS_URL = f"s3://{BUCKET}/node"
LOCAL, REMOTE = "bench-local", "bench-s3"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server(tmp_path) as server:
        server.create_bucket(BUCKET)
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def items(pg_env: dict[str, str], s3: S3Server, tmp_path: Path) -> dict[str, list[dict]]:
    """The demo scenes as COGs on local disk and in the bucket: collection -> items."""
    scenes = write_demo_scenes(tmp_path / "scenes")
    stores = {
        LOCAL: Settings(assets_dir=tmp_path / "assets"),
        REMOTE: Settings(assets_dir=tmp_path / "unused", assets_url=ASSETS_URL),
    }
    with psycopg.connect(autocommit=True) as conn:
        found = {
            collection: [ingest_file(s, conn, settings, collection=collection) for s in scenes]
            for collection, settings in stores.items()
        }
    assert all(i["assets"]["data"]["href"].startswith(ASSETS_URL) for i in found[REMOTE])
    return found


def paths(collection: str, items: list[dict], zooms: list[int]) -> list[str]:
    """Distinct tile paths over each item's bbox."""
    return [
        f"/collections/{collection}/items/{item['id']}/tiles/WebMercatorQuad/"
        f"{t.z}/{t.x}/{t.y}.png?{QUERY}"
        for item in items
        for t in WEB_MERCATOR.tiles(*item["bbox"], zooms=zooms)
    ]


@pytest.mark.parametrize("open_datasets", ["256", "0"])
def test_item_tiles_from_s3_vs_local_disk(
    items: dict[str, list[dict]],
    s3: S3Server,
    pg_env: dict[str, str],
    tmp_path: Path,
    open_datasets: str,
) -> None:
    env = {
        **pg_env,
        **s3.env,
        "CSDR_TILER_ASSETS_URL": ASSETS_URL,
        "CSDR_TILER_OPEN_DATASETS": open_datasets,
    }
    with our_tiler(env, tmp_path) as base:
        for collection in (LOCAL, REMOTE):
            fire(base, paths(collection, items[collection], WARM_UP_ZOOMS))
        runs = interleaved({c: (base, paths(c, items[c], ZOOMS)) for c in (LOCAL, REMOTE)})
    for local, remote in zip(runs[LOCAL][0].bodies, runs[REMOTE][0].bodies, strict=True):
        assert local == remote or np.array_equal(decode(local), decode(remote))
    count = len(runs[LOCAL][0].seconds)
    print(
        f"\nItem tiles from S3 (moto on 127.0.0.1) vs local disk, one tiler, open datasets kept: "
        f"{open_datasets}; {count} distinct z{ZOOMS[0]}-z{ZOOMS[-1]} tiles, {CLIENTS} clients"
    )
    print(f"{'pass':<6}{'assets':<8}{'p50 ms':>8}{'p95 ms':>8}{'tiles/s':>9}")
    for i in range(PASSES):
        for name in (LOCAL, REMOTE):
            run = runs[name][i]
            print(
                f"{i:<6}{name.removeprefix('bench-'):<8}{run.percentile_ms(50):>8.0f}"
                f"{run.percentile_ms(95):>8.0f}{run.tiles_per_s:>9.1f}"
            )
    each = [r.tiles_per_s / lo.tiles_per_s for r, lo in zip(runs[REMOTE], runs[LOCAL], strict=True)]
    print(
        f"Tiles from S3 vs local disk (open datasets {open_datasets}): "
        f"{float(np.median(each)):.2f}x tiles/s (median; passes "
        f"{', '.join(f'{r:.2f}x' for r in each)}); load average {load_average()}"
    )
