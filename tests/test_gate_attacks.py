"""Findings of an outside security review of the gate (attack pass 2), kept as regression tests."""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import pytest

from mfa_middleware import FAST, MFAMiddleware, ThrottlePolicy
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import open_async_store
from mfa_middleware.totp import TotpParams, code_at, current_step
from tests.gate_harness import ADAPTERS, ENC_KEY, PASSWORD, SECRET, Site, csrf_of
from tests.test_frameworks import _code, _log_in, _log_out, _token, site  # noqa: F401  (the four example sites)


@pytest.fixture(params=ADAPTERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_request_to_the_logout_url_does_not_open_the_gate_for_other_paths(kind: str, redis_url: str) -> None:
    """F1: ``_guard`` lets ``logout_url`` through whatever the user owes, and ``handle`` memoizes that Pass under
    the Cookie header; ``passing`` then answers every other path from the memo. A password-only user (2FA on,
    never verified) reaches ``/`` by asking for ``/logout`` first (any method: GET gets a 405 from this app, the
    session cookie is not touched), and keeps it open by repeating that every < revocation_ttl."""
    site = Site(kind, redis_url)
    await site.new_user("lena")  # 2FA on
    attacker = site.browser()
    assert (await attacker.login("lena")).status_code == 303  # the password only
    assert (await attacker.get("/")).status_code == 303  # the gate asks for the code
    await attacker.get("/logout")  # GET: 405 from the app, but the gate let it through and remembered that
    r = await attacker.get("/")
    assert r.status_code == 303, f"password-only user reached / after GET /logout: {r.status_code} {r.text[:200]}"


async def test_a_required_user_cannot_skip_setup_through_the_logout_url(kind: str, redis_url: str) -> None:
    """F1 again, for ``policy="required"``: a user without 2FA, whom the policy requires it of, reaches ``/``
    without setting it up."""
    site = Site(kind, redis_url, gate={"policy": "required"})
    b, _ = await site.new_user("rolf", enroll=False)
    assert (await b.get("/")).status_code == 303  # to /mfa/setup
    await b.get("/logout")
    r = await b.get("/")
    assert r.status_code == 303, f"required user without 2FA reached /: {r.status_code}"


async def _warm_memo(site: Site, b, path: str = "/") -> None:  # type: ignore[no-untyped-def]
    """Two requests: the first may re-issue the ticket (no memo then), the second is remembered."""
    await b.get(path)
    assert (await b.get(path)).status_code == 200


async def test_a_step_up_route_named_without_its_trailing_slash_is_not_answered_from_the_memo(
        kind: str, redis_url: str) -> None:
    """F2: ``StepUp.max_age`` covers ``path == prefix.rstrip('/')`` ("/billing/pay" for "/billing/pay/"), but
    ``passing`` skips only ``path.startswith(prefix)``: once ``/`` is remembered for the Cookie header, the
    bare route is served from the memo to a stale session that ``handle`` sends to the prompt."""
    site = Site(kind, redis_url, gate={"step_up": {"/billing/pay/": 300}})
    b, _ = await site.new_user("stan")
    site.clock.advance(301)  # the proof is stale for the step-up route
    await _warm_memo(site, b)
    r = await b.get("/billing/pay")
    assert r.status_code == 303, f"stale session got the step-up route from the memo: {r.status_code} {r.text}"


async def test_a_trusted_browser_cookie_is_not_a_fresh_proof_for_step_up(kind: str, redis_url: str) -> None:
    """F3: "trust this browser" marks a new session verified *now* (method "trusted"), and step-up counts
    ``verified_at`` whatever the method: whoever holds the browser (or its cookies) passes every step-up route
    and ``require_recent`` by dropping ``mfa_session``; the second factor is never asked again."""
    site = Site(kind, redis_url, gate={"step_up": {"/billing/": 300}})
    b, _ = await site.new_user("tess")
    await b.logout()
    await b.login("tess")
    page = await b.get("/mfa/verify")
    r = await b.post("/mfa/verify", {"csrf_token": csrf_of(page.text), "code": site.code("tess"), "remember": "1"})
    assert r.status_code == 303 and b.cookie("mfa_trust")
    site.clock.advance(301)
    assert (await b.get("/billing/pay")).status_code == 303  # stale: to the prompt
    assert (await b.get("/sensitive")).status_code == 303  # require_recent(…, 120): to the prompt
    b.client.cookies.delete("mfa_session")
    r = await b.get("/billing/pay")
    assert r.status_code == 303, f"step-up passed on the trust cookie alone: {r.status_code} {r.text}"
    b.client.cookies.delete("mfa_session")
    r = await b.get("/sensitive")
    assert r.status_code == 303, f"require_recent passed on the trust cookie alone: {r.status_code} {r.text}"


@pytest.mark.parametrize("max_age", ["%C2%B2", "1" * 5000])
async def test_an_odd_max_age_on_the_prompts_is_not_a_500(kind: str, redis_url: str, max_age: str) -> None:
    """F4: ``_max_age`` checks ``str.isdigit()`` and then calls ``int()``: "²" is a digit to isdigit but not to
    int(), and 5,000 digits exceed int()'s limit: ValueError, a 500 with a traceback (ASGI) on the verify,
    backup and confirm prompts, for any signed-in user."""
    site = Site(kind, redis_url)
    with_2fa, _ = await site.new_user("maxa")
    await with_2fa.logout()
    await with_2fa.login("maxa")
    without, _ = await site.new_user("maxb", enroll=False)
    for b, page in ((with_2fa, "/mfa/verify"), (with_2fa, "/mfa/verify/backup"), (without, "/mfa/confirm")):
        try:
            r = await b.get(f"{page}?next=/&max_age={max_age}")
        except Exception as exc:  # the transport re-raises the app's exception
            pytest.fail(f"{page}: {exc!r}")
        assert r.status_code < 500, page


async def test_a_nul_in_a_static_asset_name_is_a_404_not_a_500(kind: str, redis_url: str) -> None:
    """F5: ``static_asset`` catches OSError only; ``Path.read_bytes`` raises ValueError on an embedded NUL."""
    site = Site(kind, redis_url)
    b = site.browser()  # anonymous: no login needed
    try:
        r = await b.get("/mfa/static/gate%00.css")
    except Exception as exc:
        pytest.fail(repr(exc))
    assert r.status_code == 404


async def test_an_attempt_from_a_capped_address_does_not_reset_the_accounts_back_off(
        kind: str, redis_url: str) -> None:
    """F6: when the address is over its hourly cap, ``TwoFactor._charge`` gives the account its charge back with
    the ``SUCCESS`` script, which also deletes the account's ``streak``: one request from a capped address
    zeroes the account's back-off. Someone who knows the password (the case the back-off exists for) guesses
    codes from fresh addresses and resets between every ``free_failures`` guesses: the exponential back-off
    never starts (only the hourly per-account cap is left)."""
    site = Site(kind, redis_url, gate={"trusted_proxies": ["127.0.0.0/8"],
                                       "throttle": ThrottlePolicy(free_failures=2, base_ms=600_000,
                                                                  ip_max_per_hour=3)})
    capped = {"x-forwarded-for": "198.51.100.1"}
    mal, _ = await site.new_user("mal", enroll=False)  # the attacker's own account caps one address
    for _ in range(3):
        page = await mal.get("/mfa/setup", headers=capped)
        await mal.post("/mfa/setup", {"csrf_token": csrf_of(page.text), "password": "wrong", "code": "0"},
                       headers=capped)
    vic, _ = await site.new_user("vic")
    await vic.logout()
    attacker = site.browser()
    await attacker.login("vic")  # knows the password, not the second factor

    async def guess(address: str) -> tuple[int, str]:
        hdr = {"x-forwarded-for": address}
        page = await attacker.get("/mfa/verify", headers=hdr)
        code = "000000" if site.code("vic") != "000000" else "111111"
        r = await attacker.post("/mfa/verify", {"csrf_token": csrf_of(page.text), "code": code}, headers=hdr)
        return r.status_code, r.text

    answers = []
    for n in range(4):
        for _ in range(2):  # free_failures guesses from a fresh address
            answers.append(await guess(f"203.0.113.{n + 1}"))
        await guess("198.51.100.1")  # capped: resets the streak
    slowed = [s for s, text in answers if s == 429 or "Too many attempts" in text]
    assert slowed, f"8 wrong codes in a row, never backed off: {[s for s, _ in answers]}"


async def test_require_recent_answers_an_anonymous_visitor_instead_of_raising(kind: str, redis_url: str) -> None:
    """F7: a gated route whose handler calls ``require_recent`` (the harness's ``/sensitive``) is reached by
    anonymous visitors too (the gate does not require a login); ``require_recent`` raises RuntimeError for them:
    a 500 with a traceback for anyone who opens the URL. It should answer (to the login page, or 401 JSON)."""
    site = Site(kind, redis_url)
    anon = site.browser()
    try:
        r = await anon.get("/sensitive")
    except RuntimeError as exc:  # the ASGI transport re-raises the app's exception
        pytest.fail(f"require_recent raised for an anonymous visitor: {exc}")
    assert r.status_code < 500


async def _call(app, path: str, headers: list[tuple[bytes, bytes]], method: str = "GET",  # type: ignore[no-untyped-def]
                body: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    sent: list[dict] = []  # type: ignore[type-arg]
    done = False

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    hdrs: dict[bytes, bytes] = {}
    for k, v in start["headers"]:
        hdrs[k.lower()] = hdrs[k.lower()] + b"\n" + v if k.lower() in hdrs else v
    return start["status"], hdrs, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_the_asgi_memo_key_is_the_cookie_header_whatever_the_case_of_its_name(redis_url: str) -> None:
    """F8 (defence in depth): ``asgi._cookie_header`` looks for ``b"cookie"`` only, while ``_request`` and
    ``identity.django_session`` lower-case header names. A server or test client that passes ``Cookie`` in
    another case gets the memo key b"" for every request: the memo is then keyed by identity alone, and a
    password-only request of an identity rides on the verified session's answer."""
    async def inner(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"secret page"})

    def identity(scope):  # type: ignore[no-untyped-def]  # the host app's login, read case-insensitively
        for k, v in scope["headers"]:
            if k.lower() == b"cookie":
                m = re.search(rb"app_user=(\w+)", v)
                if m:
                    return m.group(1).decode()
        return None

    store = open_async_store(redis_url)
    app = MFAMiddleware(inner, identity=identity, store=store, secret_key=SECRET, encryption_keys=ENC_KEY,
                        argon2_profile=FAST, revocation_ttl=5.0)
    await store.run(Accounts(store.keys, PasswordHasher(FAST)).create("uc", PASSWORD))
    tf = app.gate.twofactor
    seed = await store.run(tf.begin_enrollment("uc"))
    params = TotpParams()
    now = time.time()
    assert await store.run(tf.confirm_enrollment("uc", code_at(seed, current_step(now, params) - 1, params)))
    # The owner verifies.
    status, hdrs, body = await _call(app, "/mfa/verify", [(b"Cookie", b"app_user=uc")])
    session = re.search(rb"mfa_session=([^;]+)", hdrs[b"set-cookie"]).group(1)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    form = urlencode({"csrf_token": token, "code": code_at(seed, current_step(now, params), params)}).encode()
    status, hdrs, _ = await _call(app, "/mfa/verify", [(b"Cookie", b"app_user=uc; mfa_session=" + session),
                                                       (b"content-type", b"application/x-www-form-urlencoded")],
                                  "POST", form)
    assert status == 303
    session = re.search(rb"mfa_session=([^;]+)", hdrs[b"set-cookie"]).group(1)
    owner = [(b"Cookie", b"app_user=uc; mfa_session=" + session)]
    assert (await _call(app, "/", owner))[0] == 200
    assert (await _call(app, "/", owner))[0] == 200  # remembered
    # Someone with the password only: no gate session at all.
    status, _, body = await _call(app, "/", [(b"Cookie", b"app_user=uc")])
    assert status == 303, f"a password-only request got the verified session's answer: {status} {body!r}"


WARM = ["/", "/logout", "/billing/pay", "/billing", "/sensitive", "/nic/update", "/mfa/verify", "/nothing"]
PROBE = ["/", "/billing/pay", "/sensitive", "/nothing"]


@pytest.mark.parametrize("state", ["password-only", "required-no-2fa", "stale-for-step-up", "trusted-stale"])
async def test_the_fast_lane_answers_any_path_as_handle_would(kind: str, redis_url: str, state: str) -> None:
    """The general property behind F1 and F2 (the rule issue 20 #3 set: a fast lane is only a cache of
    ``handle``'s decision): whatever path warmed the memo for a Cookie header, every other path gets the status
    and Location that ``handle`` alone gives it."""
    site = Site(kind, redis_url, gate={"step_up": {"/billing/pay/": 60}, "revocation_ttl": 30.0,
                                       "policy": lambda i: "required" if i.startswith("req") else "optional"})
    if state == "password-only":
        b, _ = await site.new_user("pwo")
        await b.logout()
        await b.login("pwo")
    elif state == "required-no-2fa":
        b, _ = await site.new_user("req", enroll=False)
    else:
        b, _ = await site.new_user("stale")
        if state == "trusted-stale":
            await b.logout()
            await b.login("stale")
            page = await b.get("/mfa/verify")
            await b.post("/mfa/verify", {"csrf_token": csrf_of(page.text), "code": site.code("stale"), "remember": "1"})
        site.clock.advance(120)
        await b.get("/")  # the ticket is re-issued once; the jar is stable from here on
    memo = site.app_gate().confirmed

    def forget() -> None:
        memo.entries.clear()
        memo._by_account.clear()

    async def answer(path: str) -> tuple[int, str | None]:
        r = await b.get(path)
        return r.status_code, r.headers.get("location")

    wrong = []
    for warm in WARM:
        for probe in PROBE:
            forget()
            alone = await answer(probe)
            forget()
            await b.get(warm)
            after = await answer(probe)
            if after != alone:
                wrong.append(f"{warm} then {probe}: {after} (handle alone: {alone})")
    assert not wrong, "\n".join(wrong)


async def test_logging_out_ends_the_gate_session_even_when_the_next_page_is_exempt(kind: str, redis_url: str) -> None:
    """F9: the gate learns of a logout only from a later request that reaches ``handle`` without an identity;
    ``quick`` answers exempt paths before looking. When the logout flow ends on an exempt page (here the login
    page, a common exemption) or off-site (an SSO's logout), the record is never deleted: a copied
    ``mfa_session`` keeps its second factor for whoever signs in again with the password, until the idle timeout.
    The gate knows ``logout_url``: a request to it could end the gate session there and then."""
    site = Site(kind, redis_url, gate={"exempt": ["/nic/update", "/login"]})
    owner, _ = await site.new_user("lou")  # verified by enrolling
    copied = owner.cookie("mfa_session")
    assert (await owner.get("/")).status_code == 200
    r = await owner.post("/logout")  # the app signs the owner out and sends them to /login
    await owner.get(r.headers["location"])  # exempt: the gate is not asked
    copier = site.browser()
    await copier.login("lou")  # knows the password, not the second factor
    copier.client.cookies.set("mfa_session", copied)
    r = await copier.get("/")
    assert r.status_code == 303, f"a copied gate session outlived the logout: {r.status_code}"
    # The same browser (a shared computer): the next person with the password is not asked for a code.
    await owner.login("lou")
    r = await owner.get("/")
    assert r.status_code == 303, f"signing in again on the same browser skipped the second factor: {r.status_code}"


async def test_every_example_site_keeps_the_gate_closed_after_a_request_to_logout(site) -> None:  # type: ignore[no-untyped-def]
    """F1 on the FastAPI, Starlette and Django (WSGI and ASGI) examples: the default ``logout_url`` is "/logout"
    whether or not the app has such a route (Django's is "/logout/"), so every deployment with the default is
    open to it."""
    b = site.browser
    await _log_in(site)
    page = await b.get("/mfa/setup")
    seed = re.search(r"data-totp-key>([^<]+)<", page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    r = await b.post("/mfa/setup", {**_token(page.text), "password": "correct horse battery", "code": _code(seed)})
    assert r.status_code == 303
    await _log_out(site)
    await _log_in(site)  # the password only from here on
    assert (await b.get("/")).status_code == 303
    for _ in range(3):  # a logout page that puts a CSRF token in the session changes the cookie once
        if "set-cookie" not in (await b.get("/logout")).headers:
            break
    r = await b.get("/")
    assert r.status_code in (302, 303), f"{site.name}: password-only user reached / after GET /logout"


@pytest.mark.parametrize("site", ["django-wsgi", "django-asgi"], indirect=True)
async def test_a_user_who_cannot_give_the_code_can_still_log_out_of_the_django_example(site) -> None:  # type: ignore[no-untyped-def]
    """F10 (functional, low): issue 23 promised the logout stays reachable whatever the user owes the gate; the
    Django example's logout is "/logout/" but the gate is left at its default ``logout_url="/logout"``, so a user
    who signed in with the password and cannot (or may not) give the code is sent to the code prompt instead of
    being logged out: on a shared computer the password-authenticated session stays."""
    b = site.browser
    await _log_in(site)
    page = await b.get("/mfa/setup")
    seed = re.search(r"data-totp-key>([^<]+)<", page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    await b.post("/mfa/setup", {**_token(page.text), "password": "correct horse battery", "code": _code(seed)})
    await _log_out(site)
    await _log_in(site)
    page = await b.get("/mfa/verify")  # any page of the site carries Django's CSRF cookie; the prompt has a token
    r = await b.post("/logout/", {"csrfmiddlewaretoken": b.client.cookies.get("csrftoken") or ""})
    assert r.status_code in (302, 303) and r.headers["location"].startswith("/login"), \
        f"logout held up: {r.status_code} {r.headers.get('location')}"


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_an_attacker_elsewhere_cannot_lock_the_owners_router_out_of_the_update_endpoint(
        adapter: str, redis_url: str) -> None:
    """F11 (update endpoint): guesses from elsewhere must not lock the owner's router out, on the slow path too
    (its verifier cache lapsed after 6 h: simulated by deleting the cached verifier, not the addresses that
    proved the login). A router at a new address while someone keeps the login's cap full is the documented
    limit of the design (docs/security.md, "Update endpoint throttling")."""
    import redis as redis_lib

    from ddns_update.protocol import parse_trusted_proxies
    from ddns_update.service import UpdatePolicy
    from tests.ddns_harness import PASSWORD as DDNS_PASSWORD
    from tests.ddns_harness import Site as DdnsSite

    site = DdnsSite(redis_url, adapter,
                    policy=UpdatePolicy(trusted_proxies=tuple(parse_trusted_proxies("127.0.0.0/8"))))
    router = {"x-forwarded-for": "203.0.113.7"}
    try:
        site.account("alice", hosts=["alice.example.test"])
        r = await site.get("hostname=alice.example.test&myip=192.0.2.7", auth=("alice", DDNS_PASSWORD),
                           headers=router)
        assert r.text.strip() == "good 192.0.2.7"
        raw = redis_lib.Redis.from_url(redis_url)
        cred = [k for k in raw.scan_iter("*{a:alice}:cred")]
        assert cred and raw.hdel(cred[0], "alice") == 1  # the verifier lapses; the proven address stays
        for n in range(11):
            r = await site.get("hostname=alice.example.test&myip=192.0.2.66", auth=("alice", f"guess{n}"),
                               headers={"x-forwarded-for": "198.51.100.66"})
            assert r.text.strip() == "badauth"
        r = await site.get("hostname=alice.example.test&myip=192.0.2.8", auth=("alice", DDNS_PASSWORD),
                           headers=router)
        assert r.text.strip() == "good 192.0.2.8", f"the owner's router was locked out: {r.status_code} {r.text!r}"
    finally:
        await site.close()
