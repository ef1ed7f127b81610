"""deploy/k8s renders (infra.kustomize) and validates against the Kubernetes schemas
(kubernetes-validate, strict: no unknown field), offline; every service of the node runs in it
with its probes, resources, Service and metrics scrape, catalog and tiler autoscale, the
migration Job runs the migrate image, and the read-replica and object-storage settings reach the
services."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from infra.kustomize import merge, render
from infra.openapi import ROOT, SERVICES

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"  # the oldest minor the managed offerings still support
TARGETS = [K8S / "base", *sorted((K8S / "overlays").iterdir())]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_every_object_validates_against_the_kubernetes_schemas(target: Path):
    objects = render(target)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_every_service_runs_with_probes_resources_and_a_service(target: Path):
    objects = render(target)
    deployments, services = by_kind(objects, "Deployment"), by_kind(objects, "Service")
    assert set(SERVICES) <= set(deployments), set(SERVICES) - set(deployments)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), name
        assert "memory" in container["resources"]["limits"], name
        port = container["ports"][0]["containerPort"]
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics", name
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port), name
        service = services[name]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        assert container["image"].startswith(f"csdr-node/{name}:"), container["image"]


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_catalog_and_tiler_autoscale_and_the_migration_job_runs(target: Path):
    objects = render(target)
    scalers = by_kind(objects, "HorizontalPodAutoscaler")
    assert set(scalers) == {"catalog", "tiler"}
    for name, hpa in scalers.items():
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert "replicas" not in by_kind(objects, "Deployment")[name]["spec"], "the HPA sets it"
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [job] = by_kind(objects, "Job").values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("csdr-node/migrate:")
    assert {"csdr-node-config", "csdr-node-database"} <= {
        ref.get("configMapRef", ref.get("secretRef", {}))["name"] for ref in container["envFrom"]
    }


def test_settings_reach_the_services_from_the_configmap_and_secrets():
    objects = render(K8S / "overlays" / "production")
    config = by_kind(objects, "ConfigMap")["csdr-node-config"]["data"]
    # The read replica (catalog and tiler), object storage, the primary.
    assert config["CSDR_DB_READ_HOST"] and config["PGHOST"] != config["CSDR_DB_READ_HOST"]
    assert config["CSDR_INGEST_ASSETS_URL"].startswith("s3://")
    assert {"PGPORT", "PGDATABASE", "AWS_REGION", "CSDR_DB_READ_PORT"} <= set(config)
    assert not {"PGPASSWORD", "AWS_SECRET_ACCESS_KEY"} & set(config), "secrets in a ConfigMap"
    for name, deployment in by_kind(objects, "Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        expected = {"csdr-node-config", "csdr-node-database", "csdr-node-object-storage"}
        assert refs == expected, name
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"csdr"}
    # The development overlay brings its own Secrets, with every key the services read.
    dev = render(K8S / "overlays" / "development")
    secrets = by_kind(dev, "Secret")
    assert set(secrets["csdr-node-database"]["stringData"]) == {"PGUSER", "PGPASSWORD"}
    assert set(secrets["csdr-node-object-storage"]["stringData"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }


def test_the_development_database_runs_the_pinned_pgstac():
    compose = (ROOT / "docker-compose.yml").read_text()
    [statefulset] = by_kind(render(K8S / "overlays" / "development"), "StatefulSet").values()
    image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"image: {image}" in compose


def test_patches_merge_named_lists_by_name_and_replace_the_rest():
    base = {"containers": [{"name": "a", "image": "x", "args": [1]}], "replicas": 1}
    change = {"containers": [{"name": "a", "args": [2]}, {"name": "b"}], "replicas": 3}
    assert merge(base, change) == {
        "containers": [{"name": "a", "image": "x", "args": [2]}, {"name": "b"}],
        "replicas": 3,
    }


def test_an_unknown_kustomization_field_is_refused(tmp_path: Path):
    (tmp_path / "kustomization.yaml").write_text("configMapGenerator: []\n")
    with pytest.raises(ValueError, match="configMapGenerator"):
        render(tmp_path)
