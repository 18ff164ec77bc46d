"""Update requests as real routers send them (issue 21, items 2-4) and abuse per login (issue 20, item 7):

- an account login naming its groups in ``hostname=`` (alone and between hosts; one line per group; all its
  hosts in one atomic step; one store round trip when warm);
- one ``!donator`` for the whole request, decided before any host;
- FRITZ!Box-style IPv6 prefixes combined with each host's interface id, in every form routers send;
- repeated ``nochg`` counted per (login, host): one login never flags another.

Through both adapters (ASGI, WSGI) on a real redis-server and on the in-memory store.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ddns_update.abuse import Abuse, AbusePolicy
from ddns_update.account_settings import AccountSettings
from ddns_update.cli import main
from ddns_update.protocol import parse_plain_update, parse_update
from ddns_update.service import UpdatePolicy
from mfa_middleware.config import Settings
from mfa_middleware.passwords import FAST
from mfa_middleware.store import MemoryStore
from tests.ddns_harness import RecordingBackend, Site

A, B, C = "a.example.test", "b.example.test", "c.example.test"
ROUTER = "198.51.100.7"
LAN64 = "2001:db8:1:2::/64"


@pytest.fixture(params=[("redis", "asgi"), ("redis", "wsgi"), ("memory", "asgi"), ("memory", "wsgi")],
                ids=lambda p: "-".join(p))
async def site(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Site]:
    store, adapter = request.param
    s = Site(redis_url if store == "redis" else "memory", adapter, backend=RecordingBackend(),
             policy=UpdatePolicy(abuse=AbusePolicy(nochg_per_host=3, faults=30)))
    s.account("alice", hosts=[A, B, C])
    yield s
    await s.close()


def records(site: Site, account: str = "alice") -> dict[str, tuple[str | None, str | None]]:
    return {r.host: (r.ipv4, r.ipv6) for r in site.sync.run(site.hosts.list(account))}


def pushed(site: Site) -> list[list[str]]:
    backend = site.service.backend
    assert isinstance(backend, RecordingBackend)
    return [sorted(c.host for c in push) for push in backend.pushes]


# ----------------------------------------------------------------------------- groups named by the account login

async def test_the_account_login_may_name_its_groups(site: Site) -> None:
    site.group("alice", "home", [A, B])
    assert await site.text("hostname=home&myip=192.0.2.1") == "good 192.0.2.1\n"  # one line for the group
    assert pushed(site) == [[A, B]]  # both hosts in one step, one push to DNS
    assert records(site)[A][0] == records(site)[B][0] == "192.0.2.1" and records(site)[C][0] is None
    assert await site.text(f"hostname={C},HOME,{A}&myip=192.0.2.1") == \
        "good 192.0.2.1\nnochg 192.0.2.1\nnochg 192.0.2.1\n"
    assert await site.text("hostname=home&myip=192.0.2.2&system=dyndns") == "good 192.0.2.2\n"


async def test_names_that_are_no_group_of_the_account_stay_notfqdn(site: Site) -> None:
    site.account("bob", hosts=["bob.example.test"])
    site.group("bob", "bobs", ["bob.example.test"])
    site.group("alice", "gone", [A])
    site.sync.run(site.groups.delete("alice", "gone"))
    group, password = site.group("alice", "home", [A])
    site.group("alice", "other", [B])
    assert await site.text("hostname=nosuch,bobs,gone,x..y&myip=192.0.2.1") == "notfqdn\nnotfqdn\nnotfqdn\nnotfqdn\n"
    # A group login still names only its own group.
    assert await site.text("hostname=other,home&myip=192.0.2.1", auth=(group.login, password)) == \
        "notfqdn\ngood 192.0.2.1\n"
    assert records(site)[B][0] is None


async def test_a_group_named_by_the_account_login_is_one_round_trip_when_warm(site: Site,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    site.group("alice", "home", [A, B])
    assert await site.text("hostname=home&myip=192.0.2.1") == "good 192.0.2.1\n"
    driver = site.async_store.driver if site.adapter == "asgi" else site.sync.driver
    calls: list[str] = []
    for name in ("execute", "execute_batch", "execute_packed"):
        original = getattr(driver, name, None)
        if original is not None:
            monkeypatch.setattr(driver, name, _counting(original, calls, name))
    assert await site.text(f"hostname=home,{C}&myip=192.0.2.9") == "good 192.0.2.9\ngood 192.0.2.9\n"
    assert calls == ["execute"]


def _counting(original: Any, calls: list[str], name: str) -> Any:
    import inspect

    if inspect.iscoroutinefunction(original):
        async def counted_async(*args: Any, **kw: Any) -> Any:
            calls.append(name)
            return await original(*args, **kw)
        return counted_async

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(name)
        return original(*args, **kw)
    return counted


# ----------------------------------------------------------------------------- !donator

async def test_one_donator_for_the_whole_request_before_any_host(site: Site) -> None:
    site.group("alice", "home", [A, B])
    site.sync.run(AccountSettings(site.keys).set("alice", "offline_updates", False))
    for hosts in (f"{A},{B}", f"{A},unknown.example.test", "unknown.example.test,bad..name", "home", f"home,{C}",
                  ""):
        r = await site.get(f"hostname={hosts}&myip=192.0.2.1&offline=YES")
        assert (r.status_code, r.text) == (200, "!donator\n"), hosts
    assert all(v4 is None for v4, _ in records(site).values())  # nothing was written
    assert await site.text(f"hostname={A},{B}&myip=192.0.2.1&offline=NO") == "good 192.0.2.1\ngood 192.0.2.1\n"


# ----------------------------------------------------------------------------- abuse per (login, host)

async def test_one_logins_repeats_never_flag_another_login(site: Site) -> None:
    group, password = site.group("alice", "home", [A])
    for _ in range(5):  # a change, then repeats over the limit (3 per host): the group login is flagged ...
        await site.text(f"hostname={A}&myip=192.0.2.1", auth=(group.login, password))
    assert await site.text(f"hostname={A}&myip=192.0.2.1", auth=(group.login, password)) == "abuse\n"
    # ... and the account's own login, repeating that host once, is not.
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    assert await site.text(f"hostname={B}&myip=192.0.2.1") == "good 192.0.2.1\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    flags = site.sync.run(Abuse(site.keys, site.service.credentials).flagged("alice"))
    assert list(flags) == [group.login]
    # Clearing the group login leaves the account login's own count alone (two repeats so far: one more is fine,
    # the next flags it).
    assert site.sync.run(Abuse(site.keys, site.service.credentials).clear(group.login)) is True
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    assert await site.text(f"hostname={B}&myip=192.0.2.1") == "abuse\n"


# ----------------------------------------------------------------------------- IPv6 prefixes

def set_id(site: Site, host: str, interface_id: str) -> str | None:
    return site.sync.run(site.hosts.set_interface_id("alice", host, interface_id))


FORMS = [  # (query, answer's addresses, A's IPv6 (interface id ::1:2:3:4), B's IPv4 (no interface id))
    (f"myip={ROUTER},{LAN64}", f"{ROUTER},{LAN64}", "2001:db8:1:2:1:2:3:4", ROUTER),
    (f"myip={LAN64},{ROUTER}", f"{ROUTER},{LAN64}", "2001:db8:1:2:1:2:3:4", ROUTER),
    # No IPv4 part, or an empty one: the addresses are the connecting one's, as when myip is absent.
    (f"myip={LAN64}", f"127.0.0.1,{LAN64}", "2001:db8:1:2:1:2:3:4", "127.0.0.1"),
    (f"myip=,{LAN64}", f"127.0.0.1,{LAN64}", "2001:db8:1:2:1:2:3:4", "127.0.0.1"),
    (f"myip={ROUTER},", ROUTER, None, ROUTER),  # an empty prefix part: no IPv6 at all
    ("myip=198.51.100.7,2001:db8:1:200::/56", f"{ROUTER},2001:db8:1:200::/56", "2001:db8:1:200:1:2:3:4", ROUTER),
    ("myip=198.51.100.7,2001:db8:1:2ff:3::/56", f"{ROUTER},2001:db8:1:200::/56", "2001:db8:1:200:1:2:3:4", ROUTER),
    (f"myip={ROUTER}&ip6lanprefix={LAN64}", f"{ROUTER},{LAN64}", "2001:db8:1:2:1:2:3:4", ROUTER),
    (f"myip={ROUTER}&ipv6prefix={LAN64}", f"{ROUTER},{LAN64}", "2001:db8:1:2:1:2:3:4", ROUTER),
    (f"myip={ROUTER}&myipv6={LAN64}", f"{ROUTER},{LAN64}", "2001:db8:1:2:1:2:3:4", ROUTER),
    (f"myip={ROUTER}&ip6lanprefix=2001%3Adb8%3A1%3A2%3A%3A%2F64", f"{ROUTER},{LAN64}", "2001:db8:1:2:1:2:3:4",
     ROUTER),
]


@pytest.mark.parametrize(("query", "answered", "a_v6", "b_v4"), FORMS)
async def test_fritzbox_prefix_forms(site: Site, query: str, answered: str, a_v6: str | None, b_v4: str) -> None:
    assert set_id(site, A, "::1:2:3:4") == "::1:2:3:4"
    assert await site.text(f"hostname={A},{B}&{query}") == f"good {answered}\ngood {answered}\n"
    got = records(site)
    assert got[A][1] == a_v6 and got[B] == (b_v4, None)  # a host without an interface id: as before
    assert await site.text(f"hostname={A},{B}&{query}") == f"nochg {answered}\nnochg {answered}\n"


async def test_an_interface_id_with_subnet_bits_under_a_56(site: Site) -> None:
    set_id(site, A, "0:0:0:5:1:2:3:4")
    set_id(site, C, "::1")
    assert await site.text(f"hostname={A},{C}&myip={ROUTER},2001:db8:1:200::/56") == \
        f"good {ROUTER},2001:db8:1:200::/56\n" * 2
    assert records(site)[A][1] == "2001:db8:1:205:1:2:3:4" and records(site)[C][1] == "2001:db8:1:200::1"


async def test_a_prefix_with_an_address_sets_hosts_with_and_without_an_id(site: Site) -> None:
    set_id(site, A, "::1:2:3:4")
    assert await site.text(f"hostname={A},{B}&myip={ROUTER}&myip6=2001:db8::99&ip6lanprefix={LAN64}") == \
        f"good {ROUTER},2001:db8::99,{LAN64}\n" * 2
    assert records(site)[A][1] == "2001:db8:1:2:1:2:3:4" and records(site)[B][1] == "2001:db8::99"


async def test_an_unchanged_prefix_is_nochg_and_never_abuse(site: Site) -> None:
    set_id(site, A, "::1:2:3:4")
    assert await site.text(f"hostname={A}&myip={ROUTER},{LAN64}") == f"good {ROUTER},{LAN64}\n"
    for _ in range(10):  # well over the nochg limit (3): a router re-sending its prefix is not abusing
        assert await site.text(f"hostname={A}&myip={ROUTER},{LAN64}") == f"nochg {ROUTER},{LAN64}\n"
    assert not site.sync.run(Abuse(site.keys, site.service.credentials).flagged("alice"))
    # A new prefix is a change; a new interface id too.
    assert await site.text(f"hostname={A}&myip={ROUTER},2001:db8:9:9::/64") == f"good {ROUTER},2001:db8:9:9::/64\n"
    assert records(site)[A][1] == "2001:db8:9:9:1:2:3:4"
    set_id(site, A, "::abcd")
    assert await site.text(f"hostname={A}&myip={ROUTER},2001:db8:9:9::/64") == f"good {ROUTER},2001:db8:9:9::/64\n"
    assert records(site)[A][1] == "2001:db8:9:9::abcd"


async def test_a_group_update_with_a_prefix_is_one_step_and_one_push(site: Site) -> None:
    set_id(site, A, "::a")
    set_id(site, C, "::c")
    group, password = site.group("alice", "home", [A, B, C])
    query = f"myip={ROUTER},{LAN64}"
    assert await site.text(f"hostname=home&{query}", auth=(group.login, password)) == f"good {ROUTER},{LAN64}\n"
    assert pushed(site) == [[A, B, C]]
    assert records(site) == {A: (ROUTER, "2001:db8:1:2::a"), B: (ROUTER, None), C: (ROUTER, "2001:db8:1:2::c")}
    # The account login naming the group, and the group login without a hostname (one line per host).
    assert await site.text(f"hostname=home&myip={ROUTER},2001:db8:7:7::/64") == f"good {ROUTER},2001:db8:7:7::/64\n"
    assert pushed(site)[-1] == [A, C]
    assert await site.text(f"myip={ROUTER},2001:db8:7:7::/64", auth=(group.login, password)) == \
        f"nochg {ROUTER},2001:db8:7:7::/64\n" * 3
    assert len(pushed(site)) == 2  # nochg pushes nothing


async def test_removing_a_host_forgets_its_interface_id(site: Site) -> None:
    set_id(site, A, "::1")
    site.sync.run(site.hosts.remove("alice", [A]))
    site.sync.run(site.hosts.add("alice", [A]))
    assert next(r for r in site.sync.run(site.hosts.list("alice")) if r.host == A).ipv6_interface_id is None


@pytest.mark.parametrize("value", ["2001:db8::/64", "2001:db8:1:2::/129", "/64", "ff02::/64", "::/64", "1.2.3.4/24",
                                   "2001:db8::/0", "2001:db8:1:2::/64,2001:db8:3:4::/64", "garbage/64"])
async def test_an_unusable_prefix_is_ignored_never_an_error(site: Site, value: str) -> None:
    set_id(site, A, "::1")
    r = await site.get(f"hostname={A}&myip={ROUTER},{value}")
    assert r.status_code == 200 and r.text.split()[0] == "good"
    assert records(site)[A][0] == ROUTER


def test_the_prefix_parser() -> None:
    assert parse_update(f"myip={ROUTER},{LAN64}").ipv6_prefix == parse_update(f"ip6lanprefix={LAN64}").ipv6_prefix
    assert str(parse_update("ipv6prefix=2001:db8:1:2ab:3:4:5:6/56").ipv6_prefix) == "2001:db8:1:200::/56"
    assert parse_update("myip6=2001:db8::5").ipv6 == parse_update("myipv6=2001:db8::5").ipv6
    assert parse_update("myipv6=2001:db8::5&myip6=2001:db8::6").ipv6 == parse_update("myipv6=2001:db8::5").ipv6
    assert parse_update(f"myip=,{LAN64}").has_address is False
    assert parse_update(f"myip={ROUTER},").ipv6_prefix is None
    for query in (f"hostname={A}&myip={LAN64}", f"hostname={A}&myip6=::1", f"hostname={A}&ip6lanprefix={LAN64}",
                  f"hostname={A}&ipv6prefix={LAN64}"):
        assert parse_plain_update(query.encode()) is None  # the quick lane leaves these to the general path


# ----------------------------------------------------------------------------- setting the interface id

def test_ddns_admin_host_set(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    site = Site(redis_url, "wsgi")
    site.account("alice", hosts=[A])

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--redis-url", redis_url])
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    code, out, _ = run("host", "set", "alice", A, "--ipv6-interface-id", "0:0:0:0:1:2:3:4", "--json")
    assert code == 0 and json.loads(out) == {"account": "alice", "host": A, "ipv6_interface_id": "::1:2:3:4"}
    code, out, _ = run("host", "list", "alice", "--json")
    assert json.loads(out)["hosts"][0]["ipv6_interface_id"] == "::1:2:3:4"
    code, out, _ = run("host", "list", "alice")
    assert "::1:2:3:4" in out
    assert run("host", "set", "alice", A, "--ipv6-interface-id", "1.2.3.4")[0] == 2
    assert run("host", "set", "alice", A, "--ipv6-interface-id", "::")[0] == 2
    assert run("host", "set", "alice", A)[0] == 2
    assert run("host", "set", "alice", "other.example.test", "--ipv6-interface-id", "::1")[0] == 1
    assert run("host", "set", "nobody", A, "--ipv6-interface-id", "::1")[0] == 1
    code, out, _ = run("host", "set", "alice", A, "--ipv6-interface-id", "none")
    assert code == 0 and "no IPv6 interface id" in out
    assert site.sync.run(site.hosts.list("alice"))[0].ipv6_interface_id is None


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found
    return found[1]


async def test_owner_pages_set_the_interface_id() -> None:
    from examples.demo import DEMO_HOST, DEMO_PASSWORD, DEMO_USER
    from examples.demo import create_app as starlette_demo
    from examples.flask_demo import create_app as flask_demo

    cfg = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,))
    starlette_app = starlette_demo(cfg, MemoryStore())
    flask_app = flask_demo(cfg, argon2_profile=FAST)
    async with starlette_app.router.lifespan_context(starlette_app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=starlette_app), base_url="http://127.0.0.1:8000") as asgi:
        with httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://127.0.0.1:8000") as wsgi:
            for client in (asgi, wsgi):
                async def call(method: str, url: str, client: Any = client, **kw: Any) -> httpx.Response:
                    r = client.request(method, url, **kw)
                    return await r if isinstance(client, httpx.AsyncClient) else r  # type: ignore[no-any-return]

                await call("POST", "/login", data={"username": DEMO_USER, "password": DEMO_PASSWORD,
                                                   "csrf_token": _csrf((await call("GET", "/login")).text)})
                page = await call("GET", "/account")
                assert page.status_code == 200 and "IPv6 interface id" in page.text
                token = _csrf(page.text)
                bad = await call("POST", "/account/iid", data={"host": DEMO_HOST, "ipv6_interface_id": "nope",
                                                               "csrf_token": token})
                assert bad.status_code == 400 and "interface id" in bad.text
                other = await call("POST", "/account/iid", data={"host": "x.example.test", "ipv6_interface_id": "::1",
                                                                 "csrf_token": token})
                assert other.status_code == 400
                assert (await call("POST", "/account/iid", data={"host": DEMO_HOST, "ipv6_interface_id": "::1:2:3:4"}
                                   )).status_code == 400  # no CSRF token
                ok = await call("POST", "/account/iid", data={"host": DEMO_HOST, "ipv6_interface_id": "0::1:2:3:4",
                                                              "csrf_token": token})
                assert ok.status_code == 200 and 'value="::1:2:3:4"' in ok.text
                r = await call("GET", f"/nic/update?hostname={DEMO_HOST}&myip={ROUTER},{LAN64}",
                               auth=(DEMO_USER, DEMO_PASSWORD), headers={"user-agent": "test/1.0"})
                assert r.text == f"good {ROUTER},{LAN64}\n"
                page = await call("GET", "/account")
                assert "2001:db8:1:2:1:2:3:4" in page.text
