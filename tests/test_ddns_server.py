"""The update endpoint served alone (``ddns_update.app.create_app``): its /nic/update fast path answers exactly
what the routed endpoint answers, everything else goes through Starlette (404, /metrics, lifespan, root_path,
added middleware), and the process it owns gets its GC tuned after start-up (checked in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from ddns_update.app import GC_THRESHOLD, UpdateServer, create_app
from ddns_update.hosts import Hosts
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import open_store
from tests.ddns_harness import AGENT, PASSWORD, settings

HOST = "home.example.test"
UPDATE = f"/nic/update?hostname={HOST}&myip=192.0.2.1"


def _alice_and_app(redis_url: str) -> UpdateServer:
    """alice owning HOST, and the standalone server (GC left alone: this is the test run's process)."""
    store = open_store(redis_url)
    store.run(Accounts(store.keys, PasswordHasher(FAST)).create("alice", PASSWORD))
    store.run(Hosts(store.keys).add("alice", [HOST]))
    store.close()
    return create_app(settings(redis_url), gc_tuning=False)


@pytest.fixture
async def served(redis_url: str) -> AsyncIterator[tuple[UpdateServer, httpx.AsyncClient]]:
    app = _alice_and_app(redis_url)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ddns.test",
            headers={"user-agent": AGENT}, auth=("alice", PASSWORD)) as client:
        yield app, client


async def test_fast_path_answers(served: tuple[UpdateServer, httpx.AsyncClient]) -> None:
    app, client = served
    r = await client.get(UPDATE)
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "good 192.0.2.1\n", "text/plain; charset=utf-8")
    assert r.headers["cache-control"] == "no-store"
    assert (await client.get(UPDATE)).text == "nochg 192.0.2.1\n"
    posted = await client.post("/nic/update", data={"hostname": HOST, "myip": "192.0.2.2"})
    assert posted.text == "good 192.0.2.2\n"
    head = await client.head(UPDATE)
    assert (head.status_code, head.content) == (200, b"")
    bad = await client.get(UPDATE, auth=("alice", "wrong"))
    assert (bad.status_code, bad.text) == (401, "badauth\n")
    assert bad.headers["www-authenticate"].startswith("Basic realm=")
    put = await client.put(UPDATE)
    assert (put.status_code, put.headers["allow"]) == (405, "GET, HEAD, POST")
    assert app.middleware_stack is None  # Starlette builds it on the first request it routes: none so far


async def test_everything_else_goes_through_starlette(served: tuple[UpdateServer, httpx.AsyncClient]) -> None:
    _, client = served
    assert (await client.get("/")).status_code == 404
    assert (await client.get("/nic/updates")).status_code == 404
    await client.get(UPDATE)
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'ddns_updates_total{answer="good"}' in metrics.text


async def test_under_a_root_path_the_router_serves_it(served: tuple[UpdateServer, httpx.AsyncClient]) -> None:
    app, _ = served
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path="/ddns"),
                                 base_url="http://ddns.test", headers={"user-agent": AGENT},
                                 auth=("alice", PASSWORD)) as client:
        assert (await client.get("/ddns" + UPDATE)).text == "good 192.0.2.1\n"


async def test_added_middleware_sees_update_requests(redis_url: str) -> None:
    seen: list[str] = []

    class Spy(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            seen.append(request.url.path)
            return await call_next(request)

    app = _alice_and_app(redis_url)
    app.add_middleware(Spy)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ddns.test",
            headers={"user-agent": AGENT}, auth=("alice", PASSWORD)) as client:
        assert (await client.get(UPDATE)).text == "good 192.0.2.1\n"
    assert seen == ["/nic/update"]


GC_PROBE = """
import asyncio, gc, json, sys
from ddns_update.app import create_app
from mfa_middleware.config import Settings

before = (gc.get_freeze_count(), gc.get_threshold())
app = create_app(Settings(redis_url=sys.argv[1], secret_key="s" * 32, encryption_keys=("e" * 32,)))

async def main():
    async with app.router.lifespan_context(app):
        return gc.get_freeze_count(), gc.get_threshold()

after = asyncio.run(main())
print(json.dumps({"before": before, "after": after}))
"""


def test_gc_is_tuned_once_started(redis_url: str) -> None:
    out = subprocess.run([sys.executable, "-c", GC_PROBE, redis_url], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    seen: dict[str, Any] = json.loads(out)
    assert seen["before"][0] == 0 and seen["before"][1][0] < GC_THRESHOLD
    freeze_count, threshold = seen["after"]
    assert freeze_count > 10_000  # the imported modules' objects
    assert threshold[0] == GC_THRESHOLD and threshold[1:] == seen["before"][1][1:]


async def test_exception_handlers_keep_the_router_in_the_path(redis_url: str) -> None:
    app = create_app(settings(redis_url), gc_tuning=False)
    app.add_exception_handler(KeyError, lambda request, exc: Response("handled", 500))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ddns.test",
            headers={"user-agent": AGENT}, auth=("nobody", "x")) as client:
        assert (await client.get(UPDATE)).text == "badauth\n"
    assert app.middleware_stack is not None  # routed by Starlette
