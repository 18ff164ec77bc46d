"""The outside review's gate findings, each as the property that must hold: a pending seed belongs to the session
that was shown it; one user's failures never slow another user at the same address (and the gate reads
TRUSTED_PROXIES); every gate page carries the hardening headers; logging out ends the gate session on every lane
of both instances, over real HTTP through both adapters."""

from __future__ import annotations

import json
import re

import pytest

from mfa_middleware import ThrottlePolicy
from mfa_middleware.totp import TotpParams, code_at, current_step
from tests.gate_harness import ADAPTERS, PASSWORD, Site, csrf_of, key_of
from tests.test_cli_mfa import mfa_admin


@pytest.fixture(params=ADAPTERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_pending_seed_belongs_to_the_session_that_was_shown_it(kind: str, redis_url: str) -> None:
    owner_site, other_site = Site(kind, redis_url), Site(kind, redis_url)  # two instances
    owner_site.add_account("olga")
    snoop = other_site.browser()  # knows only the password
    await snoop.login("olga")
    snoop_page = await snoop.get("/mfa/setup")
    snoop_key = key_of(snoop_page.text)
    owner = owner_site.browser()
    await owner.login("olga")
    page = await owner.get("/mfa/setup")
    owner_key = key_of(page.text)
    assert owner_key != snoop_key, "another session gets a seed of its own"
    assert key_of((await owner.get("/mfa/setup")).text) == owner_key, "a reload shows the same key"
    params = TotpParams()
    now = owner_site.clock()
    # The snoop cannot confirm the owner's seed from their own session (they never saw it, but guess it).
    r = await snoop.post("/mfa/setup", {"csrf_token": csrf_of(snoop_page.text), "password": PASSWORD,
                                        "code": code_at(owner_key, current_step(now, params), params)})
    assert r.status_code == 400
    r = await owner.post("/mfa/setup", {"csrf_token": csrf_of(page.text), "password": PASSWORD,
                                        "code": code_at(owner_key, current_step(now, params), params)})
    assert r.status_code == 303
    # Enabling discarded the snoop's pending seed, and their key's codes are not the account's.
    owner_site.clock.advance(30)
    other_site.clock.advance(30)
    r = await snoop.post("/mfa/setup", {"csrf_token": csrf_of(snoop_page.text), "password": PASSWORD,
                                        "code": code_at(snoop_key, current_step(other_site.clock(), params),
                                                        params)})
    assert r.status_code in (303, 400)  # the owner's enable ended the snoop's session: nothing to confirm
    r = await snoop.get("/mfa/verify")
    r = await snoop.post("/mfa/verify", {"csrf_token": csrf_of(r.text),
                                         "code": code_at(snoop_key, current_step(other_site.clock(), params),
                                                         params)})
    assert r.status_code == 401
    assert (await snoop.get("/")).status_code == 303
    assert not other_site.store.run(_hgetall(other_site, "olga", "enroll"))


def _hgetall(site: Site, account: str, part: str):  # type: ignore[no-untyped-def]
    from mfa_middleware.store import cmd

    result = yield cmd("HGETALL", site.store.keys.account(account, part))
    return result


async def test_one_users_failures_never_slow_another_at_the_same_address(kind: str, redis_url: str) -> None:
    """The review's repro: B mistypes the password seven times on /mfa/setup; A, same address, is not slowed,
    and ten users behind one proxy address, each mistyping twice, are not slowed either."""
    site = Site(kind, redis_url, gate={"trusted_proxies": ["127.0.0.0/8"]})
    a, _ = await site.new_user("alpha")
    await a.logout()
    await a.login("alpha")
    b, _ = await site.new_user("bravo", enroll=False)
    for _ in range(7):
        r = await b.form("/mfa/setup", {"password": "wrong", "code": "000000"})
        assert r.status_code in (401, 429)
    r = await site.verify(a, "alpha")
    assert r.status_code == 303, r.text[:300]
    info = json.loads(mfa_admin("--json", "user", "show", "alpha", env_url=redis_url).stdout)
    assert info["locked_until"] is None and info["blocked_by_address"] is None

    proxy_hdr = {"x-forwarded-for": "203.0.113.9"}  # everyone behind one proxy address
    users = []
    for n in range(10):
        u, _ = await site.new_user(f"u{n}")
        await u.logout()
        await u.login(f"u{n}")
        users.append(u)
    wrong = "000000"
    for n, u in enumerate(users):
        for _ in range(2):
            page = await u.get("/mfa/verify", headers=proxy_hdr)
            code = wrong if site.code(f"u{n}") != wrong else "111111"
            r = await u.post("/mfa/verify", {"csrf_token": csrf_of(page.text), "code": code}, headers=proxy_hdr)
            assert r.status_code == 401 and "Too many" not in r.text
    for n, u in enumerate(users):
        page = await u.get("/mfa/verify", headers=proxy_hdr)
        r = await u.post("/mfa/verify", {"csrf_token": csrf_of(page.text), "code": site.code(f"u{n}")},
                         headers=proxy_hdr)
        assert r.status_code == 303, f"u{n}: {r.status_code}"
    # The address's failures were counted for the proxy's client, not the proxy.
    shown = json.loads(mfa_admin("--json", "ip", "show", "203.0.113.9", env_url=redis_url).stdout)
    assert shown["failures_this_hour"] >= 20 and shown["blocked_until"] is None


async def test_an_address_over_its_cap_is_shown_and_cleared(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"throttle": ThrottlePolicy(free_failures=1000, base_ms=0, ip_max_per_hour=3)})
    b, _ = await site.new_user("carla")
    await b.logout()
    await b.login("carla")
    for _ in range(3):
        assert (await b.form("/mfa/verify/backup", {"backup_code": "x" * 24})).status_code == 401
    r = await site.verify(b, "carla")
    assert r.status_code == 429
    info = json.loads(mfa_admin("--json", "user", "show", "carla", env_url=redis_url).stdout)
    assert info["locked_until"] is None, "the account itself is not locked"
    assert info["blocked_by_address"] == "127.0.0.1" and info["address_blocked_until"]
    assert "blocked by address: 127.0.0.1" in mfa_admin("user", "show", "carla", env_url=redis_url).stdout
    shown = json.loads(mfa_admin("--json", "ip", "show", "127.0.0.1", env_url=redis_url).stdout)
    assert shown["failures_this_hour"] == 3 and shown["blocked_until"]
    assert mfa_admin("ip", "unlock", "127.0.0.1", env_url=redis_url).returncode == 0
    assert (await site.verify(b, "carla")).status_code == 303
    assert mfa_admin("ip", "show", "not-an-address", env_url=redis_url).returncode == 2


PAGES = ["/mfa/verify", "/mfa/verify/backup", "/mfa/security", "/mfa/setup", "/mfa/backup-codes",
         "/mfa/security-question", "/mfa/nothing-here"]


async def test_every_gate_page_sends_the_hardening_headers(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    fresh, _ = await site.new_user("hana", enroll=False)
    pages = [await fresh.get(p) for p in PAGES]
    r = await fresh.get("/mfa/setup")
    pages.append(await fresh.post("/mfa/setup", {"csrf_token": csrf_of(r.text), "password": PASSWORD,
                                                  "code": _code_of(r.text, site)}))
    pages.append(await fresh.get("/mfa/backup-codes"))  # the codes, shown once
    pages.append(await fresh.post("/mfa/verify", {"csrf_token": "forged", "code": "1"}))
    pages.append(await fresh.get("/mfa/verify", headers={"accept": "application/json"}))
    for r in pages:
        h = r.headers
        assert h["x-frame-options"] == "DENY", r.url
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'self'" in csp
        assert h["referrer-policy"] in ("same-origin", "no-referrer", "strict-origin")
        assert h["x-content-type-options"] == "nosniff"
        assert "no-store" in h["cache-control"], r.url
        if r.headers.get("content-type", "").startswith("text/html"):
            assert "<script>" not in r.text and " onclick=" not in r.text and "<style>" not in r.text
    assert any("data-backup-code" in r.text for r in pages)
    css = await fresh.get("/mfa/static/gate.css")
    js = await fresh.get("/mfa/static/gate.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200 and "window.print" in js.text
    assert (await fresh.get("/mfa/static/../gate.py")).status_code == 404
    assert (await fresh.get("/mfa/static/nothing.css")).status_code == 404


async def test_a_host_app_can_set_its_own_policy(redis_url: str) -> None:
    site = Site("asgi", redis_url, gate={"content_security_policy": "default-src 'self'; frame-ancestors 'none'"})
    b, _ = await site.new_user("ivo", enroll=False)
    assert (await b.get("/mfa/security")).headers["content-security-policy"].startswith("default-src 'self';")


def _code_of(page: str, site: Site) -> str:
    key = re.search(r"data-totp-key>([^<]+)<", page)
    assert key
    params = TotpParams()
    return code_at(key.group(1).replace(" ", ""), current_step(site.clock(), params), params)


async def test_logging_out_ends_the_gate_session_on_both_instances(kind: str, redis_url: str) -> None:
    """The review's repro over real HTTP: a copied mfa_session cookie, the owner logs out, the copier signs in
    with the password and sends the old cookie; refused on the instance that saw the logout at once and on the
    other within revocation_ttl, on every request (not just the first)."""
    import asyncio

    first = Site(kind, redis_url)
    second = Site(kind, redis_url, clock=first.clock)
    owner, _ = await first.new_user("vic")
    await owner.logout()
    await owner.login("vic")
    assert (await first.verify(owner, "vic")).status_code == 303
    copied = owner.cookie("mfa_session")
    assert copied
    copier_first, copier_second = first.browser(), second.browser()
    for site_browser in (copier_first, copier_second):
        await site_browser.login("vic")
        site_browser.client.cookies.set("mfa_session", copied)
    for _ in range(2):  # both instances' lanes know the session now
        assert (await owner.get("/")).status_code == 200
        assert (await copier_second.get("/")).status_code == 200
    await owner.logout()
    await owner.get("/")  # the browser's next request (signed out) tells the gate: its record is deleted
    for _ in range(3):
        copier_first.client.cookies.set("mfa_session", copied)
        assert (await copier_first.get("/")).status_code == 303
    await asyncio.sleep(second.app_gate().confirmed.ttl + 0.1)
    for _ in range(3):
        copier_second.client.cookies.set("mfa_session", copied)
        assert (await copier_second.get("/")).status_code == 303
