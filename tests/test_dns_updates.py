"""Updates reach real DNS: the endpoint over HTTP with the RFC 2136 backend against a real Knot server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ddns_update.dns_backend import RecordChange, Rfc2136Backend
from mfa_middleware.store import StoreUnavailable
from tests.ddns_harness import PASSWORD, Site
from tests.dnscheck import lookup, soa_serial
from tests.servers import KnotServer

ZONES = ("example.test", "other.test")


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    server = KnotServer(zones=ZONES).start()
    yield server
    server.cleanup()


def backend(knot: KnotServer, secret: str | None = None) -> Rfc2136Backend:
    return Rfc2136Backend(knot.server, ZONES, knot.key_name, secret or knot.secret, timeout=1.5)


@pytest.fixture(params=["asgi", "wsgi"])
async def site(request: pytest.FixtureRequest, redis_url: str, knot: KnotServer) -> AsyncIterator[Site]:
    s = Site(redis_url, request.param, backend=backend(knot))
    s.account("alice", hosts=["a.example.test", "b.example.test", "c.other.test", "v6.example.test"])
    yield s
    await s.close()


def stored(site: Site, host: str) -> tuple[str | None, str | None, bool]:
    record = next(r for r in site.sync.run(site.hosts.list("alice")) if r.host == host)
    return record.ipv4, record.ipv6, record.offline


async def test_good_reaches_dns_and_nochg_sends_nothing(site: Site, knot: KnotServer) -> None:
    ip = "192.0.2.10" if site.adapter == "asgi" else "192.0.2.11"
    assert await site.text(f"hostname=a.example.test&myip={ip}") == f"good {ip}\n"
    assert lookup(knot.port, "a.example.test", "A") == [ip]
    serial = soa_serial(knot.port, "example.test")
    assert await site.text(f"hostname=a.example.test&myip={ip}") == f"nochg {ip}\n"
    assert soa_serial(knot.port, "example.test") == serial  # nochg never sends an UPDATE


async def test_aaaa_and_dual_stack(site: Site, knot: KnotServer) -> None:
    assert await site.text("hostname=v6.example.test&myip=2001:db8::7") == "good 2001:db8::7\n"
    assert lookup(knot.port, "v6.example.test", "AAAA") == ["2001:db8::7"]
    assert await site.text("hostname=b.example.test&myip=192.0.2.20,2001:db8::20") == "good 192.0.2.20,2001:db8::20\n"
    assert lookup(knot.port, "b.example.test", "A") == ["192.0.2.20"]
    assert lookup(knot.port, "b.example.test", "AAAA") == ["2001:db8::20"]


async def test_offline_deletes_then_next_update_restores(site: Site, knot: KnotServer) -> None:
    await site.text("hostname=b.example.test&myip=192.0.2.30")
    assert lookup(knot.port, "b.example.test", "A") == ["192.0.2.30"]
    await site.text("hostname=b.example.test&myip=192.0.2.30&offline=YES")
    assert lookup(knot.port, "b.example.test", "A") == []
    assert stored(site, "b.example.test")[2] is True
    await site.text("hostname=b.example.test&myip=192.0.2.30")
    assert lookup(knot.port, "b.example.test", "A") == ["192.0.2.30"]


async def test_multi_host_is_one_message_per_zone(site: Site, knot: KnotServer) -> None:
    before = soa_serial(knot.port, "example.test"), soa_serial(knot.port, "other.test")
    ip = "192.0.2.40" if site.adapter == "asgi" else "192.0.2.41"
    body = await site.text(f"hostname=a.example.test,b.example.test,c.other.test&myip={ip}")
    assert body == f"good {ip}\n" * 3
    assert soa_serial(knot.port, "example.test") == before[0] + 1
    assert soa_serial(knot.port, "other.test") == before[1] + 1
    for host in ("a.example.test", "b.example.test", "c.other.test"):
        assert lookup(knot.port, host, "A") == [ip]


async def test_wrong_tsig_answers_dnserr_and_leaves_the_store(redis_url: str, knot: KnotServer) -> None:
    good = Site(redis_url, "asgi", backend=backend(knot))
    good.account("alice", hosts=["t.example.test"])
    assert await good.text("hostname=t.example.test&myip=192.0.2.50") == "good 192.0.2.50\n"
    await good.close()
    bad = Site(redis_url, "asgi", backend=backend(knot, secret="d3JvbmcgdHNpZyBzZWNyZXQgZm9yIHRlc3Rz"))
    assert await bad.text("hostname=t.example.test&myip=192.0.2.51") == "dnserr\n"
    assert lookup(knot.port, "t.example.test", "A") == ["192.0.2.50"]
    record = next(r for r in bad.sync.run(bad.hosts.list("alice")) if r.host == "t.example.test")
    assert record.ipv4 == "192.0.2.50"  # the store still agrees with DNS
    await bad.close()


def ddns_admin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "ddns-admin")
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


async def test_server_down_dnserr_then_sync_after_restart(redis_url: str) -> None:
    knot = KnotServer(zones=("example.test",)).start()
    try:
        site = Site(redis_url, "asgi", backend=backend_for_zone(knot))
        site.account("alice", hosts=["d.example.test", "e.example.test"])
        site.account("bob", password=PASSWORD, hosts=["f.example.test"])
        assert await site.text("hostname=d.example.test&myip=192.0.2.60") == "good 192.0.2.60\n"
        knot.stop()
        assert await site.text("hostname=d.example.test,e.example.test&myip=192.0.2.61") == "dnserr\ndnserr\n"
        assert stored(site, "d.example.test")[0] == "192.0.2.60"
        assert await site.text("hostname=f.example.test&myip=192.0.2.62", auth=("bob", PASSWORD)) == "dnserr\n"
        knot.start()
        assert lookup(knot.port, "d.example.test", "A") == ["192.0.2.60"]
        # The outage is over: updates that fail meanwhile were never stored, so the router retries and
        # succeeds; `dns sync` repairs whatever DNS lost (here: a record deleted behind our back).
        assert await site.text("hostname=e.example.test&myip=192.0.2.63") == "good 192.0.2.63\n"
        backend_for_zone(knot).push([RecordChange("d.example.test", None, None)])
        assert lookup(knot.port, "d.example.test", "A") == []
        env = {"REDIS_URL": redis_url, "DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": knot.server,
               "DDNS_DNS_ZONES": "example.test", "DDNS_TSIG_NAME": knot.key_name, "DDNS_TSIG_SECRET": knot.secret}
        r = ddns_admin("dns", "sync", "alice", env=env)
        assert r.returncode == 0 and "synced 2 of 2 hosts in 1 account" in r.stdout, r.stderr
        assert lookup(knot.port, "d.example.test", "A") == ["192.0.2.60"]
        r = ddns_admin("--json", "dns", "sync", "--all", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"accounts": 2, "hosts": 3, "failed": {}}
        knot.stop()
        r = ddns_admin("dns", "sync", "--all", env=env)
        assert r.returncode == 1 and "failed d.example.test" in r.stdout
        await site.close()
    finally:
        knot.cleanup()


def backend_for_zone(knot: KnotServer) -> Rfc2136Backend:
    return Rfc2136Backend(knot.server, knot.zones, knot.key_name, knot.secret, timeout=1.0)


def test_dns_sync_usage(redis_url: str) -> None:
    assert ddns_admin("dns", "sync", env={"REDIS_URL": redis_url}).returncode == 2
    r = ddns_admin("dns", "sync", "--all", env={"REDIS_URL": redis_url, "DDNS_DNS_BACKEND": "store"})
    assert r.returncode == 2 and "rfc2136" in r.stderr
    r = ddns_admin("dns", "sync", "alice", "--all", env={"REDIS_URL": redis_url})
    assert r.returncode == 2


async def test_a_stalled_dns_server_does_not_block_the_event_loop(redis_url: str) -> None:
    """A hung primary (SIGSTOP) holds only its own request: others are answered meanwhile."""
    import asyncio
    import signal

    knot = KnotServer(zones=("example.test",)).start()
    try:
        site = Site(redis_url, "asgi", backend=Rfc2136Backend(knot.server, knot.zones, knot.key_name, knot.secret,
                                                              timeout=2.0))
        site.account("alice", hosts=["slow.example.test", "fast.example.test"])
        assert await site.text("hostname=fast.example.test&myip=192.0.2.90") == "good 192.0.2.90\n"
        assert knot.proc is not None
        knot.proc.send_signal(signal.SIGSTOP)
        finished: list[str] = []

        async def send(query: str, tag: str) -> str:
            body = await site.text(query)
            finished.append(tag)
            return body

        stalled = asyncio.create_task(send("hostname=slow.example.test&myip=192.0.2.91", "stalled"))
        await asyncio.sleep(0.2)  # the stalled push is now waiting on the hung server
        quick = [await send("hostname=fast.example.test&myip=192.0.2.90", f"quick{i}") for i in range(5)]
        assert quick == ["nochg 192.0.2.90\n"] * 5
        assert await stalled == "dnserr\n"  # bounded by the timeout
        assert finished[:5] == [f"quick{i}" for i in range(5)] and finished[5] == "stalled"
        knot.proc.send_signal(signal.SIGCONT)
        await site.close()
    finally:
        knot.cleanup()


async def test_store_fails_between_a_failed_push_and_its_revert_then_dns_sync_repairs(
        redis_url: str, knot: KnotServer) -> None:
    """service._push: the UPDATE script stored the new record, the DNS push failed, and the store went away
    before REVERT put the old record back. The store now holds an address DNS never got; the router's
    retries answer nochg (nothing changed *in the store*), so only `ddns-admin dns sync` brings DNS level."""
    import base64

    from ddns_update.app import build_service
    from ddns_update.service import UpdateFacts
    from mfa_middleware.store import Store
    from tests.ddns_harness import AGENT, RecordingBackend, settings
    from tests.test_interruptions import FailAfter

    host = "g.example.test"
    site = Site(redis_url, "wsgi", backend=backend(knot))
    try:
        site.account("alice", hosts=[host])
        assert await site.text(f"hostname={host}&myip=192.0.2.70") == "good 192.0.2.70\n"
        assert lookup(knot.port, host, "A") == ["192.0.2.70"]
        # The real service, a push that fails, and a store that fails at the REVERT step.
        service = build_service(settings(redis_url), site.keys, site.hasher, RecordingBackend(failing={host}))
        store = Store(FailAfter(site.sync.driver, lambda s: True,
                                lambda s: getattr(getattr(s, "script", None), "name", "") == "ddns_revert"),
                      site.keys)
        auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        facts = UpdateFacts(f"hostname={host}&myip=192.0.2.71", auth, AGENT, "192.0.2.200")
        with pytest.raises(StoreUnavailable):
            store.run(service.update(facts))
        assert isinstance(store.driver, FailAfter) and store.driver.fired
        assert stored(site, host)[0] == "192.0.2.71" and lookup(knot.port, host, "A") == ["192.0.2.70"]
        # The router retries: the store already has its address, so no push, and DNS stays behind.
        assert await site.text(f"hostname={host}&myip=192.0.2.71") == "nochg 192.0.2.71\n"
        assert lookup(knot.port, host, "A") == ["192.0.2.70"]
        env = {"REDIS_URL": redis_url, "DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": knot.server,
               "DDNS_DNS_ZONES": ",".join(ZONES), "DDNS_TSIG_NAME": knot.key_name, "DDNS_TSIG_SECRET": knot.secret}
        r = ddns_admin("dns", "sync", "--all", env=env)
        assert r.returncode == 0 and "synced 1 of 1 hosts in 1 account" in r.stdout, (r.stdout, r.stderr)
        assert lookup(knot.port, host, "A") == ["192.0.2.71"] and stored(site, host)[0] == "192.0.2.71"
        print("\npush failed + store gone before the revert: store ahead of DNS; `ddns-admin dns sync` repairs it")
    finally:
        await site.close()


async def test_a_group_prefix_update_is_one_dns_update_per_zone(site: Site, knot: KnotServer) -> None:
    # FRITZ!Box style: the account login names a group; each host with an interface id gets prefix + id.
    for host, interface_id in (("a.example.test", "::a"), ("b.example.test", "::b"), ("c.other.test", "::c")):
        site.sync.run(site.hosts.set_interface_id("alice", host, interface_id))
    site.group("alice", "lan", ["a.example.test", "b.example.test", "c.other.test", "v6.example.test"])
    prefix = "2001:db8:5:1::/64" if site.adapter == "asgi" else "2001:db8:5:2::/64"
    before = soa_serial(knot.port, "example.test"), soa_serial(knot.port, "other.test")
    assert await site.text(f"hostname=lan&myip=192.0.2.40,{prefix}") == f"good 192.0.2.40,{prefix}\n"
    assert (soa_serial(knot.port, "example.test"), soa_serial(knot.port, "other.test")) == \
        (before[0] + 1, before[1] + 1)  # one UPDATE per zone for the four hosts
    net = prefix.removesuffix(":/64")
    assert lookup(knot.port, "a.example.test", "AAAA") == [f"{net}:a"]
    assert lookup(knot.port, "b.example.test", "AAAA") == [f"{net}:b"]
    assert lookup(knot.port, "c.other.test", "AAAA") == [f"{net}:c"]
    assert lookup(knot.port, "v6.example.test", "A") == ["192.0.2.40"]  # no interface id: its address only
    assert lookup(knot.port, "v6.example.test", "AAAA") == []
    serial = soa_serial(knot.port, "example.test")
    assert await site.text(f"hostname=lan&myip=192.0.2.40,{prefix}") == f"nochg 192.0.2.40,{prefix}\n"
    assert soa_serial(knot.port, "example.test") == serial
