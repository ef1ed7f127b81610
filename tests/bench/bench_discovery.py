"""Discovery at a million scenes: the catalog and discovery as real one-worker uvicorn processes
over one database holding CSDR_BENCH_ITEMS items (default 1,000,000, the catalog bench's synthetic
sensors) and CSDR_BENCH_COLLECTIONS collections (default 100: the four sensors plus copies).

Prints, in one run, with the machine's load average:
- OpenSearch granule search p50/p95 against the same STAC API search, and their ratio (goal: the
  granule search within 1.3x: it is that search plus an Atom rendering), and the same granule
  search as GeoJSON (the hop without the Atom);
- CSW GetRecords over all collections as ISO 19139 (`maxRecords=100`, as GEO DAB pages), p50/p95
  (goal: p50 <= 50 ms);
- OAI-PMH ListRecords `iso19139`, whole harvests through resumption tokens, records per second
  (goal: >= 500).
Asserts only what the answers hold: the same granule ids as the STAC search, every collection in
CSW and OAI-PMH.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from lxml import etree
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from conftest import TEMPLATE_DB, free_port
from infra.local.pgcluster import Cluster
from tests.bench import catalog_rows
from tests.bench.bench_catalog import load_items
from tests.e2e import catalog_scenes
from tests.e2e.processes import service

ITEMS = int(os.environ.get("CSDR_BENCH_ITEMS", "1000000"))
COLLECTIONS = int(os.environ.get("CSDR_BENCH_COLLECTIONS", "100"))
WARMUP = 3
ROUNDS = 40
HARVESTS = 5
GOALS = {"opensearch_over_stac": 1.3, "csw_p50_ms": 50.0, "oai_records_per_s": 500.0}
OS = "{http://a9.com/-/spec/opensearch/1.1/}"
ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
OAI = "{http://www.openarchives.org/OAI/2.0/}"
CSW = "{http://www.opengis.net/cat/csw/2.0.2}"
GMD = "http://www.isotc211.org/2005/gmd"

PARENT = "gf1-wfv-l1a"
BOX = "110,30,115,35"
STAC_PARAMS = {
    "collections": PARENT,
    "bbox": BOX,
    "datetime": "2023-03-01T00:00:00Z/2023-08-31T23:59:59Z",
    "limit": "10",
}
OPENSEARCH_PARAMS = {
    "parentIdentifier": PARENT,
    "bbox": BOX,
    "start": "2023-03-01T00:00:00Z",
    "end": "2023-08-31T23:59:59Z",
    "count": "10",
}


def collections() -> list[dict[str, Any]]:
    """The four sensors' collections, then copies under other ids up to COLLECTIONS."""
    base = [catalog_scenes.collection(s) for s in catalog_scenes.SENSORS]
    copies = [
        {**base[n % len(base)], "id": f"{base[n % len(base)]['id']}-copy-{n:03d}"}
        for n in range(max(COLLECTIONS - len(base), 0))
    ]
    return base + copies


@pytest.fixture(scope="module")
def database(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The collections and ITEMS items in a fresh migrated database."""
    name = f"bench_disc_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    env = pg_cluster.env(name)
    timings: dict[str, float] = {}
    try:
        options = "options='-c search_path=pgstac,public'"
        with psycopg.connect(f"{catalog_scenes.conninfo(env)} {options}", autocommit=True) as conn:
            Loader(PgstacDB(connection=conn)).load_collections(
                iter(collections()), insert_mode=Methods.insert
            )
        start = time.perf_counter()
        rows_file = catalog_rows.write_rows(tmp_path_factory.mktemp("rows") / "items.tsv", ITEMS)
        timings["generate rows"] = time.perf_counter() - start
        load_items(env, rows_file, timings, "load")
        rows_file.unlink()
        print(
            f"\nDiscovery bench setup, {ITEMS:,} items, {COLLECTIONS} collections: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        )
        yield env
    finally:
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def urls(database: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The catalog and discovery (asking that catalog for granules): name -> base URL."""
    logs = tmp_path_factory.mktemp("discovery-bench-logs")
    with ExitStack() as stack:
        catalog = stack.enter_context(
            service("csdr_catalog.app:create_app", free_port(), database, logs)
        )
        port = free_port()
        env = {
            **database,
            "CSDR_DISCOVERY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CSDR_DISCOVERY_CATALOG_URL": catalog,
        }
        discovery = stack.enter_context(service("csdr_discovery.app:create_app", port, env, logs))
        yield {"catalog": catalog, "discovery": discovery}


def timed(send: Callable[[], httpx.Response], rounds: int) -> np.ndarray:
    """Seconds of each of `rounds` requests, after WARMUP unmeasured ones."""
    for _ in range(WARMUP):
        assert send().status_code == 200
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        r = send()
        seconds.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
    return np.array(seconds)


def interleaved(
    sends: dict[str, Callable[[], httpx.Response]], rounds: int
) -> dict[str, np.ndarray]:
    """timed() for several requests at once: each round sends each of them once."""
    for _ in range(WARMUP):
        for send in sends.values():
            assert send().status_code == 200
    seconds: dict[str, list[float]] = {name: [] for name in sends}
    for _ in range(rounds):
        for name, send in sends.items():
            start = time.perf_counter()
            r = send()
            seconds[name].append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
    return {name: np.array(values) for name, values in seconds.items()}


def ms(seconds: np.ndarray, q: float) -> float:
    return float(np.percentile(seconds, q)) * 1000


def test_discovery_at_scale(urls: dict[str, str]) -> None:
    load_before = os.getloadavg()
    with httpx.Client(timeout=120) as client:
        stac_url, os_url = f"{urls['catalog']}/search", f"{urls['discovery']}/opensearch"
        stac = client.get(stac_url, params=STAC_PARAMS).json()
        feed = etree.fromstring(
            client.get(f"{os_url}/granules.atom", params=OPENSEARCH_PARAMS).content
        )
        granules = [e.findtext(f"{DC}identifier") for e in feed.findall(f"{ATOM}entry")]
        assert granules == [f["id"] for f in stac["features"]] and granules
        assert int(feed.findtext(f"{OS}totalResults")) == stac["numberMatched"]
        # Interleaved request by request, so a burst of load on the shared machine hits each
        # alike; the GeoJSON granule search is the same hop without the Atom rendering.
        sends = {
            "stac": lambda: client.get(stac_url, params=STAC_PARAMS),
            "atom": lambda: client.get(f"{os_url}/granules.atom", params=OPENSEARCH_PARAMS),
            "json": lambda: client.get(f"{os_url}/granules.json", params=OPENSEARCH_PARAMS),
        }
        times = interleaved(sends, ROUNDS * 2)
        stac_t, os_t, json_t = times["stac"], times["atom"], times["json"]

        csw_params = {
            "service": "CSW",
            "version": "2.0.2",
            "request": "GetRecords",
            "typeNames": "gmd:MD_Metadata",
            "outputSchema": GMD,
            "elementSetName": "full",
            "resultType": "results",
            "maxRecords": "100",
        }
        csw_url = f"{urls['discovery']}/csw"
        page = etree.fromstring(client.get(csw_url, params=csw_params).content)
        results = page.find(f"{CSW}SearchResults")
        assert int(results.get("numberOfRecordsMatched")) == COLLECTIONS
        assert len(results) == min(COLLECTIONS, 100)
        csw_t = timed(lambda: client.get(csw_url, params=csw_params), ROUNDS)

        oai_url = f"{urls['discovery']}/oai"

        def harvest() -> int:
            count = 0
            params: dict[str, str] = {"verb": "ListRecords", "metadataPrefix": "iso19139"}
            while True:
                root = etree.fromstring(client.get(oai_url, params=params).content)
                count += len(root.findall(f".//{OAI}record"))
                token = root.find(f".//{OAI}resumptionToken")
                if token is None or not token.text:
                    return count
                params = {"verb": "ListRecords", "resumptionToken": token.text}

        assert harvest() == COLLECTIONS
        rates = []
        for _ in range(HARVESTS):
            start = time.perf_counter()
            records = harvest()
            rates.append(records / (time.perf_counter() - start))
    load_after = os.getloadavg()

    ratio = ms(os_t, 50) / ms(stac_t, 50)
    rate = float(np.median(rates))
    print(
        f"\nDiscovery at {ITEMS:,} items, {COLLECTIONS} collections "
        f"(load average {load_before[0]:.1f} -> {load_after[0]:.1f}):\n"
        f"  STAC search          p50 {ms(stac_t, 50):7.1f} ms  p95 {ms(stac_t, 95):7.1f} ms\n"
        f"  OpenSearch granules  p50 {ms(os_t, 50):7.1f} ms  p95 {ms(os_t, 95):7.1f} ms"
        f"  ratio {ratio:.2f} (goal <= {GOALS['opensearch_over_stac']})\n"
        f"  OpenSearch GeoJSON   p50 {ms(json_t, 50):7.1f} ms  p95 {ms(json_t, 95):7.1f} ms"
        f"  ratio {ms(json_t, 50) / ms(stac_t, 50):.2f} (the same hop, no Atom)\n"
        f"  CSW GetRecords gmd   p50 {ms(csw_t, 50):7.1f} ms  p95 {ms(csw_t, 95):7.1f} ms"
        f"  ({min(COLLECTIONS, 100)} records; goal p50 <= {GOALS['csw_p50_ms']:.0f} ms)\n"
        f"  OAI-PMH ListRecords  {rate:7.0f} records/s (median of {HARVESTS} harvests of "
        f"{COLLECTIONS}; goal >= {GOALS['oai_records_per_s']:.0f})"
    )
