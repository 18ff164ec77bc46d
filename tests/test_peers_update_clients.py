"""Real update clients (Debian's ddclient 3.10 and inadyn 2.10) against the endpoint served by uvicorn
on a loopback port, with a real redis-server and, for the DNS check, a real Knot DNS primary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dnscheck import lookup
from tests.servers import KnotServer, RedisServer, free_port, wait_for_port
from tests.update_clients import ddclient, enable_2fa, inadyn

SECRET, ENC = "peer-test-secret-key-0123456789", "peer-test-encryption-key-0123456"
PASSWORD = "router-password-1"
HOSTS = ("home.example.test", "nas.example.test", "cam.example.test", "solo.example.test")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    server = KnotServer(zones=("example.test",)).start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def site(knot: KnotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The endpoint alone (`uvicorn --factory ddns_update.app:create_app`) with the RFC 2136 backend on."""
    redis = RedisServer().start()
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis.url, "MFA_SECRET_KEY": SECRET, "MFA_ENCRYPTION_KEY": ENC,
           "DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": knot.server, "DDNS_DNS_ZONES": "example.test",
           "DDNS_TSIG_NAME": knot.key_name, "DDNS_TSIG_SECRET": knot.secret}
    admin = {**env}
    run = lambda *a, stdin="": subprocess.run(a, input=stdin, env=admin, capture_output=True,  # noqa: E731
                                              text=True, check=True, timeout=60)
    run(_bin("mfa-admin"), "user", "add", "router", "--password-stdin", stdin=PASSWORD + "\n")
    run(_bin("ddns-admin"), "host", "add", "router", *HOSTS)
    group = json.loads(run(_bin("ddns-admin"), "--json", "group", "create", "router", "lan",
                           "--hosts", "nas.example.test,cam.example.test").stdout)
    enable_2fa(redis.url, "router", SECRET, ENC)
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "ddns_update.app:create_app",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
                                env=env, stdout=out, stderr=out)
    try:
        wait_for_port(port, timeout=30)
        yield {"port": str(port), "group_user": group["username"], "group_password": group["password"],
               "redis": redis.url, "log": str(log)}
    finally:
        proc.terminate()
        proc.wait(10)
        redis.cleanup()
        assert "Traceback" not in log.read_text()


def test_ddclient_with_account_login_and_2fa_on(site: dict[str, str], knot: KnotServer, tmp_path: Path) -> None:
    out = ddclient(tmp_path, site["port"], "router", PASSWORD, "home.example.test,solo.example.test", "192.0.2.61")
    assert "updating home.example.test: good: IP address set to 192.0.2.61" in out, out
    assert "updating solo.example.test: good: IP address set to 192.0.2.61" in out, out
    out = ddclient(tmp_path, site["port"], "router", PASSWORD, "home.example.test,solo.example.test", "192.0.2.61")
    assert out.count("nochg") >= 2, out
    assert lookup(knot.port, "home.example.test", "A") == ["192.0.2.61"]
    assert lookup(knot.port, "solo.example.test", "A") == ["192.0.2.61"]
    listing = subprocess.run([_bin("ddns-admin"), "--json", "host", "list", "router"], capture_output=True,
                             text=True, env={**os.environ, "REDIS_URL": site["redis"]}, check=True).stdout
    assert "192.0.2.61" in listing


def test_ddclient_with_group_login(site: dict[str, str], knot: KnotServer, tmp_path: Path) -> None:
    user, password = site["group_user"], site["group_password"]
    assert "#" not in user + password and ":" not in user
    out = ddclient(tmp_path, site["port"], user, password, "nas.example.test,cam.example.test", "192.0.2.62")
    assert "updating nas.example.test: good" in out and "updating cam.example.test: good" in out, out
    out = ddclient(tmp_path, site["port"], user, password, "nas.example.test,cam.example.test", "192.0.2.62")
    assert out.count("nochg") >= 2, out
    assert lookup(knot.port, "nas.example.test", "A") == ["192.0.2.62"]
    outside = tmp_path / "outside"
    outside.mkdir()
    out = ddclient(outside, site["port"], user, password, "home.example.test", "192.0.2.63")
    assert "RECEIVE:  nohost" in out and "FAILED:" in out, out  # outside the group: refused
    assert lookup(knot.port, "home.example.test", "A") != ["192.0.2.63"]


def test_inadyn_good_nochg_and_badauth(site: dict[str, str], knot: KnotServer, tmp_path: Path) -> None:
    first = inadyn(tmp_path, site["port"], "router", PASSWORD, "solo.example.test", "192.0.2.71")
    assert first.returncode == 0 and "good 192.0.2.71" in first.stdout + first.stderr, first.stderr
    again = inadyn(tmp_path, site["port"], "router", PASSWORD, "solo.example.test", "192.0.2.71")
    assert again.returncode == 0 and "nochg 192.0.2.71" in again.stdout + again.stderr, again.stderr
    assert lookup(knot.port, "solo.example.test", "A") == ["192.0.2.71"]
    bad = inadyn(tmp_path, site["port"], "router", "wrong-password", "solo.example.test", "192.0.2.72")
    assert bad.returncode != 0 and "badauth" in bad.stdout + bad.stderr
    assert lookup(knot.port, "solo.example.test", "A") == ["192.0.2.71"]
