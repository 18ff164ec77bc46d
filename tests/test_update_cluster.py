"""The update endpoint's new steps on a real 3-master Redis Cluster: every script's keys in one slot (the
account's ``{a:ID}``), the per-address counter in its own slot as a separate step. The throttle (warm and
cold), an account login naming a group, and a prefix update with interface ids, through both adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ddns_update.credentials import ThrottlePolicy
from mfa_middleware.store import cmd
from tests.ddns_harness import Site
from tests.servers import RedisCluster

A, B = "a.example.test", "b.example.test"
OWNER, ATTACKER = "192.0.2.10", "203.0.113.66"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster().start()
    yield c
    c.cleanup()


@pytest.fixture(params=["asgi", "wsgi"])
async def site(request: pytest.FixtureRequest, cluster: RedisCluster) -> AsyncIterator[Site]:
    s = Site(cluster.url, request.param)
    account = f"alice-{request.param}"
    s.account(account, hosts=[f"{request.param}-{h}" for h in (A, B)])
    yield s
    await s.close()


async def test_throttle_groups_and_prefixes_on_a_cluster(site: Site) -> None:
    account = f"alice-{site.adapter}"
    a, b = (f"{site.adapter}-{h}" for h in (A, B))
    auth = (account, "alice-password")
    assert await site.text(f"hostname={a}&myip=192.0.2.1", auth=auth, at=OWNER) == "good 192.0.2.1\n"
    limits = ThrottlePolicy()
    for lane in ("warm", "cold"):
        if lane == "cold":
            site.sync.driver.execute(cmd("HDEL", site.keys.account(account, "cred"), account))
        before, attacker = site.hasher.calls, ATTACKER if lane == "warm" else "203.0.113.67"
        for i in range(15):
            assert (await site.get(f"hostname={a}", auth=(account, f"guess{i}"), at=attacker)).status_code == 401
        # Warm: the first ten compared; cold, from a second address: the login's cap is used up, none compared.
        assert site.hasher.calls - before == (limits.per_login if lane == "warm" else 0)
        assert await site.text(f"hostname={a}&myip=192.0.2.1", auth=auth, at=OWNER) == "nochg 192.0.2.1\n"
    site.group(account, "home", [a, b])
    site.sync.run(site.hosts.set_interface_id(account, b, "::1:2:3:4"))
    assert await site.text("hostname=home&myip=192.0.2.7,2001:db8:1:2::/64", auth=auth, at=OWNER) == \
        "good 192.0.2.7,2001:db8:1:2::/64\n"
    records = {r.host: (r.ipv4, r.ipv6) for r in site.sync.run(site.hosts.list(account))}
    assert records == {a: ("192.0.2.7", None), b: ("192.0.2.7", "2001:db8:1:2:1:2:3:4")}
