"""The shared plumbing: readiness answers 503 for a probe that fails or hangs; logs are JSON;
errors have the node's shape and keep their causes in the log."""

import asyncio
import json
import logging
import sys

import asyncpg
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from csdr_service.errors import add_exception_handlers
from csdr_service.health import health_router
from csdr_service.logs import JsonFormatter, configure_logging
from csdr_service.request_ids import RequestIdMiddleware
from csdr_service.settings import CommaList, IntList


def app_with(probe) -> TestClient:
    app = FastAPI()
    app.include_router(health_router(probe, lambda request: 0.2))
    return TestClient(app)


async def answers(request: Request) -> dict[str, str]:
    return {"pgstac": "0.10.0"}


async def refuses(request: Request) -> dict[str, str]:
    raise ConnectionRefusedError("connection refused")


async def hangs(request: Request) -> dict[str, str]:
    await asyncio.sleep(30)
    return {}


def test_ready_adds_what_the_probe_reports():
    client = app_with(answers)
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "pgstac": "0.10.0"}


@pytest.mark.parametrize("probe", [refuses, hangs], ids=["refuses", "hangs"])
def test_not_ready_when_the_probe_fails_or_outlasts_the_timeout(probe):
    client = app_with(probe)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "database": "unreachable"}
    assert client.get("/healthz").status_code == 200


def test_log_records_are_one_json_object_each():
    try:
        raise ValueError("bad band")
    except ValueError:
        record = logging.LogRecord("csdr.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "csdr.x"
    assert entry["message"] == "failed x" and "ValueError: bad band" in entry["exc_info"]


def test_configure_logging_quiets_named_loggers_once():
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging("info", quiet={"chatty.upstream": logging.ERROR})
        configure_logging("warning")
        assert logging.getLogger("chatty.upstream").level == logging.ERROR
        assert root.level == logging.WARNING
        assert sum(isinstance(h.formatter, JsonFormatter) for h in root.handlers) == 1
    finally:
        root.handlers[:] = before


def errors_app() -> TestClient:
    app = FastAPI()
    add_exception_handlers(app, "demo")
    app.add_middleware(RequestIdMiddleware)

    class Body(BaseModel):
        webhook: dict[str, int]

    @app.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {}

    @app.get("/locked")
    async def locked() -> None:
        raise HTTPException(401, "an API key is required", {"WWW-Authenticate": "Bearer"})

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("password=hunter2 in a connection string")

    @app.get("/cut-off")
    async def cut_off() -> None:
        # What asyncpg raised on a pooled connection the server had dropped mid-query during a
        # PostgreSQL restart (test_database_restart): its protocol left mid-operation.
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    return TestClient(app, raise_server_exceptions=False)


def test_errors_have_the_node_shape_and_name_the_field():
    client = errors_app()
    r = client.post("/things", json={"webhook": {"secret": "x"}})
    assert r.status_code == 400 and r.json()["code"] == "InvalidRequest"
    assert r.json()["description"].startswith("webhook.secret: ")
    r = client.get("/locked")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"code": "Unauthorized", "description": "an API key is required"}
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


def test_unexpected_errors_are_500_without_their_cause(caplog):
    r = errors_app().get("/broken")
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    assert len(rid) == 32
    assert r.json() == {
        "code": "InternalError",
        "description": f"unexpected failure; see the demo log (request {rid})",
    }
    assert "hunter2" in caplog.text and rid in caplog.text


def test_a_connection_the_database_dropped_mid_query_is_a_503():
    r = errors_app().get("/cut-off")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json()["code"] == "ServiceUnavailable", r.json()


def test_each_answer_carries_the_request_id_given_or_a_new_one():
    client = errors_app()
    given = client.get("/locked", headers={"X-Request-ID": "trace-42"})
    assert given.status_code == 401 and given.headers["x-request-id"] == "trace-42"
    broken = client.get("/broken", headers={"X-Request-ID": "trace-43"})
    assert broken.headers["x-request-id"] == "trace-43"
    assert broken.json()["description"].endswith("(request trace-43)")
    first, second = client.get("/locked"), client.get("/locked", headers={"X-Request-ID": ""})
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    too_long = client.get("/locked", headers={"X-Request-ID": "x" * 65})
    assert too_long.headers["x-request-id"] != "x" * 65


def test_list_settings_read_commas_or_json(monkeypatch):
    class Demo(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="DEMO_")
        origins: CommaList = ["*"]
        ports: IntList = [1]

    monkeypatch.setenv("DEMO_ORIGINS", "https://a.example, https://b.example,")
    monkeypatch.setenv("DEMO_PORTS", "[8081, 8082]")
    assert Demo().origins == ["https://a.example", "https://b.example"]
    assert Demo().ports == [8081, 8082]
