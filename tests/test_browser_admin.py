"""The examples' admin area in a real browser (Debian's chromium through Playwright), on the Starlette, FastAPI,
Flask and Django demos running as real processes: the administrator (Django: staff) must set up 2FA before
anything else, reaches /admin/ right after, is asked "Confirm it's you" once the proof is older than the area
allows and comes back to /admin/ after the code; a user of whom 2FA is optional is asked for the password."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from examples.demo import ADMIN_PASSWORD, ADMIN_USER, DEMO_PASSWORD, DEMO_USER
from tests.apps import run_demo
from tests.test_browser import ARTIFACTS, browser  # noqa: F401  (the module's chromium)

STEP_UP = 3  # DEMO_ADMIN_STEP_UP: seconds the admin area accepts a proof
DEMOS = {"starlette": ("examples.demo", "/login"), "fastapi": ("examples.fastapi_demo", "/login"),
         "flask": ("examples.flask_demo", "/login"),
         "django": ("examples.django_site", "/login/")}


@pytest.fixture(scope="module", params=list(DEMOS))
def demo(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEMO_ADMIN_STEP_UP", str(STEP_UP))
        with run_demo(DEMOS[request.param][0]) as run:
            yield request.param, run.url


def _log_in(page: Page, base: str, login_path: str, user: str, password: str, then: str = "/") -> None:
    page.context.clear_cookies()
    page.goto(f"{base}{login_path}?next={then}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_admin_area_walk(browser: Browser, demo: tuple[str, str]) -> None:  # noqa: F811
    name, base = demo
    login_path = DEMOS[name][1]
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    try:
        _log_in(page, base, login_path, ADMIN_USER, ADMIN_PASSWORD, "/admin/")
        expect(page).to_have_url(re.compile(re.escape(base) + r"/mfa/setup\?next=/admin/"))
        key = page.locator("[data-totp-key]").inner_text().replace(" ", "")
        totp = pyotp.TOTP(key)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.fill("input[name=code]", totp.now())
        page.get_by_role("button", name=re.compile("Enable|Verify|Turn on", re.I)).click()
        expect(page).to_have_url(base + "/mfa/backup-codes")
        page.goto(base + "/admin/")
        expect(page.locator("[data-admin-area]")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / f"admin-{name}-area.png"), full_page=True)

        time.sleep(STEP_UP + 1)
        page.goto(base + "/admin/")
        expect(page).to_have_url(re.compile(re.escape(base) + r"/mfa/verify\?next=/admin/&max_age=" + str(STEP_UP)))
        expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
        page.screenshot(path=str(ARTIFACTS / f"admin-{name}-confirm.png"), full_page=True)
        page.fill("input[name=code]", totp.at(time.time() + 30))  # the enrollment used this step's code
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(base + "/admin/")
        expect(page.locator("[data-admin-area]")).to_be_visible()

        if name != "django":  # the Django demo's other user is a Django user of its own: shown in test_examples
            _log_in(page, base, login_path, DEMO_USER, DEMO_PASSWORD)
            expect(page).to_have_url(base + "/")  # 2FA is optional for everyone else
            page.goto(base + "/admin/")
            expect(page).to_have_url(re.compile(re.escape(base) + r"/mfa/confirm\?next=/admin/"))
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.get_by_role("button", name="Confirm").click()
            expect(page).to_have_url(base + "/admin/")
            expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    finally:
        context.close()
