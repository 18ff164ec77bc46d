"""The examples' admin area (issue 23) through real HTTP: 2FA required of the administrator (Django: staff) and
optional for everyone else, and ``/admin/`` asking for a fresh second factor (a step-up route), in the FastAPI,
Starlette, Flask and Django (WSGI and ASGI) examples; the JSON answers checked with httpx."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from mfa_middleware import totp
from mfa_middleware.config import Settings
from mfa_middleware.store import MemoryStore
from tests.gate_harness import Browser, key_of
from tests.test_frameworks import open_example

STEP_UP = 2  # seconds: DEMO_ADMIN_STEP_UP, so the test sees a session go stale
SETTINGS = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,), demo_seed=True)
ADMIN_PASSWORD = "admin-password"


@dataclass
class Example:
    name: str
    browser: Browser
    login_path: str
    other: tuple[str, str]  # a user of whom 2FA is optional


def _django_users() -> None:
    from django.contrib.auth import get_user_model

    manager = get_user_model()._default_manager
    admin, _ = manager.get_or_create(username="admin")
    admin.is_staff = True
    admin.set_password(ADMIN_PASSWORD)
    admin.save()


@pytest.fixture(params=["fastapi", "starlette", "flask", "django-wsgi", "django-asgi"])
async def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Example]:
    monkeypatch.setenv("DEMO_ADMIN_STEP_UP", str(STEP_UP))
    kind: str = request.param
    async with AsyncExitStack() as stack:
        if kind.startswith("django"):
            request.getfixturevalue("django_ready")
            with ThreadPoolExecutor(1) as pool:
                pool.submit(_django_users).result()
        browser = await open_example(kind, SETTINGS, MemoryStore(), stack)
        login = "/login/" if kind.startswith("django") else "/login"
        other = ("alice", "correct horse battery") if kind.startswith("django") else ("demo", "demo-password")
        yield Example(kind, browser, login, other)


def _token(page: str) -> dict[str, str]:
    m = re.search(r'name="(csrf_token|csrfmiddlewaretoken)" value="([^"]+)"', page)
    assert m, page[:500]
    return {m.group(1): m.group(2)}


async def _log_in(ex: Example, user: str, password: str) -> None:
    ex.browser.client.cookies.clear()
    page = await ex.browser.get(ex.login_path)
    r = await ex.browser.post(ex.login_path + "?next=/", {"username": user, "password": password,
                                                           **_token(page.text)})
    assert r.status_code in (302, 303), r.text[:300]


def _code(seed: str, ahead: int = 0) -> str:
    params = totp.TotpParams()
    return totp.code_at(seed, totp.current_step(time.time(), params) + ahead, params)


async def test_the_admin_area_requires_2fa_of_the_admin_and_a_fresh_proof(example: Example) -> None:
    b = example.browser
    await _log_in(example, "admin", ADMIN_PASSWORD)
    r = await b.get("/admin/")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/setup?next=/admin/"
    r = await b.get("/", headers={"accept": "application/json"})
    assert r.status_code == 403 and r.json() == {"error": "mfa_setup_required", "setup_url": "/mfa/setup?next=/"}
    page = await b.get("/mfa/setup?next=/admin/")
    seed = key_of(page.text)
    r = await b.post("/mfa/setup", {**_token(page.text), "password": ADMIN_PASSWORD, "code": _code(seed)})
    assert r.status_code == 303
    r = await b.get("/admin/")
    assert r.status_code == 200 and "data-admin-area" in r.text
    await asyncio.sleep(STEP_UP + 1.1)
    r = await b.get("/admin/")
    assert r.status_code == 303 and r.headers["location"] == f"/mfa/verify?next=/admin/&max_age={STEP_UP}"
    r = await b.get("/admin/", headers={"accept": "application/json"})
    assert r.status_code == 401 and r.json() == {"error": "step_up_required",
                                                 "verify_url": f"/mfa/verify?next=/admin/&max_age={STEP_UP}",
                                                 "max_age": STEP_UP}
    assert (await b.get("/")).status_code == 200, "the rest of the site does not ask again"
    prompt = await b.get(f"/mfa/verify?next=/admin/&max_age={STEP_UP}")
    assert "Confirm it's you" in prompt.text
    # The enrollment used this step's code; the next step's is within the accepted drift.
    r = await b.post(f"/mfa/verify?next=/admin/&max_age={STEP_UP}", {**_token(prompt.text),
                                                                   "code": _code(seed, ahead=1)})
    assert r.status_code == 303 and r.headers["location"] == "/admin/"
    assert "data-admin-area" in (await b.get("/admin/")).text


async def test_2fa_stays_optional_for_everyone_else(example: Example) -> None:
    b = example.browser
    await _log_in(example, *example.other)
    assert (await b.get("/")).status_code == 200
    r = await b.get("/admin/")  # a step-up route: without 2FA the password is asked again...
    assert r.status_code == 303 and r.headers["location"] == f"/mfa/confirm?next=/admin/&max_age={STEP_UP}"
    page = await b.get(r.headers["location"])
    r = await b.post(f"/mfa/confirm?next=/admin/&max_age={STEP_UP}", {**_token(page.text),
                                                                    "password": example.other[1]})
    assert r.status_code == 303 and r.headers["location"] == "/admin/"
    r = await b.get("/admin/")  # ...and the page itself is the app's to refuse
    assert r.status_code == 403
