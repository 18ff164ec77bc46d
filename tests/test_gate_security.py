"""Each security rule of the gate, through real HTTP against both adapters and a real redis-server."""

from __future__ import annotations

import asyncio
import re

import pytest
import redis as redis_lib

from mfa_middleware import ThrottlePolicy
from tests.gate_harness import ADAPTERS, PASSWORD, Site, csrf_of
from tests.servers import RedisServer

pytestmark = pytest.mark.parametrize("kind", ADAPTERS)


async def _second_login(site: Site, name: str) -> object:
    b = site.browser()
    await b.login(name)
    return b


async def test_used_code_is_refused_even_on_another_instance(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    other = Site("wsgi" if kind == "asgi" else "asgi", redis_url, clock=site.clock)
    _, _ = await site.new_user("alice")
    other.seeds = site.seeds
    b1 = site.browser()
    await b1.login("alice")
    r = await site.verify(b1, "alice")
    assert r.status_code == 303
    b2 = other.browser()
    await b2.login("alice")
    r = await other.verify(b2, "alice")
    assert r.status_code == 401 and "already used" in r.text
    assert (await b2.get("/")).status_code == 303
    # An older step than the last one used is refused too.
    site.clock.advance(30)
    b3 = site.browser()
    await b3.login("alice")
    r = await b3.form("/mfa/verify", {"code": site.code("alice", -1)})
    assert r.status_code == 401


async def test_50_concurrent_uses_of_one_backup_code_one_success(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"throttle": ThrottlePolicy(free_failures=1000, max_per_hour=1000,
                                                                   ip_max_per_hour=1000)})
    _, codes = await site.new_user("bob")
    browsers = []
    for _ in range(50):
        b = site.browser()
        await b.login("bob")
        b.csrf = csrf_of((await b.get("/mfa/verify/backup")).text)
        browsers.append(b)
    results = await asyncio.gather(*(b.post("/mfa/verify/backup", {"csrf_token": b.csrf, "backup_code": codes[3]})
                                     for b in browsers))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1 and statuses.count(401) == 49, statuses
    raw = redis_lib.Redis.from_url(redis_url)
    assert raw.hlen("mfa:{a:bob}:backup") == 9


async def test_brute_force_hits_the_back_off(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"throttle": ThrottlePolicy(free_failures=3, base_ms=60_000)})
    b, _ = await site.new_user("carol")
    await b.logout()
    await b.login("carol")
    wrong = "000000" if site.code("carol") != "000000" else "111111"
    for _ in range(4):  # three free failures, the fourth starts a 60 s back-off
        assert (await b.form("/mfa/verify", {"code": wrong})).status_code == 401
    r = await site.verify(b, "carol")
    assert r.status_code == 429, "even the right code waits out the back-off"
    st = site.store.run(site.app_gate().twofactor.status("carol"))
    assert st.locked_until is not None
    site.clock.advance(61)
    assert (await site.verify(b, "carol")).status_code == 303


async def test_hourly_cap_per_account(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"throttle": ThrottlePolicy(free_failures=1000, base_ms=0, max_per_hour=5,
                                                                    ip_max_per_hour=1000)})
    _, codes = await site.new_user("dan")
    for _ in range(5):  # from fresh browsers: the cap is per account, not per session
        b = site.browser()
        await b.login("dan")
        assert (await b.form("/mfa/verify/backup", {"backup_code": "x" * 24})).status_code == 401
    b = site.browser()
    await b.login("dan")
    assert (await b.form("/mfa/verify/backup", {"backup_code": codes[0]})).status_code == 429
    site.store.run(site.app_gate().twofactor.unlock("dan"))
    assert (await b.form("/mfa/verify/backup", {"backup_code": codes[0]})).status_code == 200


async def test_throttle_per_ip_across_accounts(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"throttle": ThrottlePolicy(free_failures=1000, base_ms=0, ip_max_per_hour=3)})
    victims = []
    for name in ("e1", "e2", "e3", "e4"):
        _, codes = await site.new_user(name)
        victims.append((name, codes))
    for name, _ in victims[:3]:
        b = site.browser()
        await b.login(name)
        assert (await b.form("/mfa/verify/backup", {"backup_code": "y" * 24})).status_code == 401
    b = site.browser()
    await b.login("e4")
    r = await b.form("/mfa/verify/backup", {"backup_code": victims[3][1][0]})
    assert r.status_code == 429, "one address may not spread guesses over many accounts"


async def test_session_id_rotates_after_second_factor(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    await site.new_user("fay")
    b = site.browser()
    await b.login("fay")
    await b.get("/mfa/verify")
    before = b.cookie("mfa_session")
    assert before
    await site.verify(b, "fay")
    after = b.cookie("mfa_session")
    assert after and after != before
    # A planted pre-login id (session fixation) is worth nothing after the victim verifies.
    attacker = site.browser()
    await attacker.login("fay")
    attacker.client.cookies.set("mfa_session", before)
    assert (await attacker.get("/")).status_code == 303


async def test_cookie_flags_over_https(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, base_url="https://testserver")
    b, _ = await site.new_user("gus")
    await b.logout()
    await b.login("gus")
    r = await b.get("/mfa/verify")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-mfa_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    http = Site(kind, redis_url)
    h = http.browser()
    await h.login("gus")
    r = await h.get("/mfa/verify")
    assert r.headers["set-cookie"].startswith("mfa_session=") and "Secure" not in r.headers["set-cookie"]


async def test_tampered_foreign_and_other_users_cookies(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    await site.new_user("hal")
    await site.new_user("ida")
    b = site.browser()
    await b.login("hal")
    await site.verify(b, "hal")
    good = b.cookie("mfa_session")
    assert good and (await b.get("/")).status_code == 200
    tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    b.client.cookies.set("mfa_session", tampered)
    assert (await b.get("/")).status_code == 303
    # Signed with another site's key: refused before any lookup.
    from itsdangerous import URLSafeTimedSerializer

    foreign = URLSafeTimedSerializer("another-key-entirely", salt="mfa-session").dumps("x" * 43)
    b.client.cookies.set("mfa_session", foreign)
    assert (await b.get("/")).status_code == 303
    # hal's verified cookie does not verify ida: the gate session is bound to the app's identity.
    i = site.browser()
    await i.login("ida")
    i.client.cookies.set("mfa_session", good)
    assert (await i.get("/")).status_code == 303


async def test_logout_then_login_needs_the_second_factor_again(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    await site.new_user("jay")
    b = site.browser()
    await b.login("jay")
    await site.verify(b, "jay")
    await b.logout()
    await b.get("/")  # anonymous request: the gate forgets its state
    await b.login("jay")
    assert (await b.get("/")).status_code == 303


async def test_absolute_and_idle_timeouts(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"absolute_timeout": 3600, "idle_timeout": 1})
    await site.new_user("kim")
    b = site.browser()
    await b.login("kim")
    await site.verify(b, "kim")
    assert (await b.get("/")).status_code == 200
    site.clock.advance(3601)
    assert (await b.get("/")).status_code == 303, "absolute timeout"
    site.clock.advance(30)
    await site.verify(b, "kim")
    assert (await b.get("/")).status_code == 200
    site.clock.advance(2)  # idle is judged by the ticket's last-seen time, on the gate's clock
    assert (await b.get("/")).status_code == 303, "idle timeout"


async def test_regenerate_and_sign_out_everywhere_end_other_sessions(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    a, _ = await site.new_user("lee")
    other = site.browser()
    await other.login("lee")
    site.clock.advance(30)
    await site.verify(other, "lee")
    assert (await other.get("/")).status_code == 200
    await a.form("/mfa/regenerate", {"password": PASSWORD}, page="/mfa/security")
    assert (await a.get("/")).status_code == 200, "the session that regenerated goes on"
    assert (await other.get("/")).status_code == 303
    site.clock.advance(30)
    await site.verify(other, "lee")
    r = await a.form("/mfa/signout-everywhere", {}, page="/mfa/security")
    assert r.status_code == 200
    assert (await other.get("/")).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example",
                                    "%2F%2Fevil.example", "javascript:alert(1)", "/\t/evil.example"])
async def test_open_redirect_attempts_on_next(kind: str, redis_url: str, target: str) -> None:
    site = Site(kind, redis_url)
    await site.new_user("max")
    b = site.browser()
    await b.login("max")
    r = await b.get("/mfa/verify", params={"next": target})
    token = csrf_of(r.text)
    r = await b.post("/mfa/verify", {"csrf_token": token, "code": site.code("max")}, params={"next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_missing_or_wrong_csrf_is_refused(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, _ = await site.new_user("ned")
    r = await b.post("/mfa/disable", {"password": PASSWORD})
    assert r.status_code == 400
    r = await b.post("/mfa/disable", {"password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 400
    assert 'data-mfa-status="on"' in (await b.get("/mfa/security")).text
    await b.logout()
    await b.login("ned")
    await b.get("/mfa/verify")
    r = await b.post("/mfa/verify", {"code": site.code("ned")})
    assert r.status_code == 400 and (await b.get("/")).status_code == 303


async def test_seeds_encrypted_at_rest(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    _, codes = await site.new_user("oli")
    p = site.browser()
    site.add_account("pam")
    await p.login("pam")
    pending = re.search(r"data-totp-key>([^<]+)<", (await p.get("/mfa/setup")).text)
    assert pending
    secrets_ = [site.seeds["oli"], pending.group(1).replace(" ", ""), *(c.replace("-", "") for c in codes)]
    raw = redis_lib.Redis.from_url(redis_url)
    dump = b""
    for key in raw.scan_iter():
        kind_ = raw.type(key)
        if kind_ == b"hash":
            dump += b" ".join(k + b"=" + v for k, v in raw.hgetall(key).items())
        elif kind_ == b"string":
            dump += raw.get(key) or b""
    assert b"v1." in dump  # the seed tokens are there, encrypted
    for s in secrets_:
        assert s.encode() not in dump and s.lower().encode() not in dump


async def test_store_down_fails_closed_with_503(kind: str) -> None:
    server = RedisServer().start()
    try:
        site = Site(kind, server.url)
        b, _ = await site.new_user("quinn", enroll=False)
        assert (await b.get("/")).status_code == 200
        await site.new_user("rita")
        enrolled = site.browser()
        await enrolled.login("rita")
        server.kill()
        # A user who still owes the second factor is never let through: the gate needs the store for that.
        assert (await enrolled.get("/")).status_code == 503
        # What this instance proved less than `revocation_ttl` (1 s) ago may pass without the store; after
        # that, nobody does.
        await asyncio.sleep(site.app_gate().confirmed.ttl + 0.1)
        r = await b.get("/")
        assert r.status_code == 503
        r = await b.get("/", headers={"Accept": "application/json"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
        assert (await b.get("/mfa/verify")).status_code == 503
    finally:
        server.cleanup()


async def test_hourly_cap_holds_under_parallel_guessing(kind: str, redis_url: str) -> None:
    """Attempts are charged before they are checked, so a burst cannot slip past the cap."""
    policy = ThrottlePolicy(free_failures=1000, base_ms=0, max_per_hour=5, ip_max_per_hour=1000)
    site = Site(kind, redis_url, gate={"throttle": policy})
    await site.new_user("rex")
    browsers = []
    for _ in range(20):
        b = site.browser()
        await b.login("rex")
        b.csrf = csrf_of((await b.get("/mfa/verify/backup")).text)
        browsers.append(b)
    results = await asyncio.gather(*(b.post("/mfa/verify/backup", {"csrf_token": b.csrf, "backup_code": "w" * 24})
                                     for b in browsers))
    statuses = [r.status_code for r in results]
    assert statuses.count(401) <= 5 and statuses.count(429) >= 15, statuses


async def test_encryption_key_rotation(kind: str, redis_url: str) -> None:
    from tests.gate_harness import ENC_KEY

    old_site = Site(kind, redis_url)
    await old_site.new_user("sam")
    new_key = "a-brand-new-encryption-key-0123456789"
    site = Site(kind, redis_url, clock=old_site.clock, gate={"encryption_keys": [new_key, ENC_KEY]})
    site.seeds = old_site.seeds
    raw = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    before = raw.hget("mfa:{a:sam}:mfa", "seed")
    b = site.browser()
    await b.login("sam")
    assert (await site.verify(b, "sam")).status_code == 303
    after = raw.hget("mfa:{a:sam}:mfa", "seed")
    assert after != before and after.split(".")[1] != before.split(".")[1]
    # Only the new key left: the re-sealed seed still works.
    only_new = Site(kind, redis_url, clock=site.clock, gate={"encryption_keys": [new_key]})
    only_new.seeds = site.seeds
    site.clock.advance(30)
    c = only_new.browser()
    await c.login("sam")
    assert (await only_new.verify(c, "sam")).status_code == 303


async def test_revocation_reaches_another_instance_within_a_second(kind: str, redis_url: str) -> None:
    """Verified requests skip the store (signed ticket + a locally cached epoch), yet "sign out
    everywhere" on instance A ends the session on instance B within the revocation TTL (1 s)."""
    import time

    a = Site(kind, redis_url)
    b = Site(kind, redis_url, clock=a.clock)
    await a.new_user("una")
    on_a = a.browser()
    await on_a.login("una")
    await a.verify(on_a, "una")
    on_b = b.browser()
    on_b.client.cookies.update(on_a.client.cookies)  # the same browser, load-balanced to B
    assert (await on_b.get("/")).status_code == 200
    assert (await on_b.get("/")).status_code == 200  # B now answers from its cache
    assert (await on_a.form("/mfa/signout-everywhere", {}, page="/mfa/security")).status_code in (200, 303)
    started = time.monotonic()
    while (await on_b.get("/")).status_code == 200:
        assert time.monotonic() - started < 1.5, "B still lets the revoked session through"
        await asyncio.sleep(0.05)
    assert (await on_b.get("/")).status_code == 303
    assert (await on_a.get("/")).status_code == 200  # the browser that asked keeps its (new) session


async def test_verified_requests_need_no_store_round_trip(kind: str, redis_url: str) -> None:
    import redis as redis_lib

    site = Site(kind, redis_url)
    await site.new_user("vic")
    browser = site.browser()
    await browser.login("vic")
    await site.verify(browser, "vic")
    assert (await browser.get("/")).status_code == 200
    raw = redis_lib.Redis.from_url(redis_url)
    before = int(raw.info("stats")["total_commands_processed"])
    for _ in range(50):
        assert (await browser.get("/")).status_code == 200
    used = int(raw.info("stats")["total_commands_processed"]) - before - 1  # minus this INFO itself
    # At most one epoch refresh per revocation TTL (1 s) — not one round trip per request.
    assert used <= 3, used


async def test_a_repeated_session_cookie_cannot_split_who_the_app_and_the_gate_see(kind: str, redis_url: str) -> None:
    """Someone with the victim's password but not their second factor, and a verified session of their own,
    sends both app sessions in one Cookie header, in either order, with their own gate ticket. Whichever
    session the app reads is the one the gate checks: never the victim's page without the victim's code.
    (The Flask hook once read the last cookie of a name while Flask reads the first.)"""
    site = Site(kind, redis_url)
    await site.new_user("vic")
    await site.new_user("mal")
    app_cookie = "app_session" if kind == "asgi" else "session"
    victim = site.browser()
    await victim.login("vic")  # password only: the gate would ask for vic's code
    attacker = site.browser()
    await attacker.login("mal")
    await site.verify(attacker, "mal")
    assert (await attacker.get("/")).json()["user"] == "mal"
    ticket, mine, theirs = attacker.cookie("mfa_session"), attacker.cookie(app_cookie), victim.cookie(app_cookie)
    assert ticket and mine and theirs
    for first, second in ((theirs, mine), (mine, theirs)):
        header = f"{app_cookie}={first}; {app_cookie}={second}; mfa_session={ticket}"
        probe = site.browser()
        r = await probe.get("/", headers={"Cookie": header})
        assert r.status_code != 200 or r.json()["user"] == "mal", (first == theirs, r.status_code, r.text[:200])
