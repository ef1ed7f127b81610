"""Searches from a streaming standby against the same searches from the primary: two catalog
processes over one database, one reading the primary (`PG*`), one a standby made from it with
pg_basebackup (`CSDR_DB_READ_*`), both on this machine. Prints p50 per side and their ratio;
asserts only that both sides answer the same items."""

import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg

from conftest import TEMPLATE_DB, free_port
from csdr_ingest.pipeline import ingest_file
from csdr_ingest.settings import Settings
from csdr_ingest.synthetic import write_demo_scenes
from tests.e2e.processes import service
from tests.support.standby import replayed, standby_of

COLLECTION = "replica-bench"
ROUNDS = 200  # searches per side, interleaved


def test_searches_from_the_standby_against_the_primary(pg_cluster, tmp_path: Path):
    name = f"bench_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    settings = Settings(assets_dir=tmp_path / "assets")
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        items = [
            ingest_file(s, conn, settings, collection=COLLECTION)
            for s in write_demo_scenes(tmp_path / "scenes")
        ]
    bbox = ",".join(str(v) for v in items[0]["bbox"])
    params = {"collections": COLLECTION, "bbox": bbox, "limit": 10}
    env = pg_cluster.env(name)
    with standby_of(pg_cluster) as standby:
        replayed(pg_cluster.conninfo(name), standby.conninfo(name))
        read_env = {**env, "CSDR_DB_READ_HOST": "127.0.0.1", "CSDR_DB_READ_PORT": str(standby.port)}
        with (
            service("csdr_catalog.app:create_app", free_port(), env, tmp_path) as primary,
            service("csdr_catalog.app:create_app", free_port(), read_env, tmp_path) as replica,
            httpx.Client(timeout=60) as client,
        ):
            sides = {"primary": primary, "standby": replica}
            answers = {}
            for side, url in sides.items():  # warm-up: connections, caches
                for _ in range(10):
                    answers[side] = client.get(f"{url}/search", params=params).json()
            ids = {s: sorted(f["id"] for f in a["features"]) for s, a in answers.items()}
            assert ids["primary"] == ids["standby"] and ids["primary"]
            times: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(ROUNDS):
                for side, url in sides.items():
                    start = time.perf_counter()
                    r = client.get(f"{url}/search", params=params)
                    times[side].append(time.perf_counter() - start)
                    assert r.status_code == 200
    p50 = {side: float(np.percentile(t, 50)) * 1000 for side, t in times.items()}
    print(
        f"\nsearch p50: primary {p50['primary']:.1f} ms, standby {p50['standby']:.1f} ms,"
        f" standby/primary {p50['standby'] / p50['primary']:.2f} ({ROUNDS} interleaved rounds)"
    )
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
