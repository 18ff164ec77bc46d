"""Prometheus metrics scraped over HTTP from both demos (real adapters, real redis-server)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pyotp
import pytest

from examples import demo, flask_demo
from mfa_middleware.config import Settings
from mfa_middleware.passwords import FAST
from tests.servers import RedisServer

AGENT = {"User-Agent": "test/1.0 me@example.com"}


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+-]+)"
    m = re.search("^" + pattern + "$", text, re.M)
    return float(m.group(1)) if m else 0.0


def client_for(kind: str, url: str) -> Any:
    settings = Settings(redis_url=url, secret_key="m" * 32, encryption_keys=("k" * 32,))
    if kind == "asgi":
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=demo.create_app(settings)), base_url="http://t")
    app = flask_demo.create_app(settings, argon2_profile=FAST)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t")


async def call(client: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    if isinstance(client, httpx.AsyncClient):
        return await client.request(method, path, **kw)
    return client.request(method, path, **kw)  # type: ignore[no-any-return]


def csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
async def test_metrics_count_verifications_updates_argon2_and_store_errors(kind: str, redis_url: str) -> None:
    client = client_for(kind, redis_url)
    if isinstance(client, httpx.AsyncClient):
        await client.__aenter__()  # run the demo's lifespan (seeds the demo account)
        app = client._transport.app  # type: ignore[attr-defined]
        async with app.router.lifespan_context(app):
            await _scenario(client)
    else:
        await _scenario(client)


async def _scenario(client: Any) -> None:
    before = (await call(client, "GET", "/metrics")).text
    assert (await call(client, "GET", "/metrics")).status_code == 200  # no login needed: exempt from the gate
    login = await call(client, "GET", "/login")
    await call(client, "POST", "/login", data={"username": "demo", "password": "demo-password",
                                               "csrf_token": csrf(login.text)})
    setup = (await call(client, "GET", "/mfa/setup")).text
    key = re.search(r"data-totp-key>([^<]+)<", setup).group(1).replace(" ", "")  # type: ignore[union-attr]
    await call(client, "POST", "/mfa/setup", data={"csrf_token": csrf(setup), "password": "demo-password",
                                                    "code": pyotp.TOTP(key).now()})
    await call(client, "POST", "/logout", data={"csrf_token": csrf((await call(client, "GET", "/logout")).text)})
    login = await call(client, "GET", "/login")
    await call(client, "POST", "/login", data={"username": "demo", "password": "demo-password",
                                               "csrf_token": csrf(login.text)})
    verify = (await call(client, "GET", "/mfa/verify")).text
    await call(client, "POST", "/mfa/verify", data={"csrf_token": csrf(verify), "code": "000000"})
    auth = ("demo", "demo-password")
    await call(client, "GET", "/nic/update?hostname=demo.example.test&myip=192.0.2.1", auth=auth, headers=AGENT)
    await call(client, "GET", "/nic/update?hostname=demo.example.test&myip=192.0.2.1", auth=auth, headers=AGENT)
    await call(client, "GET", "/nic/update?hostname=demo.example.test", auth=("demo", "wrong"), headers=AGENT)
    after = (await call(client, "GET", "/metrics")).text
    assert value(after, "mfa_verifications_total", method="totp", result="wrong") >= \
        value(before, "mfa_verifications_total", method="totp", result="wrong") + 1
    assert value(after, "argon2_verifies_total") >= value(before, "argon2_verifies_total") + 3
    assert value(after, "ddns_updates_total", answer="good") >= value(before, "ddns_updates_total", answer="good") + 1
    assert value(after, "ddns_updates_total", answer="nochg") >= value(before, "ddns_updates_total", answer="nochg") + 1
    assert value(after, "ddns_updates_total", answer="badauth") >= \
        value(before, "ddns_updates_total", answer="badauth") + 1
    assert value(after, "ddns_credential_cache_total", result="hit") >= \
        value(before, "ddns_credential_cache_total", result="hit") + 1
    assert re.search(r"^mfa_lockouts_total \S+$", after, re.M)


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
async def test_store_errors_are_counted(kind: str) -> None:
    server = RedisServer().start()
    try:
        client = client_for(kind, server.url)
        before = (await call(client, "GET", "/metrics")).text
        server.kill()
        r = await call(client, "GET", "/nic/update?hostname=demo.example.test", auth=("demo", "demo-password"),
                       headers=AGENT)
        assert r.text == "911\n"
        login = await call(client, "GET", "/login")
        assert login.status_code == 200  # the app's own page: not gated
        r = await call(client, "GET", "/mfa/security", headers={"Accept": "application/json"})
        after = (await call(client, "GET", "/metrics")).text
        assert value(after, "store_errors_total", component="ddns") == \
            value(before, "store_errors_total", component="ddns") + 1
        assert value(after, "ddns_updates_total", answer="911") >= value(before, "ddns_updates_total", answer="911") + 1
    finally:
        server.cleanup()


def test_tally_counts_every_thread_and_keeps_finished_threads_counts() -> None:
    """The hot-path counter: no lock per increment, yet no increment lost across threads, and a thread that
    has finished (a WSGI server's per-request thread) still counts; exposed as a prometheus counter."""
    import gc
    import threading

    from prometheus_client import CollectorRegistry, generate_latest

    from mfa_middleware.metrics import Tally

    registry = CollectorRegistry()
    tally = Tally("test_answers", "answers by code", "answer", registry)

    def work() -> None:
        for i in range(20_000):
            tally.inc("good" if i % 2 else "nochg")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tally.inc("911")
    assert tally.values() == {"good": 80_000, "nochg": 80_000, "911": 1}
    del threads, t
    gc.collect()  # the finished threads' objects go: their counts move to the retired total
    assert tally.values() == {"good": 80_000, "nochg": 80_000, "911": 1}
    assert len(tally._live) == 1  # this thread's
    text = generate_latest(registry).decode()
    assert 'test_answers_total{answer="good"} 80000.0' in text
    assert 'test_answers_total{answer="911"} 1.0' in text
    assert "# TYPE test_answers_total counter" in text  # as a prometheus_client Counter writes it


def test_tally_thread_finishing_during_a_scrape_does_not_deadlock() -> None:
    """A finished thread's counts are handed over by a finalizer, which may run inside a garbage collection
    started while a scrape holds the tally's lock: it must not need that lock."""
    import gc
    import threading

    from prometheus_client import CollectorRegistry

    from mfa_middleware.metrics import Tally

    tally = Tally("test_lock", "doc", "answer", CollectorRegistry())
    worker = threading.Thread(target=lambda: tally.inc("good"))
    worker.start()
    worker.join()
    with tally._lock:  # as during a scrape
        del worker
        gc.collect()  # the finalizer runs here, on this thread, with the lock held
    assert tally.values() == {"good": 1}
    assert tally._live == {}
