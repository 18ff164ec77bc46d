"""Languages (issue 25), in process through both adapters: which language a request gets (the ``locale`` hook,
Accept-Language, English), ``lang``/``dir``, codes typed in Arabic-Indic or Persian digits, the catalogs'
completeness, and a pseudo-locale that marks every translated string: any visible text of any page state or
message that is not marked is a string that slipped past gettext."""

from __future__ import annotations

import gettext
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.checkers import python_format
from babel.messages.pofile import read_po

from mfa_middleware import backup_codes, i18n, totp, views
from mfa_middleware.gate import Request
from tests.gate_harness import ADAPTERS, PASSWORD, Site, backup_codes_of, csrf_of

LOCALES = Path(i18n.__file__).parent / "locales"
PSEUDO = "x-pseudo"
OPEN, CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def lang_and_dir(html: str) -> tuple[str, str]:
    m = re.search(r'<html lang="([^"]+)" dir="([^"]+)"', html)
    assert m, html[:200]
    return m.group(1), m.group(2)


# -- which language --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "expected"), [
    ("de-DE,de;q=0.9,en;q=0.8", "de"), ("ar-EG", "ar"), ("fr-FR, ar;q=0.5, de;q=0.4", "ar"),
    ("fr, es", "en"), ("", "en"), ("de;q=0, ar;q=0.1", "ar"), ("*", "en"), ("DE-at", "de"),
    ("en-GB,de;q=0.9", "en"), ("de;q=oops", "en"), ("x" * 5000, "en"),
])
def test_accept_language_picks_a_shipped_language(header: str, expected: str) -> None:
    assert i18n.choose(None, header).code == expected


def test_the_hook_wins_over_the_browser_and_falls_back_to_it() -> None:
    assert i18n.choose("ar", "de").code == "ar"
    assert i18n.choose("de_CH", "ar").code == "de"  # the host app's spelling, with a region
    assert i18n.choose("fr", "ar").code == "ar"  # a language not on offer: the browser decides
    assert i18n.choose(None, "ar").direction == "rtl" and i18n.choose(None, "de").direction == "ltr"


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_pages_follow_accept_language_and_the_locale_hook(kind: str, redis_url: str) -> None:
    calls: list[Any] = []

    def hook(scope_or_environ: Any) -> str | None:
        calls.append(scope_or_environ)
        # The host app's own setting for this user, in its own place (here a header a test sets).
        if kind == "asgi":
            wanted = dict(scope_or_environ["headers"]).get(b"x-user-lang", b"").decode()
        else:
            wanted = scope_or_environ.get("HTTP_X_USER_LANG", "")
        return wanted or None

    site = Site(kind, redis_url, gate={"locale": hook})
    b, _ = await site.new_user("alice")
    await b.logout()
    await b.login("alice")
    r = await b.get("/mfa/verify?next=/", headers={"accept-language": "de-DE,de;q=0.9"})
    assert lang_and_dir(r.text) == ("de", "ltr") and "Geben Sie den 6-stelligen Code" in r.text
    assert re.search(r'<input id="code"[^>]* autofocus>', r.text)  # no error: the prompt starts on its field
    assert r.headers["content-language"] == "de"
    r = await b.get("/mfa/verify?next=/", headers={"accept-language": "ar"})
    assert lang_and_dir(r.text) == ("ar", "rtl") and "تطبيق المصادقة" in r.text
    r = await b.get("/mfa/verify?next=/", headers={"accept-language": "ar", "x-user-lang": "de"})
    assert lang_and_dir(r.text) == ("de", "ltr")  # the host app's choice beats the browser's
    r = await b.get("/mfa/verify?next=/", headers={"accept-language": "fr"})
    assert lang_and_dir(r.text) == ("en", "ltr") and "Enter the 6-digit code" in r.text
    assert calls
    # Errors come in the page's language too.
    r = await b.get("/mfa/verify?next=/", headers={"accept-language": "de"})
    r = await b.post("/mfa/verify?next=/", {"csrf_token": csrf_of(r.text), "code": "000000"},
                     headers={"accept-language": "de"})
    assert r.status_code == 401 and "Dieser Code stimmt nicht." in r.text
    assert "<title>Fehler: Prüfen · mfa-ddns</title>" in r.text
    assert re.search(r'<input id="code"[^>]* aria-invalid="true" aria-describedby="error" autofocus>', r.text)
    assert '<p class="error" id="error" role="alert" tabindex="-1">' in r.text


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_the_fast_lanes_never_ask_the_locale_hook(kind: str, redis_url: str) -> None:
    """Pages only: a signed-in user's ordinary requests (``Gate.passing``/``quick``) render nothing."""
    calls: list[Any] = []
    site = Site(kind, redis_url, gate={"locale": lambda s: calls.append(s) or "de"})
    b, _ = await site.new_user("alice")
    await b.get("/")  # the slow path once (the memo is filled), maybe asking the hook
    asked = len(calls)
    for _ in range(5):
        assert (await b.get("/")).status_code == 200
    assert len(calls) == asked


async def test_a_broken_or_async_hook_costs_only_the_language(redis_url: str) -> None:
    def broken(scope: Any) -> str:
        raise RuntimeError("the host app's database is away")

    site = Site("asgi", redis_url, gate={"locale": broken})
    b, _ = await site.new_user("alice", enroll=False)
    r = await b.get("/mfa/security", headers={"accept-language": "de"})
    assert r.status_code == 200 and lang_and_dir(r.text) == ("de", "ltr")

    async def from_db(scope: Any) -> str:
        return "ar"

    site = Site("asgi", redis_url, gate={"locale": from_db})
    b, _ = await site.new_user("bob", enroll=False)
    r = await b.get("/mfa/security")
    assert lang_and_dir(r.text) == ("ar", "rtl")


# -- digits ----------------------------------------------------------------------------------------------
def test_codes_in_arabic_indic_and_persian_digits_normalise() -> None:
    assert totp.normalize_code("١٢٣ ٤٥٦", 6) == "123456"
    assert totp.normalize_code("۱۲۳-۴۵۶", 6) == "123456"
    assert totp.normalize_code("１２３４５６", 6) is None  # full-width digits stay refused
    code = "0a1b-2c3d-4e5f-6g7h-8j9k-0m1n"
    assert backup_codes.normalize(code.translate(ARABIC_INDIC)) == code.replace("-", "")
    assert backup_codes.normalize(code.translate(PERSIAN)) == code.replace("-", "")


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_a_code_typed_in_arabic_indic_digits_verifies(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, codes = await site.new_user("alice")
    await b.logout()
    await b.login("alice")
    r = await b.get("/mfa/verify?next=/", headers={"accept-language": "ar"})
    r = await b.post("/mfa/verify?next=/", {"csrf_token": csrf_of(r.text),
                                            "code": site.code("alice").translate(ARABIC_INDIC)})
    assert r.status_code == 303 and r.headers["location"] == "/"
    await b.logout()
    await b.login("alice")
    r = await b.form("/mfa/verify/backup", {"backup_code": codes[0].translate(PERSIAN)})
    assert r.status_code == 200 and 'data-backup-codes-left="9"' in r.text


# -- the catalogs ----------------------------------------------------------------------------------------
def _catalog(code: str) -> Any:
    with (LOCALES / code / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=code)


def test_every_message_is_translated_in_every_shipped_language() -> None:
    with (LOCALES / "messages.pot").open("rb") as f:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    assert len(template) > 100
    assert set(i18n.available()) >= {"en", "de", "ar"}
    for code in ("en", "de", "ar"):
        catalog = _catalog(code)
        ids = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}
        assert ids == template, f"{code}: run make i18n"
        for m in catalog:
            if not m.id:
                continue
            strings = m.string if isinstance(m.string, tuple) else (m.string,)
            assert all(strings) and "fuzzy" not in m.flags, f"{code}: {m.id!r} is not translated"
            if m.python_format:
                python_format(catalog, m)  # raises TranslationError on a placeholder that does not fit
            assert len(strings) == (catalog.num_plurals if m.pluralizable else 1)


def test_arabic_plurals_use_all_six_forms() -> None:
    ar = i18n.lang("ar")
    forms = {ar.ngettext("You have %(count)s passkey.", "You have %(count)s passkeys.", n) for n in
             (0, 1, 2, 5, 11, 100)}
    assert len(forms) >= 5  # "many" and "other" may read alike; the rest differ


def test_a_template_variable_is_escaped_inside_a_translated_sentence() -> None:
    from mfa_middleware.pages import Pages, _callables

    gt, ngt = _callables(i18n.lang("de"))
    out = Pages().env.from_string('{% trans %}Your question: <strong><bdi>{{ question }}</bdi></strong>'
                                  '{% endtrans %}').render(gettext=gt, ngettext=ngt, question="<b>x</b>")
    assert out == "Ihre Frage: <strong><bdi>&lt;b&gt;x&lt;/b&gt;</bdi></strong>"


# -- the pseudo-locale: nothing visible escapes gettext ----------------------------------------------------
class Pseudo(gettext.NullTranslations):
    def gettext(self, message: str) -> str:
        return OPEN + message + CLOSE

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return OPEN + (singular if n == 1 else plural) + CLOSE


@pytest.fixture
def pseudo() -> Iterator[None]:
    i18n.register(PSEUDO, Pseudo())
    yield
    i18n.unregister(PSEUDO)


class Visible(HTMLParser):
    """The text a person sees or hears (data left out: what sits in ``<bdi>`` or ``dir="ltr"``, which is
    codes, keys, names and addresses) and the attributes read out (placeholder, aria-label, title, alt, and the
    passkey script's messages)."""

    DATA = {"bdi", "script", "style"}
    VOID = {"meta", "link", "input", "br", "img", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.attrs: list[str] = []
        self.stack: list[bool] = []  # per open element: is it data

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("placeholder", "aria-label", "title", "alt"):
            if a.get(name):
                self.attrs.append(str(a[name]))
        self.attrs += [str(v) for k, v in attrs if k.startswith("data-msg-") and v]
        if tag not in self.VOID:
            self.stack.append(tag in self.DATA or a.get("dir") == "ltr" or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.text.append(data)


def unmarked(text: str) -> str:
    """What is left of ``text`` outside ⟦…⟧ (nested marks allowed), less punctuation, digits and spaces."""
    out, depth = [], 0
    for ch in text:
        if ch == OPEN:
            depth += 1
        elif ch == CLOSE:
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return re.sub(r"[\s\d·.,:;!?()\-–—…/]+", "", "".join(out))


def assert_all_marked(where: str, html: str, issuer: str = "mfa-ddns") -> None:
    parser = Visible()
    parser.feed(html)
    text = "".join(parser.text).replace(issuer, "")
    assert unmarked(text) == "", f"{where}: text not through gettext: {unmarked(text)!r}\n{text}"
    for value in parser.attrs:
        assert unmarked(value) == "", f"{where}: attribute not through gettext: {value!r}"


class Pages:
    """Every page state of one site, fetched under the pseudo-locale."""

    def __init__(self, site: Site) -> None:
        self.site, self.seen = site, 0

    async def check(self, b: Any, method: str, path: str, data: dict[str, str] | None = None,
                    page: str | None = None) -> Any:
        if method == "GET":
            r = await b.get(path)
        else:
            r = await b.form(path, data or {}, page=page)
        assert r.status_code < 500, r.text
        if r.headers.get("content-type", "").startswith("text/html"):
            assert_all_marked(f"{method} {path} {data or ''}", r.text)
            assert lang_and_dir(r.text) == (PSEUDO, "ltr")
            self.seen += 1
        return r


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_every_page_and_message_goes_through_gettext(kind: str, redis_url: str, pseudo: None) -> None:
    site = Site(kind, redis_url, gate={"locale": lambda s: PSEUDO, "step_up": {"/billing/": 60}})
    p = Pages(site)
    # 2FA off: the security page, setup and its errors, the security question and its errors.
    b, _ = await site.new_user("alice", enroll=False)
    await p.check(b, "GET", "/mfa/security")
    await p.check(b, "GET", "/mfa/backup-codes")  # nothing to show
    await p.check(b, "GET", "/mfa/setup")
    await p.check(b, "POST", "/mfa/setup", {"password": "wrong", "code": "123456"})
    await p.check(b, "POST", "/mfa/setup", {"password": PASSWORD, "code": "000000"})
    await p.check(b, "GET", "/mfa/security-question")
    await p.check(b, "POST", "/mfa/security-question", {"question": "", "answer": "", "password": PASSWORD})
    await p.check(b, "POST", "/mfa/security-question", {"question": "Q?", "answer": "A", "password": "wrong"})
    await p.check(b, "POST", "/mfa/security-question", {"question": "Q?", "answer": "A", "password": PASSWORD})
    await p.check(b, "GET", "/mfa/passkeys")
    await p.check(b, "POST", "/mfa/passkeys/rename", {"credential_id": "nope", "new_name": " "}, "/mfa/security")
    await p.check(b, "POST", "/mfa/passkeys/remove", {"credential_id": "nope", "password": PASSWORD},
                  "/mfa/security")
    # Step-up without 2FA: the password prompt, its error, and a form posted meanwhile.
    r = await b.get("/billing/pay")
    assert r.status_code == 303 and "/mfa/confirm" in r.headers["location"]
    await p.check(b, "GET", r.headers["location"])
    await p.check(b, "POST", r.headers["location"], {"password": "wrong"})
    r = await b.post("/billing/pay", {})
    assert r.status_code == 401
    assert_all_marked("stale POST", r.text)
    await p.check(b, "GET", "/mfa/nothing-here")
    r = await b.post("/mfa/disable", {"csrf_token": "forged", "password": PASSWORD})
    assert r.status_code == 400
    assert_all_marked("CSRF", r.text)
    r = await b.post("/mfa/disable", {"csrf_token": "forged"}, headers={"accept": "application/json"})
    assert r.json()["message"].startswith(OPEN)

    # Enrol: the backup codes, then the security page with 2FA on and its errors and notices.
    r = await b.get("/mfa/setup")
    from tests.gate_harness import key_of

    site.seeds["alice"] = key_of(r.text)
    r = await b.post("/mfa/setup", {"csrf_token": csrf_of(r.text), "password": PASSWORD,
                                    "code": site.code("alice")})
    r = await p.check(b, "GET", "/mfa/backup-codes")
    codes = backup_codes_of(r.text)
    site.clock.advance(30)
    await p.check(b, "GET", "/mfa/security")
    await p.check(b, "POST", "/mfa/disable", {"password": "wrong"}, "/mfa/security")
    await p.check(b, "POST", "/mfa/regenerate", {"password": "wrong"}, "/mfa/security")
    await p.check(b, "POST", "/mfa/signout-everywhere", {}, "/mfa/security")

    # The prompts: verify, its errors (wrong, replayed), backup, its error, a backup code used, step-up.
    await b.logout()
    await b.login("alice")
    await p.check(b, "GET", "/mfa/verify?next=/")
    await p.check(b, "POST", "/mfa/verify?next=/", {"code": "000000"}, "/mfa/verify?next=/")
    r = await b.form("/mfa/verify?next=/", {"code": site.code("alice")})
    assert r.status_code == 303
    await b.logout()
    await b.login("alice")
    r = await p.check(b, "POST", "/mfa/verify?next=/", {"code": site.code("alice")}, "/mfa/verify?next=/")
    assert r.status_code == 401  # replayed
    await p.check(b, "GET", "/mfa/verify/backup?next=/")
    await p.check(b, "POST", "/mfa/verify/backup?next=/", {"backup_code": "nope"}, "/mfa/verify/backup?next=/")
    r = await p.check(b, "POST", "/mfa/verify/backup?next=/", {"backup_code": codes[0]}, "/mfa/verify/backup?next=/")
    assert 'data-backup-codes-left="9"' in r.text
    site.clock.advance(120)
    r = await b.get("/billing/pay")
    await p.check(b, "GET", r.headers["location"])  # "Confirm it's you" with a code
    step_up = "/mfa/verify/backup?next=/&max_age=60"
    for code in codes[1:8]:  # down to 2 left (as step-up proofs): the "running out" warnings
        site.clock.advance(120)
        assert (await b.form(step_up, {"backup_code": code})).status_code == 200
    site.clock.advance(120)
    r = await p.check(b, "POST", step_up, {"backup_code": codes[8]}, step_up)
    assert 'data-backup-codes-left="1"' in r.text
    await p.check(b, "GET", "/mfa/security")
    assert p.seen >= 28

    # Messages made outside a request's page: the store being down, a lockout.
    lang = i18n.lang(PSEUDO)
    gate = site.app_gate()  # type: ignore[attr-defined]
    req = Request("GET", "/", {}, {}, {}, "127.0.0.1", False, "alice", locale=PSEUDO)
    assert_all_marked("unavailable", gate.unavailable(req).body.decode())
    assert views.locked_message(lang, 42).startswith(OPEN)


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_the_required_notice_and_refusals_go_through_gettext(kind: str, redis_url: str, pseudo: None) -> None:
    site = Site(kind, redis_url, gate={"locale": lambda s: PSEUDO, "policy": "required", "grace": 3})
    p = Pages(site)
    b, _ = await site.new_user("carol", enroll=False)
    r = await b.get("/")
    assert r.status_code == 303 and "/mfa/required" in r.headers["location"]
    r = await p.check(b, "GET", r.headers["location"])
    assert 'data-days-left="3"' in r.text
    await site.enroll(b, "carol")
    await p.check(b, "GET", "/mfa/security")  # "required": no way to turn it off
    await p.check(b, "POST", "/mfa/disable", {"password": PASSWORD}, "/mfa/security")


# -- the owner page (/account) on both demos ---------------------------------------------------------------
async def test_the_owner_page_and_its_answers_go_through_gettext(pseudo: None) -> None:
    from examples.demo import DEMO_HOST, DEMO_PASSWORD, DEMO_USER
    from examples.demo import create_app as starlette_demo
    from examples.flask_demo import create_app as flask_demo
    from mfa_middleware.config import Settings
    from mfa_middleware.passwords import FAST
    from mfa_middleware.store import MemoryStore

    cfg = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,))
    memory = MemoryStore()
    starlette_app = starlette_demo(cfg, memory)
    flask_app = flask_demo(cfg, argon2_profile=FAST)
    lang = {"accept-language": PSEUDO}
    async with starlette_app.router.lifespan_context(starlette_app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=starlette_app), base_url="http://127.0.0.1:8000", headers=lang) as asgi:
        with httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://127.0.0.1:8000",
                          headers=lang) as wsgi:
            for client in (asgi, wsgi):
                async def call(method: str, url: str, client: Any = client, **kw: Any) -> httpx.Response:
                    r = client.request(method, url, **kw)
                    return await r if isinstance(client, httpx.AsyncClient) else r  # type: ignore[no-any-return]

                await call("POST", "/login", data={"username": DEMO_USER, "password": DEMO_PASSWORD,
                                                   "csrf_token": csrf_of((await call("GET", "/login")).text)})
                page = await call("GET", "/account")
                assert page.status_code == 200 and lang_and_dir(page.text) == (PSEUDO, "ltr")
                assert_all_marked("/account", page.text)
                token = csrf_of(page.text)
                steps = [("create", {"group": "<b>x", "hosts": DEMO_HOST, "password": DEMO_PASSWORD}),
                         ("create", {"group": "home", "hosts": "bad..host", "password": DEMO_PASSWORD}),
                         ("create", {"group": "home", "hosts": DEMO_HOST, "password": "wrong"}),
                         ("create", {"group": "home", "hosts": DEMO_HOST, "password": DEMO_PASSWORD}),
                         ("create", {"group": "home", "hosts": DEMO_HOST, "password": DEMO_PASSWORD}),
                         ("rotate", {"group": "home", "password": DEMO_PASSWORD}),
                         ("hosts", {"group": "home", "add": "nothere.example.test"}),
                         ("hosts", {"group": "home", "remove": DEMO_HOST}),
                         ("iid", {"host": DEMO_HOST, "ipv6_interface_id": "nope"}),
                         ("iid", {"host": DEMO_HOST, "ipv6_interface_id": "::1:2:3:4"}),
                         ("iid", {"host": DEMO_HOST, "ipv6_interface_id": ""}),
                         ("switch", {"value": "deny"}), ("delete", {"group": "home"}), ("delete", {"group": "home"}),
                         ("frobnicate", {})]
                for action, data in steps:
                    r = await call("POST", f"/account/{action}", data={**data, "csrf_token": token})
                    assert r.status_code < 500 and lang_and_dir(r.text) == (PSEUDO, "ltr"), r.text
                    assert_all_marked(f"/account/{action} {data}", r.text)
                r = await call("POST", "/account/switch", data={"value": "deny"})  # no CSRF token
                assert r.status_code == 400
                assert_all_marked("/account CSRF", r.text)


def test_a_checkout_without_compiled_catalogs_reads_the_po(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh clone has no .mo (git keeps only .po): the catalog is compiled in memory on first use; a .mo
    older than its .po (edited, not yet compiled) is passed over too."""
    import shutil

    shutil.copytree(LOCALES, tmp_path / "locales", ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(i18n, "LOCALES", tmp_path / "locales")
    i18n.clear_caches()
    try:
        assert i18n.lang("de").gettext("Password") == "Passwort"
        assert i18n.lang("ar").ngettext("You have %(count)s passkey.", "You have %(count)s passkeys.", 2) == \
            "لديك مفتاحا مرور."
        stale = tmp_path / "locales" / "de" / "LC_MESSAGES" / "messages.mo"
        stale.write_bytes(b"not a catalog")  # would fail to load, were it read
        po = stale.with_suffix(".po")
        os.utime(stale, (po.stat().st_mtime - 10,) * 2)
        i18n.clear_caches()
        assert i18n.lang("de").gettext("Password") == "Passwort"
    finally:
        i18n.clear_caches()
