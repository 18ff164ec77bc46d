"""``GET /nic/checkip`` through both adapters (real HTTP via httpx's ASGI and WSGI transports), the endpoint
served alone (``create_app``, ``create_wsgi_app``), the gate's default exemption, and its Accept rule.
Real servers and real ddclient runs are in ``test_peers_served_clients.py``."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddns_update.app import CheckIpEndpoint, WsgiCheckIpApp, checkip_reply, create_app, create_wsgi_app
from ddns_update.protocol import CHECKIP_PAGE, IPNetwork, checkip_body
from mfa_middleware.config import Settings
from mfa_middleware.gate import DEFAULT_EXEMPT, Gate
from mfa_middleware.passwords import FAST
from mfa_middleware.store import Keys, MemoryStore, open_store
from mfa_middleware.wsgi import MFAWsgiMiddleware
from tests.servers import free_port
from tests.update_clients import enable_2fa

PROXY = [ipaddress.ip_network("10.0.0.0/8")]
SETTINGS = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,), trusted_proxies=("10.0.0.0/8",))


async def _get(adapter: str, peer: str, headers: dict[str, str] | None = None, method: str = "GET",
               trusted: list[IPNetwork] = PROXY) -> httpx.Response:
    if adapter == "asgi":
        transport: Any = httpx.ASGITransport(app=CheckIpEndpoint(trusted), client=(peer, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, "/nic/checkip", headers=headers)
    with httpx.Client(transport=httpx.WSGITransport(app=WsgiCheckIpApp(trusted), remote_addr=peer),
                      base_url="http://t") as sync:
        return sync.request(method, "/nic/checkip", headers=headers)


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_the_page_the_plain_answer_and_head(adapter: str) -> None:
    r = await _get(adapter, "198.51.100.7")
    assert (r.status_code, r.text) == (200, CHECKIP_PAGE.format("198.51.100.7"))
    assert r.text == "<html><head><title>Current IP Check</title></head><body>Current IP Address: 198.51.100.7" \
                     "</body></html>"
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert (r.headers["cache-control"], r.headers["content-length"]) == ("no-store", str(len(r.content)))
    plain = await _get(adapter, "198.51.100.7", {"Accept": "text/plain"})
    assert (plain.text, plain.headers["content-type"]) == ("198.51.100.7", "text/plain; charset=utf-8")
    head = await _get(adapter, "198.51.100.7", method="HEAD")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", r.headers["content-length"])
    refused = await _get(adapter, "198.51.100.7", method="POST")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
    assert refused.headers["content-length"] == str(len(refused.content))


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_proxy_headers_count_only_from_trusted_proxies(adapter: str) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.9", "Accept": "text/plain"}
    assert (await _get(adapter, "10.1.2.3", forwarded)).text == "198.51.100.9"
    assert (await _get(adapter, "203.0.113.5", forwarded)).text == "203.0.113.5"  # anyone may send the header
    assert (await _get(adapter, "10.1.2.3", forwarded, trusted=[])).text == "10.1.2.3"  # none configured
    # The walk stops at the first address that is not a trusted proxy, as for /nic/update.
    chain = {"X-Forwarded-For": "192.0.2.1, 198.51.100.9, 10.9.9.9", "Accept": "text/plain"}
    assert (await _get(adapter, "10.1.2.3", chain)).text == "198.51.100.9"
    real = {"X-Real-IP": "2001:db8::7", "Accept": "text/plain"}
    assert (await _get(adapter, "10.1.2.3", real)).text == "2001:db8::7"


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_ipv6_and_mapped_peers(adapter: str) -> None:
    assert (await _get(adapter, "2001:db8::1", {"Accept": "text/plain"})).text == "2001:db8::1"
    assert (await _get(adapter, "::ffff:192.0.2.4", {"Accept": "text/plain"})).text == "192.0.2.4"


def test_no_peer_address_is_a_clear_answer_not_a_500() -> None:
    for peer in (None, "", "unix:/run/app.sock"):
        status, headers, body = checkip_reply(peer, {}, PROXY)
        assert status == 503 and b"unknown" in body and ("cache-control", "no-store") in headers


@pytest.mark.parametrize(("accept", "plain"), [
    (None, False), ("*/*", False), ("text/html", False), ("text/plain", True), ("TEXT/PLAIN", True),
    ("text/plain, text/html", False), ("text/html;q=0.5, text/plain", True), ("text/*;q=0.2, text/plain;q=0.1", False),
    ("text/plain;q=0.9, */*;q=0.8", True), ("application/json", False), ("text/plain;q=0", False),
    ("text/plain;q=abc", False), ("text/plain;q=nan", False), ("text/plain; charset=utf-8", True), ("", False),
])
def test_accept_decides_page_or_address(accept: str | None, plain: bool) -> None:
    content_type, body = checkip_body("192.0.2.1", accept)
    assert (body == "192.0.2.1") is plain and content_type.startswith("text/plain" if plain else "text/html")


@given(st.text())
def test_any_accept_header_gets_one_of_the_two_answers(accept: str) -> None:
    content_type, body = checkip_body("192.0.2.1", accept)
    assert (content_type, body) in {("text/plain; charset=utf-8", "192.0.2.1"),
                                    ("text/html; charset=utf-8", CHECKIP_PAGE.format("192.0.2.1"))}


async def test_served_alone_by_both_factories_without_touching_the_store() -> None:
    """The store's Redis is down (nothing listens on its port): checkip still answers; it never asks the store."""
    dead = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,), redis_url=f"redis://127.0.0.1:{free_port()}/0")
    asgi = create_app(dead, gc_tuning=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi, client=("192.0.2.8", 1)),
                                 base_url="http://t") as client:
        r = await client.get("/nic/checkip", headers={"Accept": "text/plain"})
        assert (r.status_code, r.text) == (200, "192.0.2.8")
    wsgi = create_wsgi_app(dead)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi, remote_addr="192.0.2.9"), base_url="http://t") as c:
        r = c.get("/nic/checkip", headers={"Accept": "text/plain"})
        assert (r.status_code, r.text) == (200, "192.0.2.9")
        r = c.get("/nic/update?hostname=a.example.test", auth=("a", "b"), headers={"User-Agent": "t/1"})
        assert (r.status_code, r.text) == (200, "911\n")  # the update does need the store
        missing = c.get("/elsewhere")
        assert missing.status_code == 404 and missing.headers["content-length"] == str(len(missing.content))
        metrics = c.get("/metrics", headers={"Accept-Encoding": "identity"})  # its length, not gzip's
        assert metrics.status_code == 200 and metrics.headers["content-length"] == str(len(metrics.content))


def test_trusted_proxies_from_either_variable() -> None:
    keys = {"MFA_SECRET_KEY": "s" * 32, "MFA_ENCRYPTION_KEY": "e" * 32}
    assert Settings.from_env({**keys, "TRUSTED_PROXIES": "10.0.0.0/8"}).trusted_proxies == ("10.0.0.0/8",)
    assert Settings.from_env({**keys, "DDNS_TRUSTED_PROXIES": "10.0.0.0/8"}).trusted_proxies == ("10.0.0.0/8",)
    both = Settings.from_env({**keys, "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1/32",
                              "DDNS_TRUSTED_PROXIES": "10.0.0.0/8,2001:db8::/32"})
    assert both.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")  # the common name wins; never the union
    env = {**keys, "TRUSTED_PROXIES": "10.0.0.0/8"}
    wsgi = create_wsgi_app(Settings.from_env(env), MemoryStore())
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi, remote_addr="10.0.0.2"), base_url="http://t") as c:
        r = c.get("/nic/checkip", headers={"Accept": "text/plain", "X-Forwarded-For": "198.51.100.3"})
        assert r.text == "198.51.100.3"


def test_the_gate_lets_checkip_through_by_default(redis_url: str) -> None:
    """A login waiting for its second factor is sent to the verify page everywhere but /nic/update and
    /nic/checkip (exact paths: a page below them is gated as usual)."""
    assert "/nic/checkip" in DEFAULT_EXEMPT
    gate = Gate(keys=Keys(), secret_key="s" * 32, encryption_keys="e" * 32)
    assert gate.is_exempt("/nic/checkip") and gate.is_exempt("/nic/update")
    store = open_store(redis_url)
    from mfa_middleware.accounts import Accounts
    from mfa_middleware.passwords import PasswordHasher

    store.run(Accounts(store.keys, PasswordHasher(FAST)).create("alice", "alice-password"))
    enable_2fa(redis_url, "alice", "s" * 32, "e" * 32)
    checkip = WsgiCheckIpApp()

    def site(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/nic/checkip":
            return checkip(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"page"]

    gated = MFAWsgiMiddleware(site, identity=lambda environ: "alice", store=store, secret_key="s" * 32,
                              encryption_keys=["e" * 32], argon2_profile=FAST)
    with httpx.Client(transport=httpx.WSGITransport(app=gated, remote_addr="192.0.2.10"), base_url="http://t") as c:
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/mfa/verify")
        r = c.get("/nic/checkip", headers={"Accept": "text/plain"})
        assert (r.status_code, r.text) == (200, "192.0.2.10")
        head = c.head("/mfa/verify")
        get = c.get("/mfa/verify")
        assert get.status_code == head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    store.close()
