"""The request time limit: a slow answer becomes a 503 in time, a started stream is never cut."""

from __future__ import annotations

import asyncio
import time

import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from csdr_service.time_limit import TimeLimitMiddleware

LIMIT_S = 0.5


async def slow_coroutine(request):
    await asyncio.sleep(30)
    return JSONResponse({"late": True})


async def slow_thread(request):
    await anyio.to_thread.run_sync(time.sleep, 3)
    return JSONResponse({"late": True})


async def quick(request):
    return JSONResponse({"ok": True})


async def failing(request):
    raise KeyError("boom")


async def slow_stream(request):
    async def chunks():
        for i in range(4):
            yield f"{i}\n".encode()
            await asyncio.sleep(0.3)

    return StreamingResponse(chunks())


def app() -> TimeLimitMiddleware:
    routes = [
        Route("/slow", slow_coroutine),
        Route("/thread", slow_thread),
        Route("/quick", quick),
        Route("/failing", failing),
        Route("/stream", slow_stream),
    ]
    return TimeLimitMiddleware(Starlette(routes=routes), seconds=LIMIT_S)


async def get(path: str) -> tuple[httpx.Response, float]:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        started = time.monotonic()
        response = await client.get(path)
        return response, time.monotonic() - started


@pytest.mark.parametrize("path", ["/slow", "/thread"])
def test_a_request_not_answered_in_time_is_a_503_at_the_limit(path):
    response, took = asyncio.run(get(path))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["code"] == "RequestTimeout"
    assert "0.5 s" in response.json()["description"]
    assert took < 2.5  # the thread sleeps 3 s: the answer did not wait for it


def test_a_quick_request_is_untouched():
    response, _ = asyncio.run(get("/quick"))
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_a_stream_that_started_in_time_is_not_cut():
    response, took = asyncio.run(get("/stream"))
    assert response.status_code == 200
    assert response.text == "0\n1\n2\n3\n"
    assert took > LIMIT_S


def test_errors_of_the_app_pass_through_unchanged():
    with pytest.raises(KeyError, match="boom"):
        asyncio.run(get("/failing"))
