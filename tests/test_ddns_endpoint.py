"""/nic/update through the real adapters (ASGI via httpx.ASGITransport, WSGI via httpx.WSGITransport)
over a real redis-server, FAST argon2 profile."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import anyio
import pytest
import redis

from ddns_update.abuse import Abuse, AbusePolicy
from ddns_update.account_settings import AccountSettings
from ddns_update.credentials import ThrottlePolicy
from ddns_update.hosts import history_prefix
from ddns_update.protocol import parse_trusted_proxies
from ddns_update.service import UpdatePolicy
from mfa_middleware import totp
from mfa_middleware.backup_codes import BackupCodeHasher
from mfa_middleware.crypto import SeedCipher
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import Op, cmd
from mfa_middleware.twofactor import TwoFactor
from tests.ddns_harness import AGENT, PASSWORD, RecordingBackend, Site

A, B, C = "a.example.test", "b.example.test", "c.example.test"


@pytest.fixture(params=["asgi", "wsgi"])
async def site(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Site]:
    s = Site(redis_url, request.param)
    s.account(hosts=[A, B])
    yield s
    await s.close()


async def make_site(redis_url: str, adapter: str = "asgi", **kw: Any) -> Site:
    s = Site(redis_url, adapter, **kw)
    s.account(hosts=[A, B])
    return s


def record(site: Site, host: str, account: str = "alice") -> Any:
    return next(r for r in site.sync.run(site.hosts.list(account)) if r.host == host)


# ----------------------------------------------------------------------------- answers


async def test_good_then_nochg(site: Site) -> None:
    r = await site.get(f"hostname={A}&myip=192.0.2.1")
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (200, "good 192.0.2.1\n", "text/plain")
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    rec = record(site, A)
    assert (rec.ipv4, rec.ipv6, rec.offline, rec.client_ip, rec.user_agent) == ("192.0.2.1", None, False,
                                                                                 "127.0.0.1", AGENT)
    assert rec.updated_at and abs(rec.updated_at - time.time()) < 5


async def test_ipv6_dual_stack_and_myipv6(site: Site) -> None:
    assert await site.text(f"hostname={A}&myip=2001:db8::1") == "good 2001:db8::1\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.7,2001:db8::2") == "good 192.0.2.7,2001:db8::2\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.7&myipv6=2001:db8::2") == "nochg 192.0.2.7,2001:db8::2\n"
    # One family given: the other one is kept.
    assert await site.text(f"hostname={A}&myip=192.0.2.8") == "good 192.0.2.8\n"
    assert (record(site, A).ipv4, record(site, A).ipv6) == ("192.0.2.8", "2001:db8::2")


async def test_missing_or_malformed_myip_uses_connecting_address(site: Site) -> None:
    assert await site.text(f"hostname={A}") == "good 127.0.0.1\n"
    assert await site.text(f"hostname={A}&myip=not-an-ip") == "nochg 127.0.0.1\n"


async def test_multi_host_answers_in_request_order(site: Site) -> None:
    await site.get(f"hostname={B}&myip=192.0.2.1")
    body = await site.text(f"hostname={A},{B},nothere.example.test,bad_name!,{A}&myip=192.0.2.1")
    assert body == "good 192.0.2.1\nnochg 192.0.2.1\nnohost\nnotfqdn\nnochg 192.0.2.1\n"


async def test_hostname_is_normalised(site: Site) -> None:
    assert await site.text("hostname=A.Example.Test.&myip=192.0.2.3") == "good 192.0.2.3\n"


async def test_numhost(site: Site) -> None:
    hosts = ",".join(f"h{i}.example.test" for i in range(21))
    assert await site.text(f"hostname={hosts}&myip=192.0.2.1") == "numhost\n"
    assert record(site, A).ipv4 is None


async def test_notfqdn_without_hostname_for_account(site: Site) -> None:
    assert await site.text("myip=192.0.2.1") == "notfqdn\n"


async def test_badauth_is_401_with_basic_challenge(site: Site) -> None:
    for auth in (("alice", "wrong-password"), ("nobody", PASSWORD), None):
        r = await site.get(f"hostname={A}&myip=192.0.2.1", auth=auth)
        assert (r.status_code, r.text) == (401, "badauth\n")
        assert r.headers["www-authenticate"].startswith('Basic realm="')
    assert record(site, A).ipv4 is None


async def test_badagent(site: Site) -> None:
    for agent in (None, "", "   "):
        r = await site.get(f"hostname={A}&myip=192.0.2.1", agent=agent)
        assert (r.status_code, r.text) == (200, "badagent\n")
    assert record(site, A).ipv4 is None


async def test_agent_blocklist(redis_url: str) -> None:
    site = await make_site(redis_url, policy=UpdatePolicy(agent_blocklist=("badbot/*",)))
    try:
        assert await site.text(f"hostname={A}&myip=192.0.2.1", agent="BadBot/2.0") == "badagent\n"
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
    finally:
        await site.close()


async def test_post_form(site: Site) -> None:
    r = await site.get(method="POST", data={"hostname": A, "myip": "192.0.2.4"})
    assert r.text == "good 192.0.2.4\n"


async def test_offline_then_back_online_and_donator(site: Site) -> None:
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.1&offline=YES") == "good 192.0.2.1\n"
    assert record(site, A).offline is True
    assert await site.text(f"hostname={A}&myip=192.0.2.1&offline=yes") == "nochg 192.0.2.1\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
    assert record(site, A).offline is False
    site.sync.run(AccountSettings(site.keys).set("alice", "offline_updates", False))
    assert await site.text(f"hostname={A},{B}&myip=192.0.2.1&offline=YES") == "!donator\n"
    assert record(site, A).offline is False
    assert await site.text(f"hostname={A}&myip=192.0.2.1&offline=NO") == "nochg 192.0.2.1\n"


async def test_store_down_answers_911(redis_url: str) -> None:
    from tests.servers import free_port

    for adapter in ("asgi", "wsgi"):
        site = Site(f"redis://127.0.0.1:{free_port()}/0", adapter)
        try:
            r = await site.get(f"hostname={A}&myip=192.0.2.1")
            assert (r.status_code, r.text) == (200, "911\n")
        finally:
            await site.close()


# ----------------------------------------------------------------------------- account credentials


async def test_account_password_works_with_2fa_on(site: Site) -> None:
    mfa = TwoFactor(site.keys, SeedCipher(["e" * 32]), BackupCodeHasher(b"k" * 32), PasswordHasher(FAST))
    seed = site.sync.run(mfa.begin_enrollment("alice"))
    params = totp.TotpParams()
    code = totp.code_at(seed, totp.current_step(time.time(), params), params)
    assert site.sync.run(mfa.confirm_enrollment("alice", code))
    assert site.sync.run(mfa.status("alice")).enabled
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"


async def test_account_password_updates_deny(site: Site) -> None:
    group, password = site.group("alice", "home", [A])
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"  # warm the cache first
    site.sync.run(AccountSettings(site.keys).set("alice", "account_password_updates", False))
    calls = site.hasher.calls
    r = await site.get(f"hostname={A}&myip=192.0.2.2")
    assert (r.status_code, r.text) == (401, "badauth\n")
    assert site.hasher.calls == calls  # refused before any hashing
    assert await site.text(f"hostname={A}&myip=192.0.2.2", auth=(group.login, password)) == "good 192.0.2.2\n"
    site.sync.run(AccountSettings(site.keys).set("alice", "account_password_updates", True))
    assert await site.text(f"hostname={A}&myip=192.0.2.3") == "good 192.0.2.3\n"


# ----------------------------------------------------------------------------- groups


async def test_group_scope_and_group_name_as_hostname(site: Site) -> None:
    site.sync.run(site.hosts.add("alice", [C]))
    group, password = site.group("alice", "home", [A, B])
    auth = (group.login, password)
    assert ":" not in group.login and "#" not in group.login and " " not in group.login
    assert len(password) >= 22
    assert await site.text(f"hostname={A},{C}&myip=192.0.2.1", auth=auth) == "good 192.0.2.1\nnohost\n"
    assert record(site, C).ipv4 is None
    assert await site.text("hostname=home&myip=192.0.2.1", auth=auth) == "good 192.0.2.1\n"  # B changed
    assert await site.text("hostname=home&myip=192.0.2.1", auth=auth) == "nochg 192.0.2.1\n"
    assert await site.text("myip=192.0.2.5", auth=auth) == "good 192.0.2.5\ngood 192.0.2.5\n"
    assert (record(site, A).ipv4, record(site, B).ipv4, record(site, C).ipv4) == ("192.0.2.5",) * 2 + (None,)
    # Another account's host, and a host of the account outside the group.
    site.account("bob", "bob-password", hosts=["bob.example.test"])
    assert await site.text("hostname=bob.example.test,other&myip=192.0.2.1", auth=auth) == "nohost\nnotfqdn\n"


async def test_group_login_with_chosen_username_and_hosts_change(site: Site) -> None:
    _, password = site.group("alice", "office", [A], login="office-router")
    auth = ("Office-Router", password)  # logins are case-insensitive, like usernames
    assert await site.text(f"hostname={B}&myip=192.0.2.1", auth=auth) == "nohost\n"
    site.sync.run(site.groups.set_hosts("alice", "office", add=[B], remove=[A]))
    assert await site.text(f"hostname={A},{B}&myip=192.0.2.1", auth=auth) == "nohost\ngood 192.0.2.1\n"


async def test_group_rotate_kills_old_password_at_once(site: Site) -> None:
    group, old = site.group("alice", "home", [A])
    assert await site.text(f"hostname={A}&myip=192.0.2.1", auth=(group.login, old)) == "good 192.0.2.1\n"
    login, new = site.sync.run(site.groups.rotate("alice", "home"))
    assert login == group.login and new != old
    r = await site.get(f"hostname={A}&myip=192.0.2.2", auth=(group.login, old))
    assert (r.status_code, r.text) == (401, "badauth\n")
    assert await site.text(f"hostname={A}&myip=192.0.2.2", auth=(group.login, new)) == "good 192.0.2.2\n"


async def test_group_delete_kills_login(site: Site) -> None:
    group, password = site.group("alice", "home", [A])
    assert await site.text(f"hostname={A}&myip=192.0.2.1", auth=(group.login, password)) == "good 192.0.2.1\n"
    site.sync.run(site.groups.delete("alice", "home"))
    r = await site.get(f"hostname={A}&myip=192.0.2.2", auth=(group.login, password))
    assert (r.status_code, r.text) == (401, "badauth\n")


async def test_removed_host_leaves_groups(site: Site) -> None:
    group, password = site.group("alice", "home", [A, B])
    site.sync.run(site.hosts.remove("alice", [A]))
    assert [g.hosts for g in site.sync.run(site.groups.list("alice"))] == [(B,)]
    site.sync.run(site.hosts.add("alice", [A]))
    assert await site.text(f"hostname={A}&myip=192.0.2.1", auth=(group.login, password)) == "nohost\n"


# ----------------------------------------------------------------------------- clients behind proxies


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_trusted_proxy_on_and_off(redis_url: str, adapter: str) -> None:
    headers = {"x-forwarded-for": "198.51.100.7"}
    off = await make_site(redis_url, adapter)
    on = Site(redis_url, adapter, policy=UpdatePolicy(trusted_proxies=tuple(parse_trusted_proxies("127.0.0.0/8"))))
    try:
        assert await off.text(f"hostname={A}", headers=headers) == "good 127.0.0.1\n"
        assert await on.text(f"hostname={A}", headers=headers) == "good 198.51.100.7\n"
        assert record(on, A).client_ip == "198.51.100.7"
        assert await on.text(f"hostname={A}", headers={"x-real-ip": "198.51.100.8"}) == "good 198.51.100.8\n"
    finally:
        await off.close()
        await on.close()


async def test_asgi_reads_headers_whatever_their_case_and_joins_repeated_ones(redis_url: str) -> None:
    """ASGI servers should lower-case header names but need not: the endpoint reads mixed-case ones too, and
    a proxy chain's repeated X-Forwarded-For lines are joined in order (the last trusted hop decides)."""
    import base64

    from ddns_update.app import UpdateEndpoint

    site = Site(redis_url, "asgi", policy=UpdatePolicy(trusted_proxies=tuple(parse_trusted_proxies("127.0.0.0/8"))))
    site.account(hosts=[A])
    app = UpdateEndpoint(site.service, site.async_store)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    auth = b"Basic " + base64.b64encode(f"alice:{PASSWORD}".encode())
    scope = {"type": "http", "method": "GET", "path": "/nic/update", "query_string": f"hostname={A}".encode(),
             "client": ("127.0.0.1", 5000), "headers": [
                 (b"Host", b"ddns.test"), (b"Authorization", auth), (b"User-Agent", AGENT.encode()),
                 (b"X-Forwarded-For", b"198.51.100.9"), (b"x-forwarded-for", b"127.0.0.2")]}
    try:
        await app(scope, receive, send)
        assert sent[0]["status"] == 200 and sent[1]["body"] == b"good 198.51.100.9\n"
    finally:
        await site.close()


# ----------------------------------------------------------------------------- abuse


async def test_repeated_nochg_flags_the_login_until_cleared(redis_url: str) -> None:
    site = await make_site(redis_url, policy=UpdatePolicy(abuse=AbusePolicy(nochg_per_host=3, faults=100)))
    try:
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
        for _ in range(4):
            assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
        assert await site.text(f"hostname={A}&myip=192.0.2.9") == "abuse\n"
        assert record(site, A).ipv4 == "192.0.2.1"
        assert "alice" in site.sync.run(Abuse(site.keys, site.service.credentials).flagged("alice"))
        assert site.sync.run(Abuse(site.keys, site.service.credentials).clear("alice")) is True
        assert await site.text(f"hostname={A}&myip=192.0.2.9") == "good 192.0.2.9\n"
    finally:
        await site.close()


async def test_abuse_counters_last_one_window_from_their_first_hit(redis_url: str) -> None:
    window_ms = 1500
    site = await make_site(redis_url, policy=UpdatePolicy(abuse=AbusePolicy(nochg_per_host=3, faults=3,
                                                                            window_ms=window_ms)))
    r = redis.Redis.from_url(redis_url)
    nochg, faults = site.keys.account("alice", "nochg"), site.keys.account("alice", "faults")
    try:
        for host in (A, B):
            assert await site.text(f"hostname={host}&myip=192.0.2.1") == "good 192.0.2.1\n"
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
        first = r.pttl(nochg)
        assert 0 < first <= window_ms
        await anyio.sleep(0.4)
        for host in (A, B):  # a second field and more hits: the window still runs from the first hit
            assert await site.text(f"hostname={host}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
        assert r.hget(nochg, f"alice {A}") == b"2" and 0 < r.pttl(nochg) <= first - 300
        assert await site.text("hostname=x.example.test&myip=192.0.2.1") == "nohost\n"
        assert 0 < r.pttl(faults) <= window_ms
        await anyio.sleep(window_ms / 1000 + 0.1)
        assert not r.exists(nochg) and not r.exists(faults)  # both windows over: every count starts again
        for _ in range(4):  # the fourth in the new window goes over the limit and flags the login
            assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "abuse\n"
        assert 0 < r.pttl(nochg) <= window_ms
    finally:
        r.close()
        await site.close()


async def test_repeated_faults_flag_the_login(redis_url: str) -> None:
    site = await make_site(redis_url, policy=UpdatePolicy(abuse=AbusePolicy(nochg_per_host=100, faults=2)))
    try:
        assert await site.text("hostname=x.example.test&myip=192.0.2.1") == "nohost\n"
        assert await site.text(f"hostname={A}&myip=192.0.2.1", agent="") == "badagent\n"
        assert await site.text("hostname=bad!&myip=192.0.2.1") == "notfqdn\n"
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "abuse\n"
        # Someone else's login is not flagged by our faults; a group of the account is a login of its own.
        group, password = site.group("alice", "home", [A])
        assert await site.text(f"hostname={A}&myip=192.0.2.1", auth=(group.login, password)) == "good 192.0.2.1\n"
    finally:
        await site.close()


async def test_unauthenticated_faults_do_not_flag_a_login(site: Site) -> None:
    for _ in range(40):
        await site.get("hostname=x.example.test", auth=("alice", "wrong-password"), agent="")
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"


# ----------------------------------------------------------------------------- credential cache


async def test_argon2_runs_once_for_100_warm_updates(site: Site) -> None:
    before = site.hasher.calls
    for i in range(100):
        body = await site.text(f"hostname={A}&myip=192.0.2.{i % 2 + 1}")
        assert body.startswith("good ")
    assert site.hasher.calls - before == 1
    group, password = site.group("alice", "home", [B])
    before = site.hasher.calls
    for i in range(100):
        body = await site.text(f"hostname=home&myip=192.0.2.{i % 2 + 1}", auth=(group.login, password))
        assert body == f"good 192.0.2.{i % 2 + 1}\n"
    assert site.hasher.calls - before == 1


async def test_password_change_invalidates_the_cache(site: Site) -> None:
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
    site.sync.run(site.accounts.set_password("alice", "new-password"))
    r = await site.get(f"hostname={A}&myip=192.0.2.2")
    assert (r.status_code, r.text) == (401, "badauth\n")
    assert await site.text(f"hostname={A}&myip=192.0.2.2", auth=("alice", "new-password")) == "good 192.0.2.2\n"


async def test_wrong_password_with_warm_cache_costs_one_verify_like_an_unknown_login(site: Site) -> None:
    # The cache only says yes: a wrong password is decided by argon2id, warm or cold, known login or not, so
    # the answer's timing does not tell an attacker which logins exist (test_throttle.py measures it).
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
    before = site.hasher.calls
    for _ in range(3):
        assert (await site.get(f"hostname={A}", auth=("alice", "guess"))).status_code == 401
    assert site.hasher.calls - before == 3
    for i in range(3):
        assert (await site.get(f"hostname={A}", auth=(f"nobody{i}", "guess"))).status_code == 401
    assert site.hasher.calls - before == 6
    assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    assert site.hasher.calls - before == 6  # the right password is still served from the cache


async def test_throttled_bad_passwords_do_not_run_argon2(redis_url: str) -> None:
    site = await make_site(redis_url, throttle=ThrottlePolicy(per_login=3, per_ip=1000))
    try:
        before = site.hasher.calls
        for _ in range(10):
            assert (await site.get(f"hostname={A}", auth=("alice", "guess"))).status_code == 401
        assert site.hasher.calls - before == 3
        # Throttled: even the right password is not hashed now...
        assert (await site.get(f"hostname={A}")).status_code == 401
        assert site.hasher.calls - before == 3
    finally:
        await site.close()


async def test_unknown_logins_are_throttled_per_client_ip(redis_url: str) -> None:
    site = Site(redis_url, "wsgi", throttle=ThrottlePolicy(per_login=100, per_ip=2))
    try:
        for i in range(6):
            assert (await site.get(f"hostname={A}", auth=(f"nobody{i}", "guess"))).status_code == 401
        assert site.hasher.calls == 2
    finally:
        await site.close()


async def test_warm_router_keeps_working_while_its_login_is_throttled(redis_url: str) -> None:
    site = await make_site(redis_url, throttle=ThrottlePolicy(per_login=2, per_ip=1000))
    try:
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
        for _ in range(5):
            await site.get(f"hostname={A}", auth=("alice", "guess"))
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    finally:
        await site.close()


async def test_cache_made_under_another_server_key_is_a_miss(redis_url: str) -> None:
    one = await make_site(redis_url)
    other = Site(redis_url, "asgi", secret="t" * 32)
    try:
        assert await one.text(f"hostname={A}&myip=192.0.2.1") == "good 192.0.2.1\n"
        assert await other.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
        assert await one.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    finally:
        await one.close()
        await other.close()


# ----------------------------------------------------------------------------- DNS push (issue 5 interface)


async def test_dns_push_only_for_changes_and_dnserr_restores_record(redis_url: str) -> None:
    backend = RecordingBackend()
    site = await make_site(redis_url, backend=backend)
    try:
        assert await site.text(f"hostname={A},{B}&myip=192.0.2.1") == "good 192.0.2.1\ngood 192.0.2.1\n"
        assert [[c.host for c in p] for p in backend.pushes] == [[A, B]]  # one push per request
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
        assert len(backend.pushes) == 1  # nochg never touches DNS
        backend.failing = {B}
        assert await site.text(f"hostname={A},{B}&myip=192.0.2.2") == "good 192.0.2.2\ndnserr\n"
        assert (record(site, A).ipv4, record(site, B).ipv4) == ("192.0.2.2", "192.0.2.1")
        history = site.sync.run(site.hosts.history("alice", B))
        assert [h.ipv4 for h in history] == ["192.0.2.1"]
        backend.failing = set()
        assert await site.text(f"hostname={B}&myip=192.0.2.2&offline=YES") == "good 192.0.2.2\n"
        assert backend.pushes[-1][0].offline is True
    finally:
        await site.close()


def _one(*args: Any) -> Op[Any]:
    return (yield cmd(*args))


async def test_history_is_capped(site: Site) -> None:
    for i in range(25):
        await site.get(f"hostname={A}&myip=192.0.2.{i + 1}")
    history = site.sync.run(site.hosts.history("alice", A))
    assert len(history) == 20
    assert history[0].ipv4 == "192.0.2.25" and history[0].user_agent == AGENT
    # The stored list itself is capped (``history`` reads only the first 20): memory stays bounded per host.
    assert site.sync.run(_one("LLEN", history_prefix(site.keys, "alice") + A)) == 20
