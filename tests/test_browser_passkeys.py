"""Passkeys in a real browser: Debian's chromium through Playwright, with the Chrome DevTools Protocol's virtual
authenticator (ctap2, internal transport, resident keys, user verification) standing in for a phone's or a
laptop's passkey, on the Starlette, Flask and Django demos, each a real process on the embedded store.

One walk per demo, on its seeded account: add a passkey from the security page (2FA turns on, the backup codes
are shown), log out, log in and pass the gate with it (a passkeys-only account starts at the passkey prompt);
a captured assertion replayed by another session is refused; a second passkey from a second authenticator;
an authenticator app beside the passkeys (both offered at the prompt); a credential whose sign count goes back
is refused; remove one passkey (password); disable. And per demo, under user_verification="required", an
authenticator that does not verify the user is refused. Screenshots land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from tests.apps import run_demo
from tests.test_browser import ARTIFACTS, PASSWORD, USER, browser  # noqa: F401  (the module's chromium)

DEMOS = {"starlette": ("examples.demo", "/login", "/logout"),
         "flask": ("examples.flask_demo", "/login", "/logout"),
         "django": ("examples.django_site", "/login/", "/logout/")}


def local(url: str) -> str:
    # WebAuthn wants a domain as RP id (never an IP address) in a secure context: http://localhost is one.
    return url.replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module", params=list(DEMOS))
def demo(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    module = DEMOS[request.param][0]
    with run_demo(module) as run:
        yield request.param, local(run.url)


@pytest.fixture(scope="module", params=list(DEMOS))
def strict_demo(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The same demo with ``webauthn_user_verification="required"`` (set from the environment)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFA_WEBAUTHN_USER_VERIFICATION", "required")
        with run_demo(DEMOS[request.param][0]) as run:
            mp.delenv("MFA_WEBAUTHN_USER_VERIFICATION")
            yield request.param, local(run.url)


class Person:
    """One person with one browser and a virtual authenticator on one demo."""

    def __init__(self, chromium: Browser, name: str, base: str) -> None:
        self.name, self.base = name, base
        self.context: BrowserContext = chromium.new_context(viewport={"width": 1024, "height": 768})
        self.page: Page = self.context.new_page()
        self.cdp: CDPSession = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        self.n = 0
        _, self.login_path, self.logout_path = DEMOS[name]

    def authenticator(self, verified: bool = True) -> str:
        options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                   "hasUserVerification": True, "isUserVerified": verified, "automaticPresenceSimulation": True}
        return str(self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"])

    def remove_authenticator(self, auth: str) -> None:
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": auth})

    def credentials(self, auth: str) -> list[dict[str, Any]]:
        return list(self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": auth})["credentials"])

    def shot(self, step: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(ARTIFACTS / f"passkeys-{self.name}-{self.n:02d}-{step}.png"), full_page=True)

    def at(self, path: str) -> None:
        expect(self.page).to_have_url(self.base + path)

    def log_in(self) -> None:
        self.page.goto(self.base + self.login_path)
        self.page.fill("input[name=username]", USER)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")

    def log_out(self) -> None:
        self.page.goto(self.base + "/")
        if self.name == "django":
            self.page.get_by_role("button", name="Log out").click()
        else:
            self.page.goto(self.base + self.logout_path)
            self.page.get_by_role("button", name="Log out").click()
        self.at(self.login_path)

    def add_passkey(self, name: str) -> None:
        self.page.goto(self.base + "/mfa/security")
        self.page.get_by_role("link", name="Manage passkeys").click()
        self.at("/mfa/passkeys")
        self.page.fill("input[name=name]", name)
        self.page.get_by_role("button", name="Add a passkey").click()

    def use_passkey(self) -> None:
        self.page.get_by_role("button", name="Use a passkey").click()

    def passkey_count(self) -> str | None:
        self.page.goto(self.base + "/mfa/passkeys")
        return self.page.locator("[data-passkey-count]").first.get_attribute("data-passkey-count")

    def close(self) -> None:
        self.context.close()


def test_passkeys_walk(browser: Browser, demo: tuple[str, str]) -> None:  # noqa: F811
    name, base = demo
    me = Person(browser, name, base)
    try:
        _walk(me)
    finally:
        me.shot("last")
        me.close()


def _walk(me: Person) -> None:
    page = me.page
    first = me.authenticator()
    me.log_in()
    me.at("/")

    # Add a passkey from the security page: it turns 2FA on, so the backup codes come next, once.
    me.add_passkey("Laptop")
    me.at("/mfa/backup-codes")
    codes = page.locator("[data-backup-code]").evaluate_all("els => els.map(e => e.dataset.backupCode)")
    assert len(codes) == 10
    me.shot("codes")
    assert len(me.credentials(first)) == 1
    page.goto(me.base + "/mfa/security")
    expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "on")
    assert me.passkey_count() == "1"
    expect(page.locator("[data-passkey-name]")).to_have_text("Laptop")
    me.shot("passkeys")
    me.log_out()

    # Passkeys only: the prompt is the passkey one (no code field); the passkey passes the gate. The answer the
    # page posts is captured on its way.
    captured: list[str] = []
    page.on("request", lambda r: captured.append(r.post_data or "")
            if r.url.split("?")[0].endswith("/passkeys/authenticate") else None)
    me.log_in()
    expect(page).to_have_url(me.base + "/mfa/verify?next=/")
    assert page.locator("input[name=code]").count() == 0
    me.shot("verify-passkey-only")
    me.use_passkey()
    me.at("/")
    me.shot("home-verified")
    assert len(captured) == 1
    me.log_out()

    # The captured answer, replayed by a new session (its own CSRF token): refused, the gate stays shut.
    me.log_in()
    expect(page).to_have_url(me.base + "/mfa/verify?next=/")
    token = page.locator("input[name=csrf_token]").first.input_value()
    replay = "&".join(p if not p.startswith("csrf_token=") else f"csrf_token={token}" for p in captured[0].split("&"))
    answer = page.request.post(me.base + "/mfa/passkeys/authenticate", data=replay,
                               headers={"content-type": "application/x-www-form-urlencoded",
                                        "accept": "application/json"})
    assert answer.status == 401, answer.text()
    page.goto(me.base + "/")
    expect(page).to_have_url(me.base + "/mfa/verify?next=/")

    # A second passkey, on a second authenticator (the first is put away meanwhile, as a phone in a pocket).
    me.use_passkey()
    me.at("/")
    saved = me.credentials(first)
    me.remove_authenticator(first)
    second = me.authenticator()
    me.add_passkey("Security key")
    me.at("/mfa/passkeys")
    expect(page.locator("[data-passkey-count]")).to_have_attribute("data-passkey-count", "2")
    me.shot("two-passkeys")

    # An authenticator app beside the passkeys: the backup codes stay, and the prompt offers both.
    page.goto(me.base + "/mfa/security")
    page.get_by_role("link", name="Set up an authenticator app").click()
    me.at("/mfa/setup")
    totp = pyotp.TOTP(page.locator("[data-totp-key]").inner_text().replace(" ", ""))
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=code]", totp.now())
    page.get_by_role("button", name="Enable Two-Factor Authentication").click()
    expect(page.locator("[role=status]")).to_contain_text("authenticator app is set up")
    me.log_out()
    me.log_in()
    expect(page.locator("input[name=code]")).to_be_visible()
    expect(page.get_by_role("button", name="Use a passkey")).to_be_visible()
    me.shot("verify-both")
    me.use_passkey()  # the second authenticator's passkey
    me.at("/")
    me.log_out()

    # The first passkey back, with its sign count rewound (a clone): refused.
    me.remove_authenticator(second)
    first = me.authenticator()
    cred = dict(saved[0])
    assert cred["signCount"] >= 1, cred
    cred["signCount"] = 0
    me.cdp.send("WebAuthn.addCredential", {"authenticatorId": first, "credential": cred})
    me.log_in()
    me.use_passkey()
    expect(page.locator("[data-passkey-status]")).to_contain_text("counter went back")
    me.shot("clone-refused")
    page.goto(me.base + "/")
    expect(page).to_have_url(me.base + "/mfa/verify?next=/")
    page.goto(me.base + "/mfa/verify")
    page.fill("input[name=code]", totp.at(time.time() + 30))  # enrolling used this step: the next is in the window
    page.get_by_role("button", name="Verify").click()
    me.at("/")

    # Remove the first passkey (password asked), then turn 2FA off: the other passkey goes with it.
    page.goto(me.base + "/mfa/passkeys")
    item = page.locator(f"[data-passkey-id='{cred['credentialId'].rstrip('=').replace('+', '-').replace('/', '_')}']")
    item.locator("input[name=password]").fill(PASSWORD)
    item.get_by_role("button", name="Remove").click()
    expect(page.locator("[data-passkey-count]")).to_have_attribute("data-passkey-count", "1")
    me.shot("removed")
    page.goto(me.base + "/mfa/security")
    form = page.locator("form[action$='/disable']")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    expect(page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "off")
    assert me.passkey_count() == "0"
    me.log_out()
    me.log_in()
    me.at("/")


def test_unverified_user_refused_when_verification_required(browser: Browser,  # noqa: F811
                                                            strict_demo: tuple[str, str]) -> None:
    name, base = strict_demo
    me = Person(browser, name, base)
    try:
        auth = me.authenticator(verified=True)
        me.log_in()
        me.add_passkey("Laptop")
        me.at("/mfa/backup-codes")
        me.log_out()
        me.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": auth, "isUserVerified": False})
        me.log_in()
        me.use_passkey()
        expect(me.page.locator("[data-passkey-status]")).not_to_be_empty()
        me.shot("uv-refused")
        me.page.goto(base + "/")
        expect(me.page).to_have_url(base + "/mfa/verify?next=/")
        # Verified again, the same passkey passes.
        me.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": auth, "isUserVerified": True})
        me.page.reload()
        me.use_passkey()
        me.at("/")
        # Leave the demo's account as it was found (2FA off) for the next test on this demo.
        me.page.goto(base + "/mfa/security")
        form = me.page.locator("form[action$='/disable']")
        form.locator("input[name=password]").fill(PASSWORD)
        form.locator("button[type=submit]").click()
        expect(me.page.locator("[data-mfa-status]")).to_have_attribute("data-mfa-status", "off")
    finally:
        me.close()

