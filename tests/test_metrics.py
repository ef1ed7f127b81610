"""Every service's `/metrics`: parsed by the Prometheus client's own text parser, counting
requests by route template (never the raw URL), moving when requests run, and carrying the
service's own gauges and its database pool's use; ingest's queue depth and job durations and
push's lag and dead letters following the database."""

from __future__ import annotations

import importlib
import json
import re
import time
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from csdr_ingest.metrics import IngestMetrics
from csdr_push.metrics import PushMetrics
from csdr_service.metrics import Metrics
from csdr_tiler.metrics import TilerMetrics
from infra.openapi import ROOT, SERVICES

# A path with a parameter per service, and the template it must be counted under.
TEMPLATED = {
    "catalog": ("/collections/{}", "/collections/{collection_id}"),
    "tiler": ("/algorithms/{}", "/algorithms/{algorithmId}"),
    "ingest": ("/jobs/{}", "/jobs/{job_id}"),
    "push": ("/subscriptions/{}", "/subscriptions/{subscription_id}"),
    "orders": ("/orders/{}", "/orders/{order_id}"),
    "discovery": ("/opensearch/granules.{}", "/opensearch/granules.{fmt}"),
    "federation": ("/federation/peers/{}/wake", "/federation/peers/{name}/wake"),
    # The portal serves its files from a mount at `/`: every other path is that mount's.
    "portal": ("/no-such-file-{}.js", "/{path}"),
}
# Where a path no route has is counted (the portal's static mount takes every path).
UNMATCHED_ROUTE = {"portal": "/{path}"}
# The service's own gauges, beside the pool's.
OWN = {
    "catalog": set(),
    "tiler": {
        "csdr_tiler_open_datasets",
        "csdr_tiler_open_datasets_max",
        "csdr_tiler_gdal_block_cache_bytes",
        "csdr_tiler_gdal_block_cache_max_bytes",
        "csdr_tiler_tile_cache",
    },
    "ingest": {"csdr_ingest_jobs", "csdr_ingest_job_duration_seconds"},
    "push": {
        "csdr_push_event_lag_seconds",
        "csdr_push_deliveries_overdue",
        "csdr_push_delivery_lag_seconds",
        "csdr_push_dead_letters",
    },
    "orders": set(),
    "discovery": set(),
    "federation": set(),
    "portal": set(),
}
NO_DATABASE = {"portal"}


def scrape(client: TestClient) -> dict[str, list]:
    """The samples of /metrics by family name (the parser's, not ours)."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def requests_of(families: dict[str, list], route: str) -> float:
    return sum(
        s.value
        for s in families["csdr_http_requests"]
        if s.name == "csdr_http_requests_total" and s.labels["route"] == route
    )


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_parse_and_count_requests_by_route_template(service, pg_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CSDR_PUSH_WORKER", "false")
    monkeypatch.setenv("CSDR_FEDERATION_WORKER", "false")
    monkeypatch.setenv("CSDR_ORDERS_WORKER", "false")
    monkeypatch.setenv("CSDR_INGEST_ASSETS_DIR", str(tmp_path / "assets"))
    create_app = importlib.import_module(f"csdr_{service}.app").create_app
    raw, template = TEMPLATED[service]
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        before = scrape(client)
        assert requests_of(before, "/healthz") == 0
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        tokens = [uuid.uuid4().hex for _ in range(2)]
        for token in tokens:
            client.get(raw.format(token))
        client.get(f"/no-such-route/{tokens[0]}")
        after = scrape(client)

    assert requests_of(after, "/healthz") == 3
    unmatched = UNMATCHED_ROUTE.get(service, "<unmatched>")
    assert requests_of(after, template) == 2 + (unmatched == template)
    assert requests_of(after, unmatched) == 1 + (unmatched == template) * 2
    routes = {s.labels.get("route") for s in after["csdr_http_requests"]}
    assert not any(t in (r or "") for r in routes for t in tokens), "a raw URL became a label"
    latency = {
        s.labels["route"]: s.value
        for s in after["csdr_http_request_duration_seconds"]
        if s.name.endswith("_count")
    }
    assert latency["/healthz"] == 3
    early = {s.labels["route"] for s in after["csdr_http_answered_before_routing"]}
    assert "/healthz" not in early, "a routed request counted as answered before routing"
    pools = {(s.labels["pool"], s.labels["state"]) for s in after["csdr_db_pool_connections"]}
    assert bool(pools) != (service in NO_DATABASE), "a database pool reported or missing"
    assert OWN[service] <= set(after), f"missing gauges: {OWN[service] - set(after)}"


def test_the_grafana_dashboard_names_only_metrics_the_services_export():
    metrics = Metrics()
    IngestMetrics(metrics, lambda: None)  # type: ignore[arg-type, return-value]
    PushMetrics(metrics, lambda: None)  # type: ignore[arg-type, return-value]
    TilerMetrics(metrics, lambda: None)
    exported = set()
    for family in metrics.registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        exported |= {family.name + s for s in suffixes.get(family.type, [""])}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "csdr-node.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {name for expr in exprs for name in re.findall(r"\b(csdr_[a-z_]+)", expr)}
    assert named and named <= exported, f"not exported: {named - exported}"


def gauge(families: dict[str, list], name: str, **labels: str) -> float:
    """The value of the sample `name` with `labels` (0 when there is none)."""
    family = name.removesuffix("_total").removesuffix("_count")
    return sum(
        s.value
        for s in families.get(family, [])
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_ingest_queue_depth_and_job_durations_move(pg_env, tmp_path, monkeypatch):
    from csdr_ingest.app import create_app

    monkeypatch.setenv("CSDR_INGEST_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.setenv("CSDR_INGEST_POLL_INTERVAL_S", "0.1")
    with psycopg.connect(autocommit=True) as conn:
        for status, source in (("queued", "a"), ("queued", "b"), ("running", "c")):
            conn.execute(
                "INSERT INTO csdr.ingest_jobs (id, source, status, worker, lease_until)"
                " VALUES (gen_random_uuid(), %s, %s, 'other-host:1:x', now() + interval '1 hour')",
                (str(tmp_path / f"missing-{source}.tif"), status),
            )
    monkeypatch.setenv("CSDR_INGEST_WORKERS", "0")  # nobody here runs them yet
    with TestClient(create_app()) as client:
        families = scrape(client)
    assert gauge(families, "csdr_ingest_jobs", status="queued") == 2
    assert gauge(families, "csdr_ingest_jobs", status="running") == 1
    duration = "csdr_ingest_job_duration_seconds_count"
    assert gauge(families, duration, outcome="failed") == 0

    monkeypatch.setenv("CSDR_INGEST_WORKERS", "1")  # runs the two queued jobs: no such files
    with TestClient(create_app()) as client:
        deadline = time.monotonic() + 30
        while gauge(families := scrape(client), duration, outcome="failed") < 2:
            assert time.monotonic() < deadline, "the queued jobs did not run"
            time.sleep(0.1)
    assert gauge(families, "csdr_ingest_jobs", status="queued") == 0
    assert gauge(families, "csdr_ingest_jobs", status="running") == 1
    assert gauge(families, duration, outcome="succeeded") == 0


def test_push_lag_and_dead_letters_move(pg_env, monkeypatch):
    from csdr_push.app import create_app

    monkeypatch.setenv("CSDR_PUSH_WORKER", "false")  # nothing fans the event out or retries
    with TestClient(create_app()) as client:
        before = scrape(client)
        with psycopg.connect(autocommit=True) as conn:
            conn.execute(
                "INSERT INTO csdr.item_events (type, collection, item_id, row_md5)"
                " VALUES ('created', 'c', 'i', 'x')"
            )
            subscription = conn.execute(
                "INSERT INTO csdr.subscriptions (webhook_url, webhook_secret)"
                " VALUES ('https://example.org/hook', 's') RETURNING id"
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO csdr.deliveries (subscription_id, type, status, dead_at)"
                " VALUES (%s, 'test', 'dead', now()), (%s, 'test', 'pending', now())",
                (subscription, subscription),
            )
        time.sleep(0.05)  # the event and the pending delivery age
        after = scrape(client)
    assert gauge(before, "csdr_push_dead_letters") == 0
    assert gauge(before, "csdr_push_event_lag_seconds") == 0
    assert gauge(after, "csdr_push_dead_letters") == 1
    assert gauge(after, "csdr_push_event_lag_seconds") > 0
    assert gauge(after, "csdr_push_deliveries_overdue") == 1
    assert gauge(after, "csdr_push_delivery_lag_seconds") > 0
