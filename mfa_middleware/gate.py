"""The gate's decision core, free of I/O and frameworks (sans-IO).

An adapter turns a request into ``Request`` facts and runs ``Gate.handle(request)`` (a store operation)
with its store; the result is ``Pass`` (call the app, with ``mfa`` facts and maybe cookies to set) or
``Reply`` (send this response). ``asgi.py`` and ``wsgi.py`` only translate.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from . import backup_codes, i18n
from .accounts import Accounts
from .clientip import ClientAddress
from .confirmations import Confirmations
from .crypto import SeedCipher, derive_key
from .pages import Pages
from .passkeys import Passkeys, RelyingParty
from .passwords import OWASP, Argon2Profile, PasswordHasher
from .paths import Exemptions, safe_next
from .policy import Policy, PolicyFn, StepUp, fresh
from .sessions import SESSION_COOKIE, TRUST_COOKIE, GateSession, Sessions, cookie_name
from .store import Keys, Op, cmd
from .store.effects import Offload, batch
from .totp import Digest, TotpParams
from .twofactor import AuditHook, ThrottlePolicy, TwoFactor

DEFAULT_EXEMPT = ("/nic/update", "/nic/checkip")  # routers and scripts: no browser session
# The gate's pages use only their own stylesheet and script (``static/``), and no page is ever framed.
DEFAULT_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MAX_FORM_BYTES = 64 * 1024
PasswordCheck = Callable[[str, str], bool]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    cookies: Mapping[str, str]
    client_ip: str
    https: bool
    identity: str | None
    form: Mapping[str, str] = field(default_factory=dict)
    root: str = ""  # where the app is mounted (``paths.mount_point``): only put in front of URLs sent out
    memo_key: str | bytes | None = None  # the Cookie header as the server gave it (``Confirmations``)
    locale: str | None = None  # the host app's language for this user (the ``locale`` hook), if it said one

    @property
    def full_path(self) -> str:
        """The path as the browser asked for it (mount point included), with its query."""
        return self.root + self.path + ("?" + urlencode(self.query) if self.query else "")

    def wants_json(self) -> bool:
        accept = self.headers.get("accept", "").lower()
        if "application/json" not in accept:
            return False
        html_at = accept.find("text/html")
        return html_at < 0 or accept.find("application/json") < html_at


@dataclass(slots=True)
class Pass:
    """Let the request through to the app."""

    mfa: dict[str, Any]
    cookies: list[str] = field(default_factory=list)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


Decision = Pass | Reply


def parse_form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    text = body[:MAX_FORM_BYTES].decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True))


def cookie_value(header: str, name: str) -> str | None:
    """One cookie's value, found without parsing the whole header (the hot path needs only ours).

    With the name repeated, the last one wins, as in ``parse_cookies``: both paths must agree.
    """
    if not header or name not in header:
        return None
    found = None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            found = value.strip('"')
    return found


def parse_cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header is treated as no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


@dataclass
class Context:
    """Everything the gate learned about one request."""

    req: Request
    account: str
    enabled: bool
    epoch: int
    session: GateSession | None
    cookies: list[str] = field(default_factory=list)
    base: str = ""  # the gate's pages as the browser reaches them: mount point + prefix
    totp: bool = False  # the account's 2FA includes an authenticator app (``enabled``: that or a passkey)
    passkeys: int = 0  # how many passkeys the account has (``passkeys.py``)
    due: float = math.inf  # when the session's ticket next times out or is re-issued (``Confirmations``)
    cacheable: bool = True  # False: this answer holds for this request only (a grace notice still owed)

    @property
    def verified(self) -> bool:
        return bool(self.session and self.session.verified_at)


class Gate:
    def __init__(
        self,
        *,
        keys: Keys,
        secret_key: str,
        encryption_keys: Sequence[str] | str,
        prefix: str = "/mfa",
        policy: str | PolicyFn = "optional",
        grace: float = 0,
        step_up: Mapping[str, int] | None = None,
        exempt: Sequence[str] = DEFAULT_EXEMPT,
        issuer: str = "mfa-ddns",
        remember_days: int = 30,
        password_checker: PasswordCheck | None = None,
        argon2_profile: Argon2Profile = OWASP,
        login_url: str = "/login",
        logout_url: str = "/logout",
        template_dirs: Sequence[str | Path] = (),
        audit: AuditHook | None = None,
        idle_timeout: int = 30 * 60,
        absolute_timeout: int = 12 * 3600,
        throttle: ThrottlePolicy | None = None,
        totp_drift: int = 1,
        totp_digest: Digest = "sha1",
        totp_digits: int = 6,
        totp_period: int = 30,
        account_label: Callable[[str], str] | None = None,
        revocation_ttl: float = 1.0,
        content_security_policy: str = DEFAULT_CSP,
        trusted_proxies: Sequence[str] | None = None,
        webauthn_user_verification: str = "preferred",
        webauthn_rp_id: str | None = None,
        webauthn_origins: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
        locale: i18n.LocaleHook | None = None,
    ) -> None:
        if not secret_key:
            raise ValueError("secret_key is required (MFA_SECRET_KEY)")
        self.prefix = "/" + prefix.strip("/")
        self.policy = Policy(policy, revocation_ttl)
        self.grace_days = grace
        self.step_up = StepUp(step_up)
        self.exempt = tuple(exempt)
        self.is_exempt = Exemptions(self.exempt)
        self.remember_days = remember_days
        self.login_url = login_url
        self.logout_url = logout_url  # reachable whatever the user still owes the gate
        self.clock = clock
        hasher = PasswordHasher(argon2_profile)
        self.accounts = Accounts(keys, hasher)
        self.password_checker = password_checker
        self.twofactor = TwoFactor(
            keys, SeedCipher(encryption_keys),
            backup_codes.BackupCodeHasher(derive_key(secret_key, "backup-code-hmac")), hasher,
            # SHA1/6/30 s is the only combination every authenticator app honours; the others are for hosts
            # whose users' apps are known to support them (the otpauth URI then spells them out).
            TotpParams(digest=totp_digest, digits=totp_digits, period=totp_period, issuer=issuer,
                       drift=totp_drift),
            throttle, audit, clock,
        )
        self.cipher = self.twofactor.cipher
        # Passkeys (WebAuthn): a bad RP id / origins pair refuses to start here rather than fail every ceremony.
        self.passkeys = Passkeys(keys, self.twofactor,
                                 RelyingParty(webauthn_rp_id, webauthn_origins, webauthn_user_verification, issuer),
                                 derive_key(secret_key, "webauthn-user-handle"), clock)
        self.sessions = Sessions(keys, secret_key, idle_timeout=idle_timeout,
                                 absolute_timeout=absolute_timeout, clock=clock)
        self.pages = Pages(template_dirs)
        # The host app's language for a request (given the ASGI scope or WSGI environ); asked by the adapters
        # only on the way to ``handle``, never on the fast lanes (``quick``/``passing``), which render nothing.
        self.locale_hook = locale
        self.issuer = issuer
        self.security_headers = [("x-frame-options", "DENY"), ("content-security-policy", content_security_policy),
                                 ("referrer-policy", "same-origin"), ("x-content-type-options", "nosniff")]
        self.client_ip = ClientAddress(trusted_proxies)
        # Paths with a rule of their own (the gate's pages, exemptions, step-up routes, logout): ``handle``'s
        # answer there is not its answer for the browser's other pages, so it is neither remembered nor
        # replayed there. The memo holds only what ``handle`` says of an ordinary page.
        self._owned_prefix = self.prefix + "/"
        self._special = (self.prefix, *self.is_exempt.roots, *(p.rstrip("/") for p in self.step_up.prefixes),
                         self.logout_url)
        self.confirmed = Confirmations(revocation_ttl, self.sessions.clock, special=self._special)
        # ``passing(path, identity, cookie_header, https)``: what ``handle`` let through for this Cookie header,
        # identity and scheme on an ordinary page less than ``revocation_ttl`` ago, while the ticket has nothing
        # due: the facts for ``scope["mfa"]`` (a fresh copy), or None to ask ``handle``. A cache of ``handle``'s
        # answer, no rule of its own; every signed-in request comes here first, hence a bound method, not a call
        # through one.
        self.passing = self.confirmed.get
        self._session_cookie = {False: cookie_name(SESSION_COOKIE, False), True: cookie_name(SESSION_COOKIE, True)}
        self._session_cookie_bytes = {k: v.encode() for k, v in self._session_cookie.items()}
        # What the authenticator app and the codes sheet call the account when the identity is an opaque id
        # (Django's user pk): called off the event loop, since it may query the host app's database.
        self.account_label = account_label

    # -- what the adapters ask -------------------------------------------------------------------
    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self._owned_prefix)

    def wants_body(self, method: str, path: str) -> bool:
        return method == "POST" and self.owns(path)

    def quick(self, path: str, identity: str | None, cookie_header: str | bytes, https: bool) -> Pass | None:
        """The answers that need no store: exempt paths, anonymous requests without a gate cookie, and what
        ``handle`` answered this Cookie header within ``revocation_ttl`` (``passing``). None: ask ``handle``.

        ``path`` is the path the app routes (``paths``); ``cookie_header`` as the server gave it (WSGI's
        text or ASGI's latin-1 bytes).
        """
        if path == self.prefix or path.startswith(self._owned_prefix):
            return None
        if self.is_exempt(path):
            return Pass({"exempt": True, "verified": False, "verified_at": None})
        if identity is None:
            if self._has_session_cookie(cookie_header, https):
                return None  # the app's login is gone: ``handle`` ends the gate session
            return Pass({"account": None, "enabled": False, "verified": False, "verified_at": None})
        facts = self.passing(path, identity, cookie_header, https)
        return None if facts is None else Pass(facts)

    def _has_session_cookie(self, header: str | bytes, https: bool) -> bool:
        if not header:
            return False
        if isinstance(header, bytes):
            if self._session_cookie_bytes[https] not in header:
                return False
            header = header.decode("latin-1")
        return cookie_value(header, self._session_cookie[https]) is not None

    def handle(self, req: Request) -> Op[Decision]:
        """The gate's one decision, made against the store; ``quick`` and ``passing`` only repeat it."""
        owned = self.owns(req.path)
        if not owned and self.is_exempt(req.path):
            return Pass({"exempt": True, "verified": False, "verified_at": None})
        if owned and req.path.startswith(self._owned_prefix + "static/"):
            return self.secured(static_asset(req.path[len(self._owned_prefix) + 7:]))
        if req.identity is None:
            return self.secured((yield from self._anonymous(req)))
        ctx = yield from self._context(req)
        if owned:
            from .views import dispatch

            decision = yield from dispatch(self, ctx)
            self.confirmed.forget(ctx.account)  # this instance may just have changed it
        else:
            decision = yield from self._guard(ctx)
            if req.path == self.logout_url and req.method not in ("GET", "HEAD") and ctx.session is not None:
                # Signing out of the app ends the gate session here and now, even if the browser's next page
                # is exempt or on another site (an SSO's logout) and never tells the gate.
                yield from self.sessions.delete(ctx.session.sid)
                self.confirmed.forget(ctx.account)
                ctx.cookies.append(self.clear_cookie(SESSION_COOKIE, req.https))
            elif isinstance(decision, Pass) and ctx.cacheable and not ctx.cookies and req.memo_key is not None:
                self.confirmed.put(req.path, req.memo_key, ctx.account, req.https, decision.mfa, ctx.due)
        return self.secured(self._with_cookies(decision, ctx.cookies))

    def secured(self, decision: Decision) -> Decision:
        """Every page and answer of the gate's own: never framed, never sniffed, no referrer off the site."""
        if isinstance(decision, Reply):
            have = {name for name, _ in decision.headers}
            decision.headers.extend(h for h in self.security_headers if h[0] not in have)
            if "cache-control" not in have:
                decision.headers.append(("cache-control", "no-store"))
        return decision

    def unavailable(self, req: Request) -> Reply:
        """Fail closed: the store is down, so nobody gets through."""
        if req.wants_json():
            return self.json(503, {"error": "unavailable"}, [("retry-after", "30")])
        lang = self.lang(req)
        body = self.pages.render("mfa_message.html", lang, title=lang.gettext("Temporarily unavailable"),
                                 prefix=req.root + self.prefix, issuer=self.issuer,
                                 message=lang.gettext("Sign-in is unavailable right now. Please try again in a "
                                                      "minute."))
        reply = Reply(503, [("content-type", "text/html; charset=utf-8"), ("retry-after", "30")], body.encode())
        self.secured(reply)
        return reply

    # -- decisions ---------------------------------------------------------------------------------
    def _anonymous(self, req: Request) -> Op[Decision]:
        # The app's login is gone: whatever this browser's gate session proved no longer applies.
        cookies = []
        ticket = self.sessions.loads(req.cookies.get(cookie_name(SESSION_COOKIE, req.https)))
        if ticket:
            yield from self.sessions.delete(ticket.sid)
            self.confirmed.forget(ticket.account)
            cookies.append(self.clear_cookie(SESSION_COOKIE, req.https))
        if self.owns(req.path):
            return self._with_cookies(self.redirect(self.login_redirect(req)), cookies)
        return Pass({"account": None, "enabled": False, "verified": False, "verified_at": None}, cookies)

    def login_redirect(self, req: Request) -> str:
        login = req.root + self.login_url if self.login_url.startswith("/") else self.login_url
        return f"{login}?next={quote(req.full_path, safe='/')}"

    def _context(self, req: Request) -> Op[Context]:
        account = req.identity or ""
        seed, epoch, passkeys = yield cmd("HMGET", self.twofactor.keys.account(account, "mfa"), "seed", "epoch",
                                          "passkeys")
        ctx = Context(req, account, bool(seed or passkeys), int(epoch or 0), None, base=req.root + self.prefix,
                      totp=bool(seed), passkeys=int(passkeys or 0))
        raw = req.cookies.get(cookie_name(SESSION_COOKIE, req.https))
        ticket = self.sessions.loads(raw)
        if ticket:
            session = yield from self.sessions.load(ticket.sid)
            if session and session.account == account and session.epoch == ctx.epoch:
                ctx.session = session
                sessions = self.sessions
                ctx.due = min(ticket.created + sessions.absolute_timeout, ticket.seen + sessions.idle_timeout,
                              ticket.seen + sessions.refresh_after)
                if sessions.stale(ticket):  # re-issued only here, after the store confirmed the record
                    ctx.cookies.append(self.session_cookie(session, req.https))
            elif session:  # another identity's, or ended by disable/regenerate/sign-out-everywhere
                yield from self.sessions.delete(ticket.sid)
                self.confirmed.forget(session.account)
        if raw and ctx.session is None:
            ctx.cookies.append(self.clear_cookie(SESSION_COOKIE, req.https))
        if ctx.enabled and not ctx.verified:
            yield from self._trusted_browser(ctx)
        return ctx

    def _trusted_browser(self, ctx: Context) -> Op[None]:
        req = ctx.req
        data = self.sessions.loads_trust(req.cookies.get(cookie_name(TRUST_COOKIE, req.https)),
                                         self.remember_days * 86400)
        if not data or data[0] != ctx.account or not self.remember_days:
            return
        trusted = yield from self.twofactor.is_trusted(ctx.account, data[1], ctx.epoch)
        if trusted:
            yield from self.mark_verified(ctx, "trusted")

    def _guard(self, ctx: Context) -> Op[Decision]:
        req = ctx.req
        if req.path == self.logout_url:  # signing out is never held up by what the user still owes
            return Pass(self.mfa_facts(ctx))
        if ctx.enabled and not ctx.verified:
            return self._challenge(ctx, f"{self.prefix}/verify")
        facts = self.mfa_facts(ctx)
        required = False
        if not ctx.enabled:
            required = (yield from self.policy.for_identity(ctx.account)) == "required"
        if required:
            due = yield from self.setup_due(ctx)
            if self.clock() >= due:
                return self._setup_required(ctx)
            facts["setup_due"] = due
            if not (ctx.session and ctx.session.noticed):
                ctx.cacheable = False  # the next page view still owes the notice
                if not req.wants_json() and req.method in ("GET", "HEAD"):
                    return self.redirect(f"{ctx.base}/required?next={quote(req.full_path, safe='/')}")
        max_age = self.step_up.max_age(req.path)
        if max_age is not None and not fresh(facts, max_age, self.clock()):
            return self.stale_reply(req, ctx.base, facts, max_age, required)
        return Pass(facts)

    def setup_due(self, ctx: Context) -> Op[float]:
        """When a user the policy requires 2FA of must have set it up: ``grace`` days after the rule first
        applied to them (kept in the store, so every instance and restart agrees)."""
        if self.grace_days <= 0:
            return 0.0
        key = self.twofactor.keys.account(ctx.account, "mfa")
        _, since = yield batch([cmd("HSETNX", key, "required_since", repr(self.clock())),
                                cmd("HGET", key, "required_since")])
        return float(since or self.clock()) + self.grace_days * 86400

    def _setup_required(self, ctx: Context) -> Reply:
        url = f"{ctx.base}/setup?next={quote(ctx.req.full_path, safe='/')}"
        if ctx.req.wants_json():
            return self.json(403, {"error": "mfa_setup_required", "setup_url": url})
        return self.redirect(url)

    def stale_reply(self, req: Request, base: str, facts: dict[str, Any], max_age: int, required: bool) -> Reply:
        """A step-up route asked for by a session whose last proof is older than ``max_age``: to the prompt
        ("Confirm it's you") and back; a form POSTed meanwhile is refused, not silently dropped."""
        if not facts.get("enabled") and required:
            return self.redirect(f"{base}/setup?next={quote(req.full_path, safe='/')}")
        page = "verify" if facts.get("enabled") else "confirm"
        target = req.full_path
        if req.method not in ("GET", "HEAD"):
            referer = urlsplit(req.headers.get("referer", ""))
            target = safe_next(referer.path + ("?" + referer.query if referer.query else ""), req.root + "/") \
                if referer.path else req.root + "/"
        url = f"{base}/{page}?next={quote(target, safe='/')}&max_age={max_age}"
        if req.wants_json():
            return self.json(401, {"error": "step_up_required", "verify_url": url, "max_age": max_age})
        if req.method in ("GET", "HEAD"):
            return self.redirect(url)
        lang = self.lang(req)
        body = self.pages.render("mfa_message.html", lang, prefix=base, issuer=self.issuer,
                                 title=lang.gettext("Confirm it's you"),
                                 message=lang.gettext("For your security, confirm it's you, then submit the form "
                                                      "again. What you entered was not sent."), link=url)
        return Reply(401, [("content-type", "text/html; charset=utf-8")], body.encode("utf-8"))

    def _challenge(self, ctx: Context, where: str) -> Reply:
        url = f"{ctx.req.root}{where}?next={quote(ctx.req.full_path, safe='/')}"
        if ctx.req.wants_json():
            return self.json(401, {"error": "mfa_required", "verify_url": url})
        return self.redirect(url)

    def mfa_facts(self, ctx: Context) -> dict[str, Any]:
        s = ctx.session
        facts = {"account": ctx.account, "enabled": ctx.enabled, "verified": ctx.verified,
                 "verified_at": s.verified_at if s else None, "method": s.method if s and s.verified_at else None}
        if s is not None and s.reauth_at:
            facts["reauth_at"] = s.reauth_at
        return facts

    # -- helpers for views -------------------------------------------------------------------------
    def ensure_session(self, ctx: Context) -> Op[GateSession]:
        if ctx.session is None:
            ctx.session = yield from self.sessions.create(ctx.account, ctx.epoch)
            ctx.cookies.append(self.session_cookie(ctx.session, ctx.req.https))
        return ctx.session

    def mark_verified(self, ctx: Context, method: str, epoch: int | None = None) -> Op[None]:
        """Second factor passed: a new session id, so a planted or stolen pre-2FA id is worthless."""
        session = yield from self.ensure_session(ctx)
        # In whole seconds, as the signed ticket carries it: scope["mfa"]["verified_at"] reads the same
        # whichever lane (the store's record, or the ticket alone) answers a request.
        ctx.session = yield from self.sessions.rotate(session, verified_at=float(int(self.clock())), method=method,
                                                      epoch=ctx.epoch if epoch is None else epoch)
        ctx.cookies.append(self.session_cookie(ctx.session, ctx.req.https))

    def check_password(self, ctx: Context, password: str) -> Op[str]:
        """'' when the password is right, else the reason ('wrong' or 'locked')."""
        if self.password_checker is not None:
            checker, account = self.password_checker, ctx.account

            def custom() -> Op[bool]:
                ok = yield Offload(lambda: bool(checker(account, password)))
                return bool(ok)

            check = custom()
        else:
            check = _authenticated(self.accounts, ctx.account, password)
        outcome = yield from self.twofactor.check_password(ctx.account, ctx.req.client_ip, check)
        return "" if outcome.ok else outcome.reason

    def label(self, account: str) -> Op[str]:
        """The name people know the account by (the identity itself unless the host app says otherwise)."""
        if self.account_label is None:
            return account
        fn = self.account_label
        name = yield Offload(lambda: fn(account))
        return str(name or account)

    def session_cookie(self, session: GateSession, https: bool) -> str:
        return self._cookie(cookie_name(SESSION_COOKIE, https), self.sessions.dumps(session), https, None)

    def trust_cookie(self, account: str, token_id: str, https: bool) -> str:
        return self._cookie(cookie_name(TRUST_COOKIE, https), self.sessions.dumps_trust(account, token_id),
                            https, self.remember_days * 86400)

    def clear_cookie(self, base: str, https: bool) -> str:
        return self._cookie(cookie_name(base, https), "", https, 0)

    @staticmethod
    def _cookie(name: str, value: str, https: bool, max_age: int | None) -> str:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if https:
            parts.append("Secure")
        return "; ".join(parts)

    def lang(self, req: Request) -> i18n.Lang:
        """The language of the pages for this request: the ``locale`` hook's, else Accept-Language's, else
        English (``i18n.choose``)."""
        return i18n.choose(req.locale, req.headers.get("accept-language", ""))

    def hook_locale(self, scope_or_environ: Any) -> str | None:
        """The ``locale`` hook's answer, called synchronously (WSGI, ``require_recent``); ASGI awaits its own."""
        if self.locale_hook is None:
            return None
        try:
            found: Any = self.locale_hook(scope_or_environ)
        except Exception:  # a broken hook costs the user their language, not the page
            logging.getLogger("mfa_middleware").exception("the locale hook failed; Accept-Language decides")
            return None
        if inspect.isawaitable(found):  # a coroutine hook where nothing can await it
            getattr(found, "close", lambda: None)()
            return None
        return str(found) if found else None

    def html(self, template: str, status: int = 200, lang: i18n.Lang | None = None, **context: Any) -> Reply:
        """A page; ``prefix`` (the gate's pages as the browser reaches them) is ``Context.base``."""
        context = {"prefix": self.prefix, "issuer": self.issuer, "digits": self.twofactor.params.digits, **context}
        lang = lang or i18n.lang(i18n.DEFAULT)
        body = self.pages.render(template, lang, **context)
        return Reply(status, [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store"),
                              ("content-language", lang.code)], body.encode("utf-8"))

    @staticmethod
    def redirect(url: str) -> Reply:
        return Reply(303, [("location", url), ("cache-control", "no-store")], b"")

    @staticmethod
    def json(status: int, data: dict[str, Any], extra: list[tuple[str, str]] | None = None) -> Reply:
        return Reply(status, [("content-type", "application/json"), *(extra or [])], json.dumps(data).encode())

    @staticmethod
    def _with_cookies(decision: Decision, cookies: list[str]) -> Decision:
        if isinstance(decision, Reply):
            decision.headers.extend(("set-cookie", c) for c in cookies)
        else:
            decision.cookies.extend(cookies)
        return decision


_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def static_asset(name: str) -> Reply:
    """The pages' stylesheet and script (no inline ones: the pages' CSP allows only these)."""
    kind = _STATIC_TYPES.get(Path(name).suffix)
    if kind is None or "/" in name or name.startswith("."):
        return Reply(404, [("content-type", "text/plain; charset=utf-8")], b"not found")
    try:
        body = (_STATIC / name).read_bytes()
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return Reply(404, [("content-type", "text/plain; charset=utf-8")], b"not found")
    return Reply(200, [("content-type", kind), ("cache-control", "public, max-age=3600")], body)


def _authenticated(accounts: Accounts, account_id: str, password: str) -> Op[bool]:
    account = yield from accounts.authenticate(account_id, password)
    return account is not None
