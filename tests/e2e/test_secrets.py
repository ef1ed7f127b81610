"""Keys and webhook secrets stay where they were given: never in a service's logs, never in an
error body, never in a link to another server. A valid key, a wrong secret for a real prefix and
a malformed key travel to every service as headers and as `?api_key=`; an item whose licence and
mirror links point at another server (on the tiler's host, another port) is read with a key
in the query; a subscription is made with a webhook secret."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from csdr_access.admin import issue_key
from infra.local.pgcluster import Cluster
from tests.e2e.conftest import Node

pytestmark = pytest.mark.slow

COLLECTION = "e2e-secrets"
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


def test_keys_and_secrets_are_never_logged_echoed_or_sent_elsewhere(
    node: Node, push: tuple[str, dict[str, str]], pg_cluster: Cluster
) -> None:
    conninfo = pg_cluster.conninfo(node.env["PGDATABASE"])
    other_server = node.tiler + "0"  # the tiler's host, another port: another server
    with psycopg.connect(conninfo, autocommit=True) as conn:
        key = issue_key(conn, "E2E node", ["read", "ingest"], "test")[0]
        conn.execute("SET search_path TO pgstac, public")
        conn.execute(
            "SELECT pgstac.create_collection(%s)",
            (Jsonb({
                "type": "Collection", "stac_version": "1.1.0", "id": COLLECTION,
                "description": "secrets", "license": "other",
                "links": [{"rel": "license", "href": f"{other_server}/licence"}],
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [[None, None]]}},
            }),),
        )  # fmt: skip
        ring = [[118.9, 37.8], [119.0, 37.8], [119.0, 37.9], [118.9, 37.9], [118.9, 37.8]]
        conn.execute(
            "SELECT pgstac.create_item(%s)",
            (Jsonb({
                "type": "Feature", "stac_version": "1.1.0", "id": "S1", "collection": COLLECTION,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "bbox": [118.9, 37.8, 119.0, 37.9],
                "properties": {"datetime": "2024-05-12T02:46:00Z"},
                "links": [{"rel": "via", "href": f"{other_server}/items/S1"}],
                "assets": {"mirror": {"href": f"{other_server}/S1.tif", "roles": ["data"]}},
            }),),
        )  # fmt: skip
    prefix = key.split("_")[1]
    wrong = f"csdr_{prefix}_{'x' * 32}"
    malformed = "not-a-key-" + uuid.uuid4().hex
    secrets = [key, key.split("_", 2)[2], wrong, malformed, WEBHOOK_SECRET]

    bodies: list[str] = []
    push_url, _ = push
    requests = [
        f"{node.catalog}/collections/{COLLECTION}/items/S1",
        f"{node.catalog}/search?collections={COLLECTION}",
        f"{node.catalog}/search?bbox=1,2,3",  # 400
        f"{node.catalog}/collections/nothing-here",  # 404
        f"{node.tiler}/collections/{COLLECTION}/items/S1/info",
        f"{node.tiler}/collections/{COLLECTION}/items/nope/tilejson.json",  # 404
        f"{node.ingest}/jobs/{uuid.uuid4()}",  # 404
        f"{push_url}/subscriptions",
    ]
    with httpx.Client(timeout=30) as client:
        for url in requests:
            for given in (key, wrong, malformed):
                bodies.append(client.get(url, params={"api_key": given}).text)
                bodies.append(client.get(url, headers={"X-API-Key": given}).text)
                bodies.append(client.get(url, headers={"Authorization": f"Bearer {given}"}).text)
        r = client.post(
            f"{push_url}/subscriptions",
            json={
                "collections": [COLLECTION],
                "webhook": {"url": "http://127.0.0.1:9/hook", "secret": WEBHOOK_SECRET},
            },
            headers={"X-API-Key": key},
        )
        assert r.status_code == 201, r.text
        # Read with the key in the query, links to this node carry it, links elsewhere never do.
        item = client.get(
            f"{node.catalog}/collections/{COLLECTION}/items/S1", params={"api_key": key}
        ).json()
        collection = client.get(
            f"{node.catalog}/collections/{COLLECTION}", params={"api_key": key}
        ).json()
    hrefs = [link["href"] for link in item["links"] + collection["links"]]
    hrefs += [asset["href"] for asset in item["assets"].values()]
    elsewhere = [h for h in hrefs if h.startswith(other_server)]
    assert len(elsewhere) == 3 and not any(key in h for h in elsewhere), elsewhere
    assert any(key in h for h in hrefs if h.startswith(f"{node.catalog}/"))

    # No answer repeats a refused key or the webhook secret (a valid key given in the query comes
    # back only in links to this node, above).
    for body in bodies:
        for secret in (wrong, malformed, WEBHOOK_SECRET):
            assert secret not in body
    # No log line of any service of this session holds any of them.
    logs = sorted(Path(node.assets_dir).parent.parent.rglob("*.log"))
    assert len(logs) >= 4
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{log.name} holds a secret"
