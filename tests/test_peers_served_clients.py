"""Real update clients against every server README names for production, and against both demos.

uvicorn serves the ASGI endpoint (``create_app``); gunicorn (sync and gthread workers) and waitress serve the
WSGI one (``create_wsgi_app``); the Starlette demo (uvicorn) and the Flask demo (waitress) serve theirs beside
the 2FA gate. Each runs as a real process on a loopback port, state in its own database of one real
redis-server. Against each: Debian's ddclient 3.10 and inadyn 2.10 with an account login (2FA on, which a
router must not notice) and with a group login, two hosts at once; ddclient finding its address with
``use=web`` at ``/nic/checkip``; and raw-socket requests written as those clients write them, read strictly
(``tests.update_clients.exchange``): no chunking, one exact Content-Length, HEAD included.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ddns_update.groups import Groups
from ddns_update.hosts import Hosts
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import open_store
from tests.gate_harness import csrf_of
from tests.servers import AppServer, RedisServer
from tests.update_clients import (
    DDCLIENT_AGENT,
    INADYN_AGENT,
    basic,
    ddclient,
    enable_2fa,
    exchange,
    inadyn,
    request,
)

SECRET, ENC = "served-test-secret-key-0123456789", "served-test-encryption-key-012345"
PASSWORD = "router-password-2"
ACCOUNT_HOSTS = ("gw.example.test", "web.example.test")
GROUP_HOSTS = ("nas.example.test", "cam.example.test")
SOLO = "solo.example.test"  # ddclient's check-IP run updates this one
LAB = ("lab.example.test", "lab2.example.test")  # and inadyn's these
PAGE = "<html><head><title>Current IP Check</title></head><body>Current IP Address: {}</body></html>"
PY = sys.executable
SERVERS = {
    "uvicorn": [PY, "-m", "uvicorn", "--factory", "ddns_update.app:create_app", "--host", "127.0.0.1",
                "--port", "PORT"],
    "gunicorn-sync": [PY, "-m", "gunicorn", "-k", "sync", "-w", "1", "-b", "127.0.0.1:PORT",
                      "ddns_update.app:create_wsgi_app()"],
    "gunicorn-gthread": [PY, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "4", "-b", "127.0.0.1:PORT",
                         "ddns_update.app:create_wsgi_app()"],
    # Without --no-clear-untrusted-proxy-headers waitress drops X-Forwarded-For before the app can judge it.
    "waitress": [PY, "-m", "waitress", "--listen=127.0.0.1:PORT", "--no-clear-untrusted-proxy-headers", "--call",
                 "ddns_update.app:create_wsgi_app"],
    "starlette-demo": [PY, "-m", "examples.demo"],
    "flask-demo": [PY, "-m", "examples.flask_demo"],
}
DEMOS = ["starlette-demo", "flask-demo"]


@dataclass
class Served:
    kind: str
    server: AppServer
    redis_url: str
    group_login: str
    group_password: str

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


def _seed(url: str) -> tuple[str, str]:
    """The account ``router`` (2FA on) with its hosts, and its group ``lan``: the group's login and password."""
    store = open_store(url)
    hasher = PasswordHasher()
    store.run(Accounts(store.keys, hasher).create("router", PASSWORD))
    store.run(Hosts(store.keys).add("router", [*ACCOUNT_HOSTS, *GROUP_HOSTS, SOLO, *LAB]))
    group, password = store.run(Groups(store.keys, hasher).create("router", "lan", GROUP_HOSTS))
    store.close()
    enable_2fa(url, "router", SECRET, ENC)
    return group.login, password


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, redis: RedisServer) -> Iterator[Served]:
    kind: str = request.param
    index = list(SERVERS).index(kind)
    url = f"redis://127.0.0.1:{redis.port}/{index + 1}"
    login, password = _seed(url)
    # Both names of the trusted-proxy setting, one per server: each must reach the update endpoint and checkip.
    proxies = "TRUSTED_PROXIES" if index % 2 == 0 else "DDNS_TRUSTED_PROXIES"
    env = {k: v for k, v in os.environ.items() if not k.endswith("TRUSTED_PROXIES")}
    env.update({"HOST": "127.0.0.1", "REDIS_URL": url, "DEMO_SEED": "0", "MFA_SECRET_KEY": SECRET,
                "MFA_ENCRYPTION_KEY": ENC, proxies: "127.0.0.1/32"})
    server = AppServer(kind, SERVERS[kind], env)
    try:
        yield Served(kind, server, url, login, password)
    finally:
        server.stop()
        output = server.output()
        server.cleanup()
        assert "Traceback" not in output, output


def everywhere(test: object) -> object:
    return pytest.mark.parametrize("served", list(SERVERS), indirect=True)(test)


def demos(test: object) -> object:
    return pytest.mark.parametrize("served", DEMOS, indirect=True)(test)


# ---------------------------------------------------------------------------------------- real clients


@everywhere
def test_ddclient_account_login_two_hosts_on_one_line(served: Served, tmp_path: Path) -> None:
    hosts = ",".join(ACCOUNT_HOSTS)
    out = ddclient(tmp_path, served.port, "router", PASSWORD, hosts, "192.0.2.81")
    for host in ACCOUNT_HOSTS:
        assert f"SUCCESS:  updating {host}: good: IP address set to 192.0.2.81" in out, out
    assert "FAILED" not in out and "updating :" not in out, out  # no misread line, no phantom host
    out = ddclient(tmp_path, served.port, "router", PASSWORD, hosts, "192.0.2.81")
    for host in ACCOUNT_HOSTS:
        assert f"updating {host}: nochg" in out, out
    assert "FAILED" not in out, out


@everywhere
def test_ddclient_group_login_two_hosts_on_one_line(served: Served, tmp_path: Path) -> None:
    hosts = ",".join(GROUP_HOSTS)
    out = ddclient(tmp_path, served.port, served.group_login, served.group_password, hosts, "192.0.2.82")
    for host in GROUP_HOSTS:
        assert f"SUCCESS:  updating {host}: good: IP address set to 192.0.2.82" in out, out
    assert "FAILED" not in out and "updating :" not in out, out
    outside = tmp_path / "outside"
    outside.mkdir()
    out = ddclient(outside, served.port, served.group_login, served.group_password, ACCOUNT_HOSTS[0], "192.0.2.83")
    assert f"FAILED:   updating {ACCOUNT_HOSTS[0]}: nohost" in out, out  # not in the group


@everywhere
def test_inadyn_account_and_group_logins_two_hosts(served: Served, tmp_path: Path) -> None:
    for login, password, hosts, ip in (("router", PASSWORD, ACCOUNT_HOSTS, "192.0.2.91"),
                                       (served.group_login, served.group_password, GROUP_HOSTS, "192.0.2.92")):
        run = tmp_path / login
        run.mkdir()
        first = inadyn(run, served.port, login, password, hosts, ip)
        out = first.stdout + first.stderr
        assert first.returncode == 0 and out.count(f"good {ip}") == 2, out
        again = inadyn(run, served.port, login, password, hosts, ip)
        out = again.stdout + again.stderr
        assert again.returncode == 0 and out.count(f"nochg {ip}") == 2, out
    bad = inadyn(tmp_path / "router", served.port, "router", "wrong-password", ACCOUNT_HOSTS[0], "192.0.2.93")
    assert bad.returncode != 0 and "badauth" in bad.stdout + bad.stderr


@everywhere
def test_ddclient_finds_its_address_at_checkip_and_sends_it(served: Served, tmp_path: Path) -> None:
    web = f"http://127.0.0.1:{served.port}/nic/checkip"
    out = ddclient(tmp_path, served.port, "router", PASSWORD, SOLO, web=web)
    assert f"get_ip: using web, {web} reports 127.0.0.1" in out, out
    assert f"SUCCESS:  updating {SOLO}: good: IP address set to 127.0.0.1" in out, out
    assert "myip=127.0.0.1" in out, out  # sent as the update's address, not left to the server


@everywhere
def test_inadyn_finds_its_address_at_checkip_and_sends_it(served: Served, tmp_path: Path) -> None:
    run = inadyn(tmp_path, served.port, "router", PASSWORD, LAB)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "GET /nic/checkip HTTP/1.0" in out, out
    assert out.count("myip=127.0.0.1 HTTP/1.0") == 2 and out.count("good 127.0.0.1") == 2, out


# ---------------------------------------------------------------------------------------- raw requests


def _update(served: Served, hosts: tuple[str, ...], ip: str, version: str, agent: str, *, method: str = "GET",
            auth: str | None = None, close: bool = True) -> bytes:
    query = ("system=dyndns&" if agent == DDCLIENT_AGENT else "") + f"hostname={','.join(hosts)}&myip={ip}"
    headers = [("Authorization", auth or basic("router", PASSWORD)), ("User-Agent", agent)]
    return request(method, f"/nic/update?{query}", served.port, version, headers, close)


@everywhere
def test_update_replies_as_clients_read_them(served: Served) -> None:
    """inadyn's HTTP/1.0 (one host), ddclient's HTTP/1.1 with ``Connection: close`` (two hosts), and HTTP/1.1
    kept open: a status line, one exact Content-Length, no chunking, one LF-ended plain line per host."""
    one = exchange(served.port, _update(served, ACCOUNT_HOSTS[:1], "192.0.2.101", "1.0", INADYN_AGENT))
    assert (one.status, one.text, one.extra) == (200, "good 192.0.2.101\n", b"")
    assert one.header("content-type") == "text/plain; charset=utf-8"
    two = exchange(served.port, _update(served, ACCOUNT_HOSTS, "192.0.2.101", "1.1", DDCLIENT_AGENT))
    assert (two.status, two.text, two.extra) == (200, "nochg 192.0.2.101\ngood 192.0.2.101\n", b"")
    assert b"\r" not in two.body
    kept = exchange(served.port, _update(served, GROUP_HOSTS, "192.0.2.102", "1.1", DDCLIENT_AGENT, close=False,
                                         auth=basic(served.group_login, served.group_password)))
    assert (kept.status, kept.text) == (200, "good 192.0.2.102\ngood 192.0.2.102\n")


@everywhere
def test_head_refusals_and_errors_carry_content_length(served: Served) -> None:
    exchange(served.port, _update(served, ACCOUNT_HOSTS, "192.0.2.103", "1.1", DDCLIENT_AGENT))
    get = exchange(served.port, _update(served, ACCOUNT_HOSTS, "192.0.2.103", "1.1", DDCLIENT_AGENT))  # nochg
    head = exchange(served.port, _update(served, ACCOUNT_HOSTS, "192.0.2.103", "1.1", DDCLIENT_AGENT,
                                         method="HEAD"), head=True)
    assert head.status == 200 and head.extra == b""  # no body after the headers
    assert head.header("content-length") == get.header("content-length") == str(len(get.body))
    bad = exchange(served.port, _update(served, ACCOUNT_HOSTS, "192.0.2.103", "1.0", INADYN_AGENT,
                                        auth=basic("router", "wrong-password")))
    assert (bad.status, bad.text) == (401, "badauth\n")
    assert (bad.header("www-authenticate") or "").startswith("Basic realm=")
    no_agent = exchange(served.port, request("GET", f"/nic/update?hostname={SOLO}", served.port, "1.1",
                                             [("Authorization", basic("router", PASSWORD))]))
    assert (no_agent.status, no_agent.text) == (200, "badagent\n")
    refused = exchange(served.port, request("PUT", "/nic/update", served.port, "1.1"))
    assert refused.status == 405 and refused.body


@everywhere
def test_checkip_raw(served: Served) -> None:
    for version in ("1.0", "1.1"):
        page = exchange(served.port, request("GET", "/nic/checkip", served.port, version,
                                             [("User-Agent", DDCLIENT_AGENT)]))
        assert (page.status, page.text, page.extra) == (200, PAGE.format("127.0.0.1"), b"")
        assert (page.header("content-type") or "").startswith("text/html")
        assert page.header("cache-control") == "no-store"
    plain = exchange(served.port, request("GET", "/nic/checkip", served.port, "1.1", [("Accept", "text/plain")]))
    assert (plain.status, plain.text) == (200, "127.0.0.1")
    assert (plain.header("content-type") or "").startswith("text/plain")
    head = exchange(served.port, request("HEAD", "/nic/checkip", served.port, "1.1"), head=True)
    assert head.status == 200 and head.extra == b"" and head.header("content-length") == str(len(page.body))
    # The server trusts 127.0.0.1 as a proxy (TRUSTED_PROXIES or DDNS_TRUSTED_PROXIES): its X-Forwarded-For counts.
    proxied = exchange(served.port, request("GET", "/nic/checkip", served.port, "1.1",
                                            [("X-Forwarded-For", "198.51.100.7"), ("Accept", "text/plain")]))
    assert proxied.text == "198.51.100.7"
    refused = exchange(served.port, request("POST", "/nic/checkip", served.port, "1.1", [("Content-Length", "0")]))
    assert refused.status == 405


@everywhere
def test_update_from_behind_a_trusted_proxy_records_the_forwarded_address(served: Served) -> None:
    """The update endpoint reads the same setting as checkip: no ``myip``, the forwarded address is taken."""
    headers = [("Authorization", basic("router", PASSWORD)), ("User-Agent", INADYN_AGENT),
               ("X-Forwarded-For", "198.51.100.8")]
    r = exchange(served.port, request("GET", f"/nic/update?hostname={SOLO}", served.port, "1.0", headers))
    assert (r.status, r.text) == (200, "good 198.51.100.8\n")


# ---------------------------------------------------------------------------------------- the demos' gate


@demos
def test_demo_pages_and_gate_replies_carry_content_length(served: Served) -> None:
    """GET and HEAD of the app's pages and of the gate's own (anonymous, then a login waiting for its code)."""
    paths = ["/login", "/", "/mfa/verify", "/mfa/security", "/nic/update", "/metrics"]
    for path in paths:
        _same_length_for_get_and_head(served.port, path)
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=30) as browser:
        page = browser.get("/login")
        r = browser.post("/login", data={"username": "router", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
        assert r.status_code == 303, r.text
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    for path in ["/", "/mfa/verify", "/mfa/security"]:
        _same_length_for_get_and_head(served.port, path, [("Cookie", cookie)])
    gated = exchange(served.port, request("GET", "/", served.port, "1.1", [("Cookie", cookie)]))
    assert gated.status == 303 and (gated.header("location") or "").startswith("/mfa/verify")
    wants_json = exchange(served.port, request("GET", "/", served.port, "1.1",
                                               [("Cookie", cookie), ("Accept", "application/json")]))
    assert wants_json.status == 401 and b'"mfa_required"' in wants_json.body
    # /nic/checkip is no page of the site: the login waiting for its second factor reaches it all the same.
    checkip = exchange(served.port, request("GET", "/nic/checkip", served.port, "1.1", [("Cookie", cookie)]))
    assert (checkip.status, checkip.text) == (200, PAGE.format("127.0.0.1"))


def _same_length_for_get_and_head(port: int, path: str, headers: list[tuple[str, str]] | None = None) -> None:
    get = exchange(port, request("GET", path, port, "1.1", headers or []))
    head = exchange(port, request("HEAD", path, port, "1.1", headers or []), head=True)
    assert get.extra == b"" and head.extra == b"", path
    assert get.status == head.status, (path, get.status_line, head.status_line)
    # Pages carry a fresh CSRF token of a fixed length: the same length either way.
    assert head.header("content-length") == get.header("content-length") == str(len(get.body)), path

