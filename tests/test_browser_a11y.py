"""Accessibility and languages in a real browser (issue 25): Debian's chromium through Playwright on the Starlette
and Flask demos, each a real process, one browser and one process per demo for the whole module.

- axe-core (axe-playwright-python, offline) with the WCAG 2.0/2.1/2.2 A and AA rules over every page state of
  the gate (security off and on, security question, setup, backup codes, verify, backup code, backup code used,
  the passkey page, not found, and each error) and the owner page (and its error), in English, German and
  Arabic: 0 violations. German and Arabic run on a 320 px wide screen (400% zoom of a 1280 px window), where
  nothing may scroll sideways; every page says its language and direction; an error's title starts with
  "Error:" in the page's language and focus starts on the field the error is about (or on the error).
- A keyboard-only walk: enrol, verify, use a backup code, disable, with Tab, Enter and typing only, the focus
  ring visible on every stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.apps import run_demo
from tests.test_browser import ARTIFACTS, PASSWORD, USER, browser  # noqa: F401  (the module's chromium)

DEMOS = {"starlette": "examples.demo", "flask": "examples.flask_demo"}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
LANGS = {"en": ("ltr", "Error:", {"width": 1024, "height": 768}),
         "de": ("ltr", "Fehler:", {"width": 320, "height": 640}),
         "ar": ("rtl", "خطأ:", {"width": 320, "height": 640})}
AXE = Axe()


@pytest.fixture(scope="module", params=list(DEMOS))
def demo(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with run_demo(DEMOS[request.param]) as run:
        yield request.param, run.url


class Visit:
    """One person in one language on one demo: each state is checked where it stands."""

    def __init__(self, page: Page, base: str, name: str, lang: str) -> None:
        self.page, self.base, self.name, self.lang = page, base, name, lang
        self.direction, self.error_word, viewport = LANGS[lang]
        self.narrow = viewport["width"] <= 320
        self.checked: list[str] = []

    def check(self, state: str, *, gate_page: bool = True, error: bool = False) -> None:
        page = self.page
        results = AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG}, "resultTypes": ["violations"]})
        if results.violations_count:
            page.screenshot(path=str(ARTIFACTS / f"a11y-{self.name}-{self.lang}-{state}.png"), full_page=True)
        assert results.violations_count == 0, f"{self.name} {self.lang} {state}:\n{results.generate_report()}"
        if gate_page:
            html = page.locator("html")
            expect(html).to_have_attribute("lang", self.lang)
            expect(html).to_have_attribute("dir", self.direction)
        if self.narrow:
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{self.name} {self.lang} {state} scrolls {wide}px sideways at 320px"
        if error:
            assert page.title().startswith(self.error_word), page.title()
            # Autofocus (or gate.js) runs as the page settles: wait for it, briefly.
            page.wait_for_function("document.activeElement && (document.activeElement.getAttribute('aria-invalid')"
                                   " === 'true' || document.activeElement.id === 'error')", timeout=3000)
        self.checked.append(state)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def form(self, action: str, **fields: str) -> None:
        form = self.page.locator(f"form[action*='{action}']").first
        for name, value in fields.items():
            form.locator(f"input[name={name}]").fill(value)
        form.locator("button[type=submit]").click()
        self.page.wait_for_load_state()

    def log_in(self) -> None:
        self.go("/login")
        self.page.fill("input[name=username]", USER)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def log_out(self) -> None:
        self.go("/logout")
        self.page.locator("form[action='/logout'] button").click()
        expect(self.page).to_have_url(self.base + "/login")


def next_code(totp: pyotp.TOTP) -> str:
    return totp.at(time.time() + totp.interval)  # inside the ±1 step window, unused by the enrolment


def walk_states(v: Visit) -> None:
    page = v.page
    v.go("/login")
    v.check("login", gate_page=False)
    v.log_in()
    v.go("/mfa/security")
    v.check("security-off")
    v.go("/mfa/security-question")
    v.check("security-question")
    v.form("/security-question", question="First pet?", answer="Rex", password="wrong")
    v.check("security-question-error", error=True)
    expect(page.locator("input[name=question]")).to_have_value("First pet?")  # what was typed is kept
    v.go("/mfa/nothing-here")
    v.check("not-found")
    v.go("/mfa/passkeys")
    v.check("passkeys")

    v.go("/mfa/setup")
    v.check("setup")
    key = page.locator("[data-totp-key]").inner_text().replace(" ", "")
    totp = pyotp.TOTP(key)
    v.form("/setup", password=PASSWORD, code="000000")
    v.check("setup-error", error=True)
    v.form("/setup", password=PASSWORD, code=totp.now())
    expect(page).to_have_url(v.base + "/mfa/backup-codes")
    codes = page.locator("[data-backup-code]").evaluate_all("els => els.map(e => e.dataset.backupCode)")
    assert len(codes) == 10
    v.check("backup-codes")
    v.go("/mfa/security")
    v.check("security-on")
    v.form("/disable", password="wrong")
    v.check("disable-error", error=True)

    v.go("/account")
    v.check("account")
    v.form("/account/create", group="home", hosts="demo.example.test", password="wrong")
    v.check("account-error", error=True)
    v.form("/account/create", group="home", hosts="demo.example.test", password=PASSWORD)
    v.check("account-created")
    v.form("/account/delete")

    v.log_out()
    v.log_in()
    expect(page).to_have_url(v.base + "/mfa/verify?next=/")
    v.check("verify")
    v.form("/verify", code="000000")
    v.check("verify-error", error=True)
    v.form("/verify", code=next_code(totp))
    expect(page).to_have_url(v.base + "/")
    v.log_out()
    v.log_in()
    v.go("/mfa/verify/backup?next=/")
    v.check("verify-backup")
    v.form("/verify/backup", backup_code="nope-nope")
    v.check("verify-backup-error", error=True)
    v.form("/verify/backup", backup_code=codes[0])
    expect(page.locator("[data-backup-codes-left]")).to_have_attribute("data-backup-codes-left", "9")
    v.check("backup-used")
    v.go("/mfa/security")
    v.form("/disable", password=PASSWORD)
    expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "off")
    v.check("disabled-notice")
    v.log_out()


@pytest.mark.parametrize("lang", list(LANGS))
def test_axe_finds_nothing_on_any_page_state(browser: Browser, demo: tuple[str, str], lang: str) -> None:  # noqa: F811
    name, base = demo
    _, _, viewport = LANGS[lang]
    context = browser.new_context(viewport=viewport,  # type: ignore[arg-type]
                                  extra_http_headers={"accept-language": lang}, locale=lang)
    visit = Visit(context.new_page(), base, name, lang)
    try:
        walk_states(visit)
    finally:
        context.close()
    assert len(visit.checked) == 20


# -- keyboard only --------------------------------------------------------------------------------------
def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until ``selector`` has focus (as a keyboard user would), checking the focus ring each step."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        state: dict[str, Any] = page.evaluate(
            """sel => { const el = document.activeElement; if (!el || el === document.body) return {at: false};
                 const s = getComputedStyle(el);
                 return {at: el.matches(sel), ring: s.outlineStyle !== 'none' && s.outlineWidth !== '0px'}; }""",
            selector)
        if state.get("at"):
            assert state["ring"], f"no visible focus on {selector}"
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


def enter(page: Page) -> None:
    """Enter on a link or in a form: the next page is loaded before the next key."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


def keyboard_log_in(page: Page, base: str) -> None:
    page.goto(base + "/login")
    expect(page.locator("input[name=username]")).to_be_focused()  # the login form starts focused
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    enter(page)


def keyboard_log_out(page: Page, base: str) -> None:
    page.goto(base + "/logout")
    tab_to(page, "form[action='/logout'] button")
    enter(page)
    expect(page).to_have_url(base + "/login")


@pytest.mark.parametrize("demo", ["starlette"], indirect=True)  # one walk: the pages are the same on every adapter
def test_keyboard_only_enrol_verify_backup_code_disable(browser: Browser, demo: tuple[str, str]) -> None:  # noqa: F811
    _, base = demo
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    try:
        keyboard_log_in(page, base)
        tab_to(page, "a[href='/mfa/security']")
        enter(page)
        expect(page).to_have_url(base + "/mfa/security")
        tab_to(page, "a[href$='/mfa/setup']")
        enter(page)
        expect(page).to_have_url(base + "/mfa/setup")
        totp = pyotp.TOTP(page.locator("[data-totp-key]").inner_text().replace(" ", ""))
        tab_to(page, "#password")
        page.keyboard.type(PASSWORD)
        tab_to(page, "#code")
        page.keyboard.type(totp.now())
        enter(page)
        expect(page).to_have_url(base + "/mfa/backup-codes")
        codes = page.locator("[data-backup-code]").evaluate_all("els => els.map(e => e.dataset.backupCode)")
        tab_to(page, "a.button[href$='/mfa/security']")
        enter(page)
        expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "on")
        keyboard_log_out(page, base)

        keyboard_log_in(page, base)
        expect(page).to_have_url(base + "/mfa/verify?next=/")
        expect(page.locator("#code")).to_be_focused()  # the prompt starts on its field
        page.keyboard.type("000000")
        enter(page)
        expect(page.locator("#error")).to_be_visible()
        expect(page.locator("#code")).to_be_focused()  # back on the field the error is about
        expect(page.locator("#code")).to_have_attribute("aria-describedby", "error")
        expect(page.locator("#code")).to_have_attribute("aria-invalid", "true")
        page.keyboard.press("Control+a")
        page.keyboard.type(next_code(totp))
        enter(page)
        expect(page).to_have_url(base + "/")
        keyboard_log_out(page, base)

        keyboard_log_in(page, base)
        tab_to(page, "a[href*='/mfa/verify/backup']")
        enter(page)
        expect(page).to_have_url(base + "/mfa/verify/backup?next=/")
        expect(page.locator("#backup_code")).to_be_focused()
        page.keyboard.type(codes[0])
        enter(page)
        expect(page.locator("[data-backup-codes-left]")).to_have_attribute("data-backup-codes-left", "9")
        tab_to(page, "a.button")
        enter(page)
        expect(page).to_have_url(base + "/")

        tab_to(page, "a[href='/mfa/security']")
        enter(page)
        tab_to(page, "#disable-password")
        page.keyboard.type(PASSWORD)
        enter(page)
        expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "off")
        expect(page.locator("[role=status]")).to_be_visible()
        keyboard_log_out(page, base)
    finally:
        page.screenshot(path=str(ARTIFACTS / "a11y-keyboard-last.png"), full_page=True)
        context.close()


def test_axe_here_does_report_violations(browser: Browser) -> None:  # noqa: F811
    """The harness itself: the same axe run on a page with known faults does not say 0."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.set_content('<html><body><img src="x.png"><input><button style="color:#777;background:#888">'
                         "Go</button></body></html>")
        results = AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG}, "resultTypes": ["violations"]})
        rules = {v["id"] for v in results.response["violations"]}
        assert {"image-alt", "label", "color-contrast", "html-has-lang"} <= rules, rules
    finally:
        context.close()
