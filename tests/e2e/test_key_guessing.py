"""Key guessing over real sockets: bad keys sent to one service lock the address out of every
service of the node (the count is in the database), with 429 and Retry-After, while the limit
holds; the valid key is not even checked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from conftest import free_port
from csdr_access.admin import issue_key
from tests.e2e.processes import service

pytestmark = pytest.mark.slow

LIMIT = 5


@pytest.fixture(scope="module")
def strict(node, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A catalog and a tiler over the node's database allowing LIMIT bad keys per address."""
    env = {**node.env, "CSDR_ACCESS_MAX_KEY_FAILURES": str(LIMIT)}
    logs = tmp_path_factory.mktemp("strict")
    with (
        service("csdr_catalog.app:create_app", free_port(), env, logs) as catalog,
        service("csdr_tiler.app:create_app", free_port(), env, logs) as tiler,
    ):
        yield {"catalog": catalog, "tiler": tiler}


def test_bad_keys_at_one_service_lock_the_address_out_of_all(node, pg_cluster, strict):
    with psycopg.connect(pg_cluster.conninfo(node.env["PGDATABASE"]), autocommit=True) as conn:
        key = issue_key(conn, "E2E node", ["read"], "test")[0]
    good = {"X-API-Key": key}
    assert httpx.get(f"{strict['tiler']}/healthz").status_code == 200
    for i in range(LIMIT):
        guess = f"csdr_{i:08x}_" + "x" * 43
        r = httpx.get(f"{strict['catalog']}/collections", headers={"X-API-Key": guess})
        assert r.status_code == 401, r.text
    for base, path in ((strict["tiler"], "/searches/"), (strict["catalog"], "/collections")):
        r = httpx.get(base + path, headers=good)
        assert r.status_code == 429, (base, r.text)
        assert int(r.headers["retry-after"]) > 0
        assert "too many invalid API keys" in r.json()["description"]
    # Without a key the address is served; a service allowing more still takes the key.
    assert httpx.get(f"{strict['catalog']}/collections").status_code == 200
    assert httpx.get(f"{node.catalog}/collections", headers=good).status_code == 200
