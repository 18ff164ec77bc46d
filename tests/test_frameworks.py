"""The gate in real frameworks' examples: FastAPI (``add_middleware``), the Starlette demo, and one Django project
(Django's own sessions and auth as the identity source) under WSGI and under ASGI.

Each drives, through real HTTP (httpx's ASGI/WSGI transports into the real app), login → 2FA enrollment →
log out → login → the verify prompt → the protected page, and a router's ``good`` from ``/nic/update`` mounted
beside the site.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ddns_update.hosts import Hosts
from mfa_middleware import totp
from mfa_middleware.accounts import Accounts
from mfa_middleware.config import Settings
from mfa_middleware.identity import django_session
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import MemoryStore, open_store
from tests.gate_harness import Browser, key_of
from tests.test_peers_totp_qr import scan_qr, svg_of

PASSWORD = "correct horse battery"
HOST = "alice.example.test"
AGENT = {"user-agent": "framework-test/1.0 ops@example.test"}
SETTINGS = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,), demo_seed=False)


@dataclass
class Site:
    name: str
    browser: Browser
    login_path: str  # where the site's own login form lives
    logout_path: str
    login_id: str  # what the authenticator app should show as the account

    def home_says(self, page: httpx.Response, how: str) -> bool:
        """The home page greets alice; the examples written here also say how she signed in."""
        marked = self.name == "starlette" or f'data-signed-in-with="{how}"' in page.text
        return page.status_code == 200 and "Hello, alice" in page.text and marked


def _seed_update_account(memory: MemoryStore, username: str) -> str:
    """An update-endpoint account owning HOST (the gate's account store, shared with /nic/update)."""
    store = open_store(None, memory=memory)
    account = store.run(Accounts(store.keys, PasswordHasher(FAST)).create(username, PASSWORD))
    store.run(Hosts(store.keys).add(account.id, [HOST]))
    return account.id


@pytest.fixture(params=["fastapi", "starlette", "django-wsgi", "django-asgi"])
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    memory = MemoryStore()
    kind: str = request.param
    async with AsyncExitStack() as stack:
        if kind.startswith("django"):
            request.getfixturevalue("django_ready")
        browser = await open_example(kind, SETTINGS, memory, stack)
        if kind.startswith("django"):
            _seed_update_account(memory, "router")
            yield Site(kind, browser, "/login/", "/logout/", "alice")
        else:
            _seed_update_account(memory, "alice")
            yield Site(kind, browser, "/login", "/logout", "alice")


async def open_example(kind: str, settings: Settings, memory: MemoryStore, stack: AsyncExitStack) -> Browser:
    """One of the example sites (fastapi, starlette, flask, django-wsgi, django-asgi) on ``memory``, with a
    browser talking to it through httpx's ASGI or WSGI transport; both closed with ``stack``."""
    app: Any
    if kind == "fastapi":
        from examples.fastapi_demo import create_app

        app = create_app(settings, memory, argon2_profile=FAST)
    elif kind == "starlette":
        from examples.demo import create_app as create_starlette

        app = create_starlette(settings, memory)
    elif kind == "flask":
        from examples.flask_demo import create_app as create_flask

        app = create_flask(settings, memory, argon2_profile=FAST)
    elif kind == "django-wsgi":
        from examples.django_site.wsgi import create_app as create_wsgi

        app = create_wsgi(settings, memory, argon2_profile=FAST)
    else:
        from examples.django_site.asgi import create_app as create_asgi

        app = create_asgi(settings, memory, argon2_profile=FAST)
    if kind in ("flask", "django-wsgi"):
        client: Any = stack.enter_context(httpx.Client(transport=httpx.WSGITransport(app=app),
                                                       base_url="http://testserver"))
        return Browser("wsgi", client)
    if kind in ("fastapi", "starlette"):
        await stack.enter_async_context(app.router.lifespan_context(app))
    client = await stack.enter_async_context(httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                               base_url="http://testserver"))
    return Browser("asgi", client)


def _token(page: str) -> dict[str, str]:
    """The hidden CSRF field of a form, whichever name the framework gives it."""
    m = re.search(r'name="(csrf_token|csrfmiddlewaretoken)" value="([^"]+)"', page)
    assert m, page[:500]
    return {m.group(1): m.group(2)}


async def _log_in(site: Site) -> None:
    b = site.browser
    page = await b.get(site.login_path)
    assert page.status_code == 200
    r = await b.post(site.login_path + "?next=/", {"username": "alice", "password": PASSWORD, **_token(page.text)})
    assert r.status_code in (302, 303) and r.headers["location"] == "/", r.text[:500]


async def _log_out(site: Site) -> None:
    b = site.browser
    page = await b.get("/" if site.name.startswith("django") else site.logout_path)
    r = await b.post(site.logout_path, _token(page.text))
    assert r.status_code in (302, 303)
    r = await b.get("/")
    assert r.status_code in (302, 303) and site.login_path in r.headers["location"]


def _code(seed: str, ahead: int = 0) -> str:
    params = totp.TotpParams()
    return totp.code_at(seed, totp.current_step(time.time(), params) + ahead, params)


async def test_login_2fa_protected_page_and_update_beside_it(site: Site) -> None:
    b = site.browser
    r = await b.get("/")
    assert r.status_code in (302, 303) and site.login_path in r.headers["location"]
    await _log_in(site)
    r = await b.get("/")
    assert site.home_says(r, "password")  # 2FA is optional until enabled

    # Enrollment through the gate's pages; the QR code names the account as its owner knows it.
    r = await b.get("/mfa/setup")
    assert r.status_code == 200
    seed = key_of(r.text)
    scanned = scan_qr(svg_of(r.text))
    assert f"otpauth://totp/mfa-ddns:{site.login_id}?" in scanned and f"secret={seed}" in scanned
    r = await b.post("/mfa/setup", {**_token(r.text), "password": "not it", "code": _code(seed)})
    assert r.status_code == 401  # the site's own password store was asked
    r = await b.post("/mfa/setup", {**_token(r.text), "password": PASSWORD, "code": _code(seed)})
    assert r.status_code == 303 and r.headers["location"] == "/mfa/backup-codes", r.text[:500]
    codes = re.findall(r'data-backup-code="([^"]+)"', (await b.get("/mfa/backup-codes")).text)
    assert len(codes) == 10
    await _log_out(site)

    # The framework's login alone no longer reaches the protected page.
    await _log_in(site)
    r = await b.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/verify?next=/"
    r = await b.get("/", headers={"accept": "application/json"})
    assert r.status_code == 401 and r.json()["error"] == "mfa_required"
    # ... but /nic/checkip is the routers' and scripts', not a page of the site: no second factor asked.
    r = await b.get("/nic/checkip", headers={"accept": "text/plain"})
    assert (r.status_code, r.text) == (200, "127.0.0.1")
    page = await b.get("/mfa/verify?next=/")
    r = await b.post("/mfa/verify?next=/", {**_token(page.text), "code": _code(seed, ahead=1)})
    assert r.status_code == 303 and r.headers["location"] == "/"
    r = await b.get("/")
    assert site.home_says(r, "2fa")

    # A router beside the site: HTTP Basic, exempt from the gate.
    login = "router" if site.name.startswith("django") else "alice"
    r = await b.get(f"/nic/update?hostname={HOST}&myip=192.0.2.7", auth=(login, PASSWORD), headers=AGENT)
    assert (r.status_code, r.text) == (200, "good 192.0.2.7\n")
    r = await b.get(f"/nic/update?hostname={HOST}&myip=192.0.2.7", auth=(login, "wrong"), headers=AGENT)
    assert (r.status_code, r.text.strip()) == (401, "badauth")


async def test_django_identity_follows_djangos_own_logout_and_password_change(django_ready: None) -> None:
    """Django's session hash check: a password change elsewhere ends the session, and the gate sees nobody."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from examples.django_site.asgi import create_app

    app = create_app(SETTINGS, MemoryStore(), argon2_profile=FAST)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        users = get_user_model()._default_manager
        await sync_to_async(users.create_user)(username="bob", password=PASSWORD)
        page = await c.get("/login/")
        r = await c.post("/login/?next=/", data={"username": "bob", "password": PASSWORD, **_token(page.text)})
        assert r.status_code == 303
        assert (await c.get("/mfa/security")).status_code == 200
        # The one hook answers under both handlers: directly for a WSGI environ, awaitably for an ASGI scope.
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        bob = await sync_to_async(users.get)(username="bob")
        hook = django_session()
        assert await hook({"type": "http", "headers": [(b"cookie", cookie.encode())]}) == str(bob.pk)
        assert await sync_to_async(hook)({"HTTP_COOKIE": cookie}) == str(bob.pk)
        assert await sync_to_async(hook)({"HTTP_COOKIE": "sessionid=forged"}) is None

        def change() -> None:
            user = users.get(username="bob")
            user.set_password("another password!")
            user.save()

        await sync_to_async(change)()
        r = await c.get("/mfa/security")
        assert r.status_code in (302, 303) and r.headers["location"].startswith("/login")


async def test_django_repeated_session_cookie_cannot_split_app_and_gate(django_ready: None) -> None:
    """As tests/test_gate_security.py's probe, against Django under ASGI: the victim's password-only session and
    the attacker's verified one in one Cookie header, in either order, never show the victim's page."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from examples.django_site.asgi import create_app

    users = get_user_model()._default_manager
    for name in ("vic", "mal"):
        await sync_to_async(users.create_user)(username=name, password=PASSWORD)
    app = create_app(SETTINGS, MemoryStore(), argon2_profile=FAST)

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    async def log_in(c: httpx.AsyncClient, name: str) -> None:
        page = await c.get("/login/")
        r = await c.post("/login/?next=/", data={"username": name, "password": PASSWORD, **_token(page.text)})
        assert r.status_code in (302, 303), r.text[:300]

    async def enroll(c: httpx.AsyncClient) -> None:
        page = await c.get("/mfa/setup")
        form = {**_token(page.text), "password": PASSWORD, "code": _code(key_of(page.text))}
        r = await c.post("/mfa/setup", data=form)
        assert r.status_code == 303, r.text[:300]

    async with client() as victim_before, client() as victim, client() as attacker, client() as probe:
        await log_in(victim_before, "vic")
        await enroll(victim_before)  # the victim has 2FA on
        await log_in(victim, "vic")  # someone with the victim's password only
        assert (await victim.get("/")).status_code == 303  # asked for the victim's code
        await log_in(attacker, "mal")
        await enroll(attacker)  # ... and a verified session of their own
        assert "Hello, mal" in (await attacker.get("/")).text
        theirs, mine = victim.cookies["sessionid"], attacker.cookies["sessionid"]
        ticket = attacker.cookies["mfa_session"]
        for first, second in ((theirs, mine), (mine, theirs)):
            r = await probe.get("/", headers={"Cookie": f"sessionid={first}; sessionid={second}; mfa_session={ticket}"})
            assert not (r.status_code == 200 and "Hello, vic" in r.text), (first == theirs, r.status_code)
