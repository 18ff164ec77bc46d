"""Wrong passwords on /nic/update are throttled on every path, before anything is compared (issue 20, item 2).

Each rule on the warm lane (the router's verifier cached: the update script would compare it) and the cold
lane (nothing cached: argon2id would run), through both adapters (ASGI, WSGI), on a real redis-server and on
the in-memory store, with the documented limits (``ThrottlePolicy()``). "Compared" is counted as argon2id
runs: the cache only ever says yes, so every wrong password that is compared runs one verify, and a
throttled one runs none. The real router, at the address where it proved its password, keeps updating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ddns_update.credentials import ThrottlePolicy
from ddns_update.protocol import parse_trusted_proxies
from ddns_update.service import UpdatePolicy
from mfa_middleware.config import Settings
from mfa_middleware.store import cmd
from tests.ddns_harness import PASSWORD, Site

HOST = "router.example.test"
UPDATE = f"hostname={HOST}&myip=192.0.2.1"
OWNER = "192.0.2.10"  # where the account's router runs
ATTACKER = "203.0.113.66"
LIMITS = ThrottlePolicy()  # the documented numbers


@pytest.fixture(params=[("redis", "asgi"), ("redis", "wsgi"), ("memory", "asgi"), ("memory", "wsgi")],
                ids=lambda p: "-".join(p))
async def site(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Site]:
    store, adapter = request.param
    s = Site(redis_url if store == "redis" else "memory", adapter)
    s.account("alice", hosts=[HOST])
    assert await s.text(UPDATE, at=OWNER) == "good 192.0.2.1\n"  # the router proves its password
    yield s
    await s.close()


def go_cold(site: Site, login: str = "alice", account: str = "alice") -> None:
    """Drop the login's cached verifier (as its expiry would): the next check is the slow one."""
    site.sync.driver.execute(cmd("HDEL", site.keys.account(account, "cred"), login))


def cached(site: Site, login: str = "alice", account: str = "alice") -> bool:
    return bool(site.sync.driver.execute(cmd("HEXISTS", site.keys.account(account, "cred"), login)))


async def guesses(site: Site, n: int, at: str, login: str = "alice", query: str = UPDATE) -> int:
    """``n`` wrong passwords from ``at`` (every other one POSTed: the general path, not the quick lane); how
    many were compared. Every one must answer badauth with 401."""
    before = site.hasher.calls
    for i in range(n):
        if i % 2:
            r = await site.get("", auth=(login, f"guess{i}"), at=at, method="POST",
                               data=dict(p.split("=") for p in query.split("&")))  # type: ignore[misc]
        else:
            r = await site.get(query, auth=(login, f"guess{i}"), at=at)
        assert (r.status_code, r.text) == (401, "badauth\n")
        assert r.headers["www-authenticate"].startswith("Basic realm=")
    return site.hasher.calls - before


@pytest.mark.parametrize("lane", ["warm", "cold"])
async def test_one_address_is_throttled_before_anything_is_compared(site: Site, lane: str) -> None:
    if lane == "cold":
        go_cold(site)
    assert cached(site) == (lane == "warm")
    compared = await guesses(site, 40, ATTACKER)
    assert compared == LIMITS.per_login_ip
    # Throttled means not compared: the right password from there is refused too, and costs nothing.
    before = site.hasher.calls
    r = await site.get(UPDATE, at=ATTACKER)
    assert (r.status_code, r.text) == (401, "badauth\n")
    assert site.hasher.calls == before
    # The router at its own address still updates, on either lane (cold: one verify, then cached again).
    assert await site.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"
    assert await site.text(f"hostname={HOST}&myip=192.0.2.2", at=OWNER) == "good 192.0.2.2\n"
    assert site.hasher.calls - before == (1 if lane == "cold" else 0)


@pytest.mark.parametrize("lane", ["warm", "cold"])
async def test_the_login_cap_holds_whatever_the_number_of_addresses(site: Site, lane: str) -> None:
    if lane == "cold":
        go_cold(site)
    compared = 0
    for i in range(20):
        compared += await guesses(site, 3, f"198.51.100.{i + 1}")
    assert compared == LIMITS.per_login
    before = site.hasher.calls
    fresh = await site.get(UPDATE, at="198.51.100.200")  # the right password from an address that never proved it
    assert (fresh.status_code, site.hasher.calls) == (401, before)
    assert await site.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"


async def test_an_address_that_proved_the_login_has_its_own_limit(site: Site) -> None:
    # Someone behind the router's own address (a shared NAT) is exempt from the login's cap, not from this.
    compared = await guesses(site, 30, OWNER)
    assert compared == LIMITS.per_login_ip
    before = site.hasher.calls
    assert (await site.get(UPDATE, at=OWNER)).status_code == 401  # not compared, even warm
    assert site.hasher.calls == before
    # Other addresses are not held by that count: the owner's second router elsewhere still proves itself.
    assert await site.text(UPDATE, at="192.0.2.77") == "nochg 192.0.2.1\n"


async def test_each_address_gets_its_own_share_of_the_login_cap(redis_url: str) -> None:
    site = Site(redis_url, "wsgi", throttle=ThrottlePolicy(per_login=10, per_login_ip=3))
    try:
        site.account("alice", hosts=[HOST])
        assert await site.text(UPDATE, at=OWNER) == "good 192.0.2.1\n"
        assert [await guesses(site, 5, f"198.51.100.{i}") for i in range(1, 6)] == [3, 3, 3, 1, 0]
        assert await site.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"
    finally:
        await site.close()


async def test_an_ipv6_client_is_counted_by_its_64(redis_url: str) -> None:
    # An attacker with a /64 has 2^64 addresses; a router's own address changes within its /64 (privacy
    # addresses). Both are one client to the throttle.
    site = Site(redis_url, "asgi", throttle=ThrottlePolicy(per_login=10, per_login_ip=3))
    try:
        site.account("alice", hosts=[HOST])
        assert await site.text(UPDATE, at="2001:db8:aaaa:1::10") == "good 192.0.2.1\n"
        compared = 0
        for i in range(10):
            compared += await guesses(site, 1, f"2001:db8:bad:1::{i + 1:x}")
        assert compared == 3
        for i in range(10):  # the login's cap is used up from elsewhere
            await guesses(site, 1, f"2001:db8:bad:{i + 2:x}::1")
        before = site.hasher.calls
        assert (await site.get(UPDATE, at="2001:db8:bad:99::1")).status_code == 401
        # The router's next privacy address is in the /64 that proved the login: still served.
        assert await site.text(UPDATE, at="2001:db8:aaaa:1:abcd::77") == "nochg 192.0.2.1\n"
        assert site.hasher.calls == before
    finally:
        await site.close()


async def test_one_address_across_many_logins_is_capped(redis_url: str) -> None:
    site = Site(redis_url, "asgi", throttle=ThrottlePolicy(per_ip=5))
    try:
        names = [f"user{i}" for i in range(8)]
        for name in names:
            site.account(name, hosts=[f"{name}.example.test"])
            proven = await site.text(f"hostname={name}.example.test", auth=(name, PASSWORD), at=OWNER)
            assert proven.startswith("good")
        compared = 0
        for name in names:  # one guess per login: a stuffing list
            compared += await guesses(site, 1, ATTACKER, login=name, query=f"hostname={name}.example.test")
        assert compared == 5
        last = names[-1]
        refused = await site.get(f"hostname={last}.example.test", auth=(last, PASSWORD), at=ATTACKER)
        assert refused.status_code == 401  # not compared: this address is over its cap for logins it never proved
        assert await site.text(f"hostname={last}.example.test", auth=(last, PASSWORD), at=OWNER) == f"nochg {OWNER}\n"
    finally:
        await site.close()


@pytest.mark.parametrize("lane", ["warm", "cold"])
async def test_two_instances_share_the_counts(redis_url: str, lane: str) -> None:
    one = Site(redis_url, "asgi")
    other = Site(redis_url, "wsgi")
    try:
        one.account("alice", hosts=[HOST])
        assert await one.text(UPDATE, at=OWNER) == "good 192.0.2.1\n"
        if lane == "cold":
            go_cold(one)
        compared = 0
        for _ in range(15):
            compared += await guesses(one, 1, ATTACKER) + await guesses(other, 1, ATTACKER)
        assert compared == LIMITS.per_login_ip
        assert (await other.get(UPDATE, at=ATTACKER)).status_code == 401
        assert await other.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"
        assert await one.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"
    finally:
        await one.close()
        await other.close()


async def test_an_address_proves_a_login_only_under_its_current_password(site: Site) -> None:
    assert await site.text(UPDATE, at=ATTACKER) == "nochg 192.0.2.1\n"  # the password leaked; used from there once
    site.sync.run(site.accounts.set_password("alice", "the-new-password"))
    for i in range(20):  # the login's cap is used up from elsewhere
        await guesses(site, 1, f"198.51.100.{i + 1}")
    # The leaked address is no longer one that proved the login: the cap applies to it, so it is not compared.
    before = site.hasher.calls
    assert (await site.get(UPDATE, auth=("alice", "the-new-password"), at=ATTACKER)).status_code == 401
    assert site.hasher.calls == before


@pytest.mark.parametrize("event", ["rotate", "delete and create again"])
async def test_a_group_login_proves_an_address_only_under_its_current_password(site: Site, event: str) -> None:
    group, password = site.group("alice", "home", [HOST], login="home-router")
    assert await site.text(UPDATE, auth=(group.login, password), at=ATTACKER) == "nochg 192.0.2.1\n"  # leaked
    if event == "rotate":
        _, password = site.sync.run(site.groups.rotate("alice", "home"))
    else:
        site.sync.run(site.groups.delete("alice", "home"))
        group, password = site.group("alice", "home", [HOST], login="home-router")  # same login, same version
    for i in range(20):  # the login's cap is used up from elsewhere
        await guesses(site, 1, f"198.51.100.{i + 1}", login=group.login)
    before = site.hasher.calls
    assert (await site.get(UPDATE, auth=(group.login, password), at=ATTACKER)).status_code == 401
    assert site.hasher.calls == before
    assert await site.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"  # the account's own login is not affected


async def test_one_logins_failures_never_throttle_another_login(site: Site) -> None:
    group, password = site.group("alice", "home", [HOST])
    assert await site.text(UPDATE, auth=(group.login, password), at=OWNER) == "nochg 192.0.2.1\n"
    assert await guesses(site, 30, ATTACKER, login=group.login) == LIMITS.per_login_ip
    # alice's own login from the same address (never proven there) is compared and passes.
    assert await site.text(UPDATE, at=ATTACKER) == "nochg 192.0.2.1\n"
    assert await site.text(UPDATE, auth=(group.login, password), at=OWNER) == "nochg 192.0.2.1\n"


async def test_unknown_logins_are_throttled_too(site: Site) -> None:
    compared = await guesses(site, 30, ATTACKER, login="nobody")
    assert compared == LIMITS.per_login  # dummy verifies, so an unknown login costs what a known one costs
    assert await site.text(UPDATE, at=OWNER) == "nochg 192.0.2.1\n"


# ----------------------------------------------------------------------------- which address is counted

async def test_forwarded_for_counts_only_behind_a_trusted_proxy(redis_url: str) -> None:
    proxy = "10.0.0.5"
    site = Site(redis_url, "asgi", policy=UpdatePolicy(trusted_proxies=tuple(parse_trusted_proxies("10.0.0.0/8"))))
    try:
        site.account("alice", hosts=[HOST])
        owner = {"x-forwarded-for": OWNER}
        assert await site.text(UPDATE, at=proxy, headers=owner) == "good 192.0.2.1\n"
        # Behind the proxy each client is counted at its own address ...
        before = site.hasher.calls
        for i in range(30):
            r = await site.get(UPDATE, auth=("alice", f"g{i}"), at=proxy, headers={"x-forwarded-for": ATTACKER})
            assert r.status_code == 401
        assert site.hasher.calls - before == LIMITS.per_login_ip
        assert await site.text(UPDATE, at=proxy, headers=owner) == "nochg 192.0.2.1\n"
        # ... and a client that is no trusted proxy cannot claim the router's address to escape its limit.
        spoofed = {"x-forwarded-for": OWNER, "x-real-ip": OWNER}
        before = site.hasher.calls
        for i in range(30):
            assert (await site.get(UPDATE, auth=("alice", f"s{i}"), at="198.51.100.9", headers=spoofed)).status_code \
                == 401
        assert site.hasher.calls - before == 0  # the login's cap was used up above: nothing compared
        assert (await site.get(UPDATE, at="198.51.100.9", headers=spoofed)).status_code == 401
        assert await site.text(UPDATE, at=proxy, headers=owner) == "nochg 192.0.2.1\n"
    finally:
        await site.close()


def test_trusted_proxies_is_read_under_its_common_name_and_the_old_one() -> None:
    secrets = {"MFA_SECRET_KEY": "s" * 32, "MFA_ENCRYPTION_KEY": "e" * 32}
    both = Settings.from_env({**secrets, "TRUSTED_PROXIES": "10.0.0.0/8", "DDNS_TRUSTED_PROXIES": "192.0.2.0/24"})
    assert both.trusted_proxies == ("10.0.0.0/8",)
    assert Settings.from_env({**secrets, "DDNS_TRUSTED_PROXIES": "192.0.2.0/24"}).trusted_proxies == ("192.0.2.0/24",)
    assert Settings.from_env(secrets).trusted_proxies == ()
