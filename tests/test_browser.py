"""A person with a real browser (Debian's chromium through Playwright) walks both demos, each running as a
real process: log in, enable 2FA from the QR code (read by zbarimg off a screenshot) and an oathtool code,
save the backup codes, log out and back in with a code, then with a backup code, regenerate, disable.

Screenshots of every step land in ``test-artifacts/browser/`` (not committed) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.apps import run_demo
from tests.test_peers_totp_qr import oathtool, scan_png

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
USER, PASSWORD = "demo", "demo-password"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def demo_url(module: str) -> Iterator[str]:
    with run_demo(module) as run:
        yield run.url


@pytest.fixture(scope="module")
def starlette_demo() -> Iterator[str]:
    yield from demo_url("examples.demo")


@pytest.fixture(scope="module")
def flask_demo() -> Iterator[str]:
    yield from demo_url("examples.flask_demo")


class Walk:
    """One person on one site, keeping a numbered screenshot of each step."""

    def __init__(self, page: Page, base: str, name: str, phone: bool = False) -> None:
        self.page, self.base, self.name, self.phone, self.n = page, base, name, phone, 0

    def shot(self, step: str) -> Path:
        self.n += 1
        path = ARTIFACTS / f"{self.name}-{self.n:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if self.phone:  # readable on a phone: nothing wider than the screen, so no sideways scrolling
            wide = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{step} is {wide}px wider than the phone screen"
        return path

    def at(self, path: str) -> None:
        expect(self.page).to_have_url(self.base + path)

    def log_in(self) -> None:
        self.page.goto(self.base + "/login")
        self.page.fill("input[name=username]", USER)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")

    def log_out(self) -> None:
        self.page.goto(self.base + "/logout")
        self.page.get_by_role("button", name="Log out").click()
        self.at("/login")

    def scan_qr(self) -> pyotp.TOTP:
        path = ARTIFACTS / f"{self.name}-qr.png"
        self.page.locator("svg").first.screenshot(path=str(path))
        totp = pyotp.parse_uri(scan_png(path))
        assert isinstance(totp, pyotp.TOTP)
        return totp

    def password_form(self, action: str) -> None:
        form = self.page.locator(f"form[action$='{action}']")
        form.locator("input[name=password]").fill(PASSWORD)
        form.locator("button[type=submit]").click()


def walk(browser: Browser, base: str, name: str, viewport: dict[str, int] | None = None) -> None:
    context = browser.new_context(viewport=viewport or {"width": 1024, "height": 768},  # type: ignore[arg-type]
                                  is_mobile=viewport is not None, has_touch=viewport is not None)
    page = context.new_page()
    w = Walk(page, base, name, phone=viewport is not None)
    try:
        _walk(w)
    finally:
        w.shot("last")
        context.close()


def _walk(w: Walk) -> None:
    page = w.page
    page.goto(w.base + "/")
    w.at("/login?next=/")
    w.shot("login")
    w.log_in()
    w.at("/")
    w.shot("home")

    # Security page: 2FA is off; enable it.
    page.get_by_role("link", name="Security").click()
    w.at("/mfa/security")
    expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "off")
    w.shot("security-off")
    page.get_by_role("link", name="Enable Two-Factor Authentication").click()
    w.at("/mfa/setup")
    w.shot("setup")
    totp = w.scan_qr()
    shown_key = page.locator("[data-totp-key]").inner_text()
    assert totp.secret == shown_key.replace(" ", "")
    assert totp.issuer == "mfa-ddns" and totp.name == USER
    now_code, next_code = oathtool(totp.secret, "--totp", "-w", "1")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=code]", now_code)
    page.get_by_role("button", name="Enable Two-Factor Authentication").click()

    # Backup codes, shown once; a person saves them (and may print them).
    w.at("/mfa/backup-codes")
    codes = page.locator("[data-backup-code]").evaluate_all("els => els.map(e => e.dataset.backupCode)")
    assert len(codes) == 10 and len(set(codes)) == 10
    w.shot("backup-codes")
    page.emulate_media(media="print")
    w.shot("backup-codes-print")
    page.emulate_media(media="screen")
    page.reload()
    assert page.locator("[data-backup-code]").count() == 0  # never shown again
    w.log_out()

    # Log in again: the verify prompt wants a code. The enrollment used this step; the app's next code is
    # inside the ±1 step window, so it works without waiting for the clock.
    w.log_in()
    expect(page).to_have_url(w.base + "/mfa/verify?next=/")
    w.shot("verify")
    page.fill("input[name=code]", now_code)
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".error")).to_contain_text("already used")
    w.shot("verify-replayed")
    page.fill("input[name=code]", next_code)
    page.get_by_role("button", name="Verify").click()
    w.at("/")
    w.shot("home-verified")
    w.log_out()

    # Lost phone: log in with a backup code.
    w.log_in()
    page.get_by_role("link", name="Use Backup Code").click()
    expect(page).to_have_url(w.base + "/mfa/verify/backup?next=/")
    w.shot("verify-backup")
    page.fill("input[name=backup_code]", codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("[data-backup-codes-left]")).to_have_attribute("data-backup-codes-left", "9")
    w.shot("backup-used")
    page.get_by_role("link", name="Continue").click()
    w.at("/")

    # Regenerate, then disable, from the security page.
    page.get_by_role("link", name="Security").click()
    expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "on")
    expect(page.locator("[data-mfa-status]")).to_contain_text("9 backup codes left")
    w.shot("security-on")
    w.password_form("/regenerate")
    w.at("/mfa/backup-codes")
    fresh = page.locator("[data-backup-code]").evaluate_all("els => els.map(e => e.dataset.backupCode)")
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    w.shot("regenerated")
    page.get_by_role("link", name="Continue to Security").click()
    expect(page.locator("[data-mfa-status]")).to_contain_text("10 backup codes left")
    w.password_form("/disable")
    expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "off")
    w.shot("disabled")
    w.log_out()
    w.log_in()
    w.at("/")  # no second factor any more


def test_browser_walk_starlette_demo(browser: Browser, starlette_demo: str) -> None:
    walk(browser, starlette_demo, "starlette")


def test_browser_walk_flask_demo(browser: Browser, flask_demo: str) -> None:
    walk(browser, flask_demo, "flask")


def test_browser_walk_phone_width(browser: Browser, starlette_demo: str) -> None:
    """The same walk on a 390 px wide phone; nothing may need sideways scrolling."""
    walk(browser, starlette_demo, "phone", PHONE)
