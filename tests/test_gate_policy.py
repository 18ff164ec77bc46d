"""Who must use 2FA (``policy`` per identity, ``grace``) and fresh proof for sensitive routes (``step_up``,
``require_recent``), through both adapters and real HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.gate_harness import ADAPTERS, PASSWORD, Browser, Site, csrf_of
from tests.test_cli_mfa import mfa_admin

DAY = 86400


@pytest.fixture(params=ADAPTERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def bosses(identity: str) -> str:
    return "required" if identity.startswith("boss") else "optional"


async def _follow(b: Browser, path: str, limit: int = 8) -> tuple[int, str, list[str]]:
    """GET ``path`` and follow redirects by hand: the final status, the final path, every URL visited."""
    seen = [path]
    r = await b.get(path)
    while r.status_code in (301, 302, 303, 307) and len(seen) < limit:
        path = r.headers["location"]
        assert path not in seen, f"redirect loop: {[*seen, path]}"
        seen.append(path)
        r = await b.get(path)
    return r.status_code, urlsplit(seen[-1]).path, seen


async def test_a_required_user_is_sent_to_setup_from_every_gated_page(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"policy": bosses})
    boss, _ = await site.new_user("boss1", enroll=False)
    r = await boss.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/setup?next=/"
    r = await boss.get("/", headers={"accept": "application/json"})
    assert r.status_code == 403 and r.json() == {"error": "mfa_setup_required", "setup_url": "/mfa/setup?next=/"}
    for path in ("/mfa/setup", "/mfa/security", "/nic/update"):
        assert (await boss.get(path)).status_code == 200, path
    worker, _ = await site.new_user("worker1", enroll=False)
    assert (await worker.get("/")).status_code == 200
    r = await boss.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login", "logging out is never held up"


STATES = ["required-no-2fa", "required-unverified", "required-verified", "optional-no-2fa", "optional-unverified",
          "grace"]
PAGES = ["/", "/billing/pay", "/sensitive", "/mfa", "/mfa/security", "/mfa/setup", "/mfa/verify",
         "/mfa/verify/backup", "/mfa/backup-codes", "/mfa/security-question", "/mfa/required", "/mfa/confirm",
         "/nic/update", "/mfa/verify?next=/mfa/verify", "/mfa/setup?next=/mfa/setup",
         "/mfa/required?next=/mfa/required"]


@pytest.mark.parametrize("state", STATES)
async def test_no_page_and_state_makes_a_redirect_loop(kind: str, redis_url: str, state: str) -> None:
    grace = 5 if state == "grace" else 0
    site = Site(kind, redis_url, gate={"policy": bosses, "grace": grace, "step_up": {"/billing/": 60}})
    name = ("boss" if state.startswith(("required", "grace")) else "user") + state.replace("-", "")
    b, _ = await site.new_user(name, enroll=state.endswith(("unverified", "verified")))
    if state.endswith("unverified"):
        await b.logout()
        await b.login(name)
    site.clock.advance(120)  # every proof is stale for the step-up route
    for page in PAGES:
        status, _, visited = await _follow(b, page)
        assert status in (200, 404, 405), (state, page, visited, status)


async def test_a_required_user_cannot_turn_2fa_off_but_support_can(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"policy": bosses})
    boss, _ = await site.new_user("boss2")
    page = await boss.get("/mfa/security")
    assert "data-mfa-required" in page.text and 'action="/mfa/disable"' not in page.text
    r = await boss.post("/mfa/disable", {"csrf_token": csrf_of(page.text), "password": PASSWORD})
    assert r.status_code == 403 and 'data-mfa-status="on"' in r.text
    assert mfa_admin("user", "reset-2fa", "boss2", env_url=redis_url).returncode == 0
    await asyncio.sleep(site.app_gate().confirmed.ttl + 0.1)
    r = await boss.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/mfa/setup"), "enrolls again"


async def test_grace_days_then_setup(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"policy": "required", "grace": 3})
    b, _ = await site.new_user("gus", enroll=False)
    r = await b.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/required?next=/"
    notice = await b.get(r.headers["location"])
    assert notice.status_code == 200 and 'data-days-left="3"' in notice.text and "Set up now" in notice.text
    assert 'href="/mfa/setup?next=/"' in notice.text
    r = await b.get("/")
    assert r.status_code == 200 and r.json()["mfa"]["setup_due"], "told once per session, then let through"
    site.clock.advance(DAY + 60)
    other = site.browser()
    await other.login("gus")
    r = await other.get("/")
    assert r.headers["location"] == "/mfa/required?next=/"
    assert 'data-days-left="2"' in (await other.get("/mfa/required?next=/")).text
    site.clock.advance(2 * DAY)
    await asyncio.sleep(site.app_gate().confirmed.ttl + 0.1)
    r = await b.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/mfa/setup")


async def test_the_policy_hook_is_asked_once_per_ttl_and_async_works(redis_url: str) -> None:
    calls: list[str] = []

    async def policy(identity: str) -> str:
        calls.append(identity)
        return "optional"

    site = Site("asgi", redis_url, gate={"policy": policy})
    b, _ = await site.new_user("ann", enroll=False)
    calls.clear()
    for _ in range(20):
        assert (await b.get("/")).status_code == 200
    assert 1 <= len(calls) <= 2, calls


async def test_a_failing_or_odd_policy_hook_fails_closed(kind: str, redis_url: str) -> None:
    def policy(identity: str) -> str:
        if identity == "odd":
            return "sometimes"
        raise RuntimeError("directory down")

    site = Site(kind, redis_url, gate={"policy": policy})
    for name in ("odd", "broken"):
        b, _ = await site.new_user(name, enroll=False)
        r = await b.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/mfa/setup"), name


async def test_two_instances_see_the_policy_and_a_fresh_verification(kind: str, redis_url: str) -> None:
    staff: set[str] = set()

    def policy(identity: str) -> str:
        return "required" if identity in staff else "optional"

    first = Site(kind, redis_url, gate={"policy": policy, "step_up": {"/billing/": 300}})
    second = Site(kind, redis_url, clock=first.clock, gate={"policy": policy, "step_up": {"/billing/": 300}})
    b, _ = await first.new_user("sam", enroll=False)
    b2 = second.browser()
    await b2.login("sam")
    assert (await b.get("/")).status_code == 200 and (await b2.get("/")).status_code == 200
    staff.add("sam")
    await asyncio.sleep(first.app_gate().confirmed.ttl + 0.1)
    assert (await b.get("/")).status_code == 303 and (await b2.get("/")).status_code == 303

    v, _ = await first.new_user("val")
    first.clock.advance(301)
    r = await v.get("/billing/pay")
    assert r.status_code == 303 and "max_age=300" in r.headers["location"]
    prompt = await v.get(r.headers["location"])
    r = await v.post(r.headers["location"], {"csrf_token": csrf_of(prompt.text), "code": first.code("val")})
    assert r.status_code == 303
    cookies = dict(v.client.cookies)
    other = second.browser()
    for k, val in cookies.items():
        other.client.cookies.set(k, val)
    assert (await other.get("/billing/pay")).status_code == 200, "the other instance sees the fresh proof"


async def test_step_up_routes(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"step_up": {"/billing/": 300}})
    b, _ = await site.new_user("stu")
    assert (await b.get("/billing/pay")).text == "billing GET"
    assert (await b.get("/")).status_code == 200  # the fast lane remembers this session for "/"...
    site.clock.advance(301)
    r = await b.get("/billing/pay")  # ...but never for a step-up route
    assert r.status_code == 303 and r.headers["location"] == "/mfa/verify?next=/billing/pay&max_age=300"
    assert (await b.get("/")).status_code == 200, "other routes do not ask again"
    r = await b.get("/billing/pay", headers={"accept": "application/json"})
    assert r.status_code == 401 and r.json() == {"error": "step_up_required",
                                                 "verify_url": "/mfa/verify?next=/billing/pay&max_age=300",
                                                 "max_age": 300}
    r = await b.post("/billing/pay", {"amount": "10"}, headers={"referer": "http://testserver/billing/form?x=1"})
    assert r.status_code == 401 and "submit the form again" in r.text
    assert "/mfa/verify?next=/billing/form%3Fx%3D1&amp;max_age=300" in r.text
    prompt = await b.get("/mfa/verify?next=/billing/pay&max_age=300")
    assert prompt.status_code == 200 and "Confirm it's you" in prompt.text
    r = await b.post("/mfa/verify?next=/billing/pay&max_age=300", {"csrf_token": csrf_of(prompt.text),
                                                                    "code": site.code("stu")})
    assert r.status_code == 303 and r.headers["location"] == "/billing/pay"
    assert (await b.get("/billing/pay")).text == "billing GET"
    assert (await b.post("/billing/pay", {"amount": "10"})).text == "billing POST"
    # A backup code confirms too.
    site.clock.advance(301)
    page = await b.get("/mfa/verify/backup?next=/billing/pay&max_age=300")
    assert page.status_code == 200 and "Confirm it" in page.text


async def test_require_recent_in_a_handler(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, _ = await site.new_user("rita")
    assert (await b.get("/sensitive")).text == "sensitive ok"
    site.clock.advance(121)
    r = await b.get("/sensitive")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/verify?next=/sensitive&max_age=120"
    assert r.headers["x-frame-options"] == "DENY"
    r = await b.get("/sensitive", headers={"accept": "application/json"})
    assert r.status_code == 401 and r.json()["error"] == "step_up_required" and r.json()["max_age"] == 120
    prompt = await b.get("/mfa/verify?next=/sensitive&max_age=120")
    await b.post("/mfa/verify?next=/sensitive&max_age=120", {"csrf_token": csrf_of(prompt.text),
                                                             "code": site.code("rita")})
    assert (await b.get("/sensitive")).text == "sensitive ok"


async def test_accounts_without_2fa_confirm_with_the_password(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"step_up": {"/billing/": 300}})
    b, _ = await site.new_user("pia", enroll=False)
    r = await b.get("/billing/pay")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/confirm?next=/billing/pay&max_age=300"
    page = await b.get(r.headers["location"])
    assert page.status_code == 200 and "Confirm it's you" in page.text
    wrong = await b.post("/mfa/confirm?next=/billing/pay&max_age=300", {"csrf_token": csrf_of(page.text),
                                                                       "password": "nope"})
    assert wrong.status_code == 401
    r = await b.post("/mfa/confirm?next=/billing/pay&max_age=300", {"csrf_token": csrf_of(page.text),
                                                                   "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/billing/pay"
    assert (await b.get("/billing/pay")).text == "billing GET"
    data: dict[str, Any] = (await b.get("/")).json()["mfa"]
    assert data["reauth_at"] and data["enabled"] is False
    site.clock.advance(301)
    assert (await b.get("/billing/pay")).status_code == 303


def test_bad_options_are_refused() -> None:
    from mfa_middleware.gate import Gate
    from mfa_middleware.store import Keys

    for bad in ({"policy": "sometimes"}, {"policy": 3}, {"step_up": {"billing": 60}}, {"step_up": {"/b/": 0}}):
        with pytest.raises(ValueError):
            Gate(keys=Keys(), secret_key="s" * 32, encryption_keys="e" * 32, **bad)  # type: ignore[arg-type]
    assert json.dumps({"ok": True})
