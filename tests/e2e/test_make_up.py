"""`make up` as an operator runs it: from a fresh clone under a mode-700 folder (root's home, say:
as root the postgres user cannot reach it, so the cluster lives elsewhere and the summary says
where), on other ports, twice (the second changes nothing), `make down`, and up again with the
data kept.

The clone is of HEAD: commit what this test should see (see the `clone` fixture)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import uuid
from pathlib import Path

import httpx
import morecantile
import pytest
from shapely.geometry import shape

from conftest import free_port

URL = re.compile(r"http://127\.0\.0\.1:\d+[^\s)]*")


@pytest.fixture
def node_env(clone):
    env = {
        "CSDR_PG_PORT": str(free_port()),
        "CSDR_CATALOG_PORT": str(free_port()),
        "CSDR_TILER_PORT": str(free_port()),
        "CSDR_INGEST_PORT": str(free_port()),
        "CSDR_PUSH_PORT": str(free_port()),
        "CSDR_ORDERS_PORT": str(free_port()),
        "CSDR_DISCOVERY_PORT": str(free_port()),
        "CSDR_FEDERATION_PORT": str(free_port()),
        "CSDR_PORTAL_PORT": str(free_port()),
    }
    yield env
    clone.make("down", env)
    location = clone.path / ".data" / "pg.location"
    if location.exists():  # a cluster kept outside the clone
        shutil.rmtree(location.read_text().strip(), ignore_errors=True)


def demo_items(catalog: str) -> dict[str, dict]:
    r = httpx.get(f"{catalog}/collections/csdr-demo/items", params={"limit": 100})
    return {f["id"]: f for f in r.json()["features"]}


def crashed_is_back_within_seconds(clone, node_env: dict[str, str], service: str) -> None:
    """Kill the service's process as a segmentation fault would; its supervisor starts it again,
    and `make status` says so."""
    state_file = clone.path / ".data" / "run" / f"{service}.state.json"
    pid = json.loads(state_file.read_text())["pid"]
    os.kill(pid, signal.SIGSEGV)
    url = f"http://127.0.0.1:{node_env[f'CSDR_{service.upper()}_PORT']}/readyz"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the {service} did not come back"
        time.sleep(0.2)
    assert json.loads(state_file.read_text())["pid"] != pid
    status = clone.make("status", node_env)
    assert status.returncode == 0, status.stdout
    assert "restarted 1 time, last killed by SIGSEGV" in status.stdout, status.stdout


def test_make_up_is_idempotent_and_down_keeps_the_data(clone, node_env):
    make = clone.make
    first = make("up", node_env)
    assert first.returncode == 0, first.stdout + first.stderr
    data = clone.path / ".data"
    assert f"data in {data}" in first.stdout
    if os.geteuid() == 0:  # the server runs as postgres, which cannot enter a mode-700 folder
        home = Path(Path(data, "pg.location").read_text().strip())
        assert f"cluster files in {home}" in first.stdout
        assert (home / "pg" / "PG_VERSION").exists() and not (data / "pg").exists()
        assert (home / "pg.password").stat().st_mode & 0o077 == 0
    catalog = f"http://127.0.0.1:{node_env['CSDR_CATALOG_PORT']}"
    items = demo_items(catalog)
    assert len(items) == 3
    demo = httpx.get(f"{catalog}/collections/csdr-demo").json()
    assert demo["title"] != "csdr-demo" and demo["keywords"] and demo["providers"], demo
    urls = URL.findall(first.stdout)
    portal = f"http://127.0.0.1:{node_env['CSDR_PORTAL_PORT']}/"
    assert urls[0] == portal, "the portal is the first URL printed"
    assert httpx.get(f"{portal}config.json").json()["catalog"] == catalog
    templates = [u for u in urls if "{z}/{x}/{y}" in u]
    assert templates, first.stdout
    for url in urls:
        if url in templates:  # a tile inside the item the template names
            item = next(items[i] for i in items if f"/items/{i}/" in url)
            lon, lat = shape(item["geometry"]).representative_point().coords[0]
            tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 13)
            url = url.replace("{z}/{x}/{y}", f"{tile.z}/{tile.x}/{tile.y}")
        assert httpx.get(url, timeout=30).status_code == 200, url

    key_file = Path(data, "admin.key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert Path(data, "node.env").stat().st_mode & 0o077 == 0  # its PGPASSWORD
    key = key_file.read_text().strip()
    assert str(key_file) in first.stdout and key not in first.stdout + first.stderr
    ingest = f"http://127.0.0.1:{node_env['CSDR_INGEST_PORT']}/jobs/{uuid.uuid4()}"
    assert httpx.get(ingest, timeout=10).status_code == 401
    assert httpx.get(ingest, headers={"X-API-Key": key}, timeout=10).status_code == 404
    # A key in the query (how QGIS sends it) reaches no log file.
    assert httpx.get(f"{catalog}/collections", params={"api_key": key}).status_code == 200
    secret = key.split("_", 2)[2]
    for log in Path(data, "logs").glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log

    crashed_is_back_within_seconds(clone, node_env, "catalog")

    assets = sorted(Path(data, "assets").rglob("*"))
    second = make("up", node_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "ingested" not in second.stdout
    assert key_file.read_text().strip() == key  # the same key, not a new one each time
    assert demo_items(catalog) == items
    assert sorted(Path(data, "assets").rglob("*")) == assets

    down = make("down", node_env)
    assert down.returncode == 0 and "stopped database" in down.stdout
    with pytest.raises(httpx.TransportError):
        httpx.get(catalog + "/healthz", timeout=2)
    assert make("status", node_env).returncode != 0  # not everything runs

    again = make("up", node_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ingested" not in again.stdout
    assert demo_items(catalog) == items
