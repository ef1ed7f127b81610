"""Discovery end to end: ingest, the catalog and discovery as real processes over one database.
Scenes ingested through POST /jobs appear to a CSW client (OWSLib), an OAI-PMH harvester
(Sickle) and an OpenSearch granule search (the catalog's own items); a collection made private
with csdr-admin's policy leaves CSW and becomes a deleted OAI-PMH record within seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from lxml import etree
from owslib.csw import CatalogueServiceWeb
from sickle import Sickle

from conftest import free_port
from csdr_access.admin import set_policy
from csdr_ingest.synthetic import DEMO_SCENES, write_scene
from tests.e2e.conftest import Node
from tests.e2e.processes import service

pytestmark = pytest.mark.slow

GMD = "http://www.isotc211.org/2005/gmd"
OS = "{http://a9.com/-/spec/opensearch/1.1/}"
ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
SHOWN, HIDDEN = "e2e-discovery", "e2e-withdrawn"


@pytest.fixture(scope="module")
def discovery(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The node's scenes ingested (three in SHOWN, one in HIDDEN), then discovery started."""
    scenes = tmp_path_factory.mktemp("scenes")
    for scene in DEMO_SCENES:
        assert node.run_job(write_scene(scene, scenes), SHOWN)["status"] == "succeeded"
    assert node.run_job(write_scene(DEMO_SCENES[0], scenes), HIDDEN)["status"] == "succeeded"
    port = free_port()
    env = {
        **node.env,
        "CSDR_DISCOVERY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CSDR_DISCOVERY_CATALOG_URL": node.catalog,
        "CSDR_DISCOVERY_TILER_URL": node.tiler,
        "CSDR_DISCOVERY_ACCESS_TTL_S": "0",
    }
    logs = tmp_path_factory.mktemp("discovery-logs")
    with service("csdr_discovery.app:create_app", port, env, logs) as url:
        yield url


def test_harvesters_see_the_ingested_collections_and_a_withdrawal(
    node: Node, discovery: str
) -> None:
    csw = CatalogueServiceWeb(f"{discovery}/csw", timeout=30)
    csw.getrecords2(outputschema=GMD, maxrecords=10, esn="full")
    assert set(csw.records) == {SHOWN, HIDDEN}
    stac = httpx.get(f"{node.catalog}/collections/{SHOWN}").json()
    ident = csw.records[SHOWN].identification[0]
    west, south, east, north = stac["extent"]["spatial"]["bbox"][0]
    assert float(ident.bbox.minx) == pytest.approx(west)
    assert float(ident.bbox.maxy) == pytest.approx(north)
    online = {o.protocol: o.url for o in csw.records[SHOWN].distribution.online}
    assert httpx.get(online["OGC:WMTS"]).status_code == 200  # the tiler answers the link

    sickle = Sickle(f"{discovery}/oai", timeout=30)
    first = sickle.ListRecords(metadataPrefix="iso19139")
    since = first.oai_response.xml.find(".//{http://www.openarchives.org/OAI/2.0/}responseDate")
    assert {r.header.identifier.rsplit(":", 1)[1] for r in first} == {SHOWN, HIDDEN}
    time.sleep(1.1)

    with psycopg.connect(**_pg(node.env), autocommit=True) as conn:
        set_policy(conn, HIDDEN, "private", [], "e2e")
    csw.getrecords2(maxrecords=10)
    assert set(csw.records) == {SHOWN}
    later = list(
        sickle.ListRecords(metadataPrefix="oai_dc", ignore_deleted=False, **{"from": since.text})
    )
    assert [(r.header.identifier.rsplit(":", 1)[1], r.deleted) for r in later] == [(HIDDEN, True)]


def test_opensearch_granules_are_the_catalogs_items(node: Node, discovery: str) -> None:
    box = "118.5,37.5,119.5,38.5"
    r = httpx.get(
        f"{discovery}/opensearch/granules.atom",
        params={"parentIdentifier": SHOWN, "bbox": box, "count": "50"},
    )
    assert r.status_code == 200, r.text
    feed = etree.fromstring(r.content)
    ids = [e.findtext(f"{DC}identifier") for e in feed.findall(f"{ATOM}entry")]
    stac = httpx.get(
        f"{node.catalog}/search",
        params={"collections": SHOWN, "bbox": box, "limit": 50, "count": "true"},
    ).json()
    assert ids == [f["id"] for f in stac["features"]] and ids
    assert int(feed.findtext(f"{OS}totalResults")) == stac["numberMatched"]
    enclosure = feed.find(f"{ATOM}entry/{ATOM}link[@rel='enclosure']")
    assert httpx.head(enclosure.get("href")).status_code == 200  # the catalog's download route


def _pg(env: dict[str, str]) -> dict[str, str]:
    return {
        "host": env["PGHOST"],
        "port": env["PGPORT"],
        "user": env["PGUSER"],
        "password": env["PGPASSWORD"],
        "dbname": env["PGDATABASE"],
    }
