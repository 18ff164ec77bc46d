"""The gate's decision core, free of I/O and frameworks (sans-IO).

An adapter turns a request into ``Request`` facts and runs ``Gate.handle(request)`` (a store operation)
with its store; the result is ``Pass`` (call the app, with ``mfa`` facts and maybe cookies to set) or
``Reply`` (send this response). ``asgi.py`` and ``wsgi.py`` only translate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from . import backup_codes
from .accounts import Accounts
from .crypto import SeedCipher, derive_key
from .pages import Pages
from .passwords import OWASP, Argon2Profile, PasswordHasher
from .revocation import EpochCache
from .sessions import SESSION_COOKIE, TRUST_COOKIE, GateSession, Sessions, Ticket, cookie_name
from .store import Keys, Op, cmd
from .store.effects import Offload
from .totp import Digest, TotpParams
from .twofactor import AuditHook, ThrottlePolicy, TwoFactor

DEFAULT_EXEMPT = ("/nic/update", "/nic/checkip")  # routers and scripts: no browser session
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

    @property
    def full_path(self) -> str:
        return self.path + ("?" + urlencode(self.query) if self.query else "")

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


class _Seen:
    """What one Cookie header says to ``Gate.quick``: whether it holds a gate cookie, the verified ticket, and
    for a verified session the facts to hand the app and when something next falls due (a timeout or the
    cookie's re-issue), all of which depend on the ticket alone."""

    __slots__ = ("account", "due", "epoch", "present", "ticket", "verified")

    def __init__(self, present: bool, ticket: Ticket | None, sessions: Sessions | None = None) -> None:
        self.present, self.ticket = present, ticket
        self.account: str | None = None
        self.epoch, self.due = -1, 0.0
        self.verified: dict[str, Any] | None = None
        if ticket is not None and sessions is not None and ticket.verified_at:
            self.account, self.epoch = ticket.account, ticket.epoch
            self.due = min(ticket.created + sessions.absolute_timeout, ticket.seen + sessions.idle_timeout,
                           ticket.seen + sessions.refresh_after)
            self.verified = {"account": ticket.account, "enabled": True, "verified": True,
                             "verified_at": float(ticket.verified_at), "method": ticket.method}


_NO_COOKIE = _Seen(False, None)
# ``passing``'s memo entry: identity, https, the epoch-cache entry checked, until when that check holds
# (epoch-cache clock), when the ticket next falls due (gate clock), the facts.
_Confirmed = tuple[str, bool, object, float, float, dict[str, Any]]
_MEMO_HEADER_MAX = 4096  # longer Cookie headers are worked out afresh every time
_MEMO_ENTRIES_MAX = 10_000  # per memo; a full one is emptied


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site relative paths: no scheme, host, protocol-relative ``//``, backslash or control char."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return default
    return target


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
        policy: str = "optional",
        exempt: Sequence[str] = DEFAULT_EXEMPT,
        issuer: str = "mfa-ddns",
        remember_days: int = 30,
        password_checker: PasswordCheck | None = None,
        argon2_profile: Argon2Profile = OWASP,
        login_url: str = "/login",
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        if policy not in ("optional", "required"):
            raise ValueError("policy must be 'optional' or 'required'")
        if not secret_key:
            raise ValueError("secret_key is required (MFA_SECRET_KEY)")
        self.prefix = "/" + prefix.strip("/")
        self.policy = policy
        self.exempt = tuple(exempt)
        self.remember_days = remember_days
        self.login_url = login_url
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
        self.sessions = Sessions(keys, secret_key, idle_timeout=idle_timeout,
                                 absolute_timeout=absolute_timeout, clock=clock)
        self.pages = Pages(template_dirs)
        self.issuer = issuer
        self.epochs = EpochCache(ttl=revocation_ttl)
        # Precomputed for the per-request checks (``owns``, ``is_exempt``, ``quick``).
        self._owned_prefix = self.prefix + "/"
        self._exempt_exact = frozenset(self.exempt)
        self._exempt_prefixes = tuple(p.rstrip("/") + "/" for p in self.exempt)
        # Every path ``quick`` treats specially starts with one of these (``passing`` leaves them all to it).
        self._special = (self.prefix, *(p.rstrip("/") for p in self.exempt))
        self._session_cookie = {False: cookie_name(SESSION_COOKIE, False), True: cookie_name(SESSION_COOKIE, True)}
        # What a Cookie header says (``_Seen``) by its exact text (a browser sends the same header request
        # after request): a pure function of the header, so caching it cannot change a decision.
        self._seen_memo: tuple[dict[str | bytes, _Seen], dict[str | bytes, _Seen]] = ({}, {})  # by https
        # A verified session ``quick`` let through, by its Cookie header: what ``passing`` compares (see there).
        self._passes: dict[str | bytes, _Confirmed] = {}
        # What the authenticator app and the codes sheet call the account when the identity is an opaque id
        # (Django's user pk): called off the event loop, since it may query the host app's database.
        self.account_label = account_label

    # -- what the adapters ask -------------------------------------------------------------------
    def is_exempt(self, path: str) -> bool:
        return path in self._exempt_exact or path.startswith(self._exempt_prefixes)

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self._owned_prefix)

    def wants_body(self, method: str, path: str) -> bool:
        return method == "POST" and self.owns(path)

    def quick(self, path: str, identity: str | None, cookie_header: str | bytes, https: bool) -> Pass | None:
        """The common request decided locally, with no store round trip; None means "ask ``handle``".

        Exempt paths, anonymous requests without a gate cookie, and requests whose signed ticket matches
        the identity and the account's epoch as this instance learned it less than a second ago.
        This runs on every request, so it is written for speed (see ``bench/profile_gate.py``): what a
        Cookie header says is worked out once per distinct header (``_Seen``; ``cookie_header`` as the
        server gave it, WSGI's text or ASGI's latin-1 bytes), and a verified session whose ticket has
        nothing due (no timeout, no re-issue) is one comparison away from its answer.
        """
        if path == self.prefix or path.startswith(self._owned_prefix):
            return None
        if path in self._exempt_exact or (self._exempt_prefixes and path.startswith(self._exempt_prefixes)):
            return Pass({"exempt": True, "verified": False, "verified_at": None})
        seen = self._seen(cookie_header, https) if cookie_header else _NO_COOKIE
        if identity is None:
            return None if seen.present else Pass({"account": None, "enabled": False, "verified": False,
                                                   "verified_at": None})
        known = self.epochs.get(identity)
        if known is None:
            return None
        if known[1] and seen.account == identity and seen.epoch == known[0] and seen.verified is not None \
                and self.sessions.clock() < seen.due:
            entry = self.epochs.entries.get(identity)
            if entry is not None and entry[0] is known and len(cookie_header) <= _MEMO_HEADER_MAX:
                # For ``passing``: what was checked, and until when. One tuple, stored at once: a WSGI
                # thread reads either the old confirmation or the new one.
                if len(self._passes) >= _MEMO_ENTRIES_MAX:
                    self._passes.clear()
                self._passes[cookie_header] = (identity, https, entry, entry[1] + self.epochs.soft_ttl, seen.due,
                                               seen.verified)
            return Pass(dict(seen.verified), [])  # a copy: the app may change its scope["mfa"]
        return self._decide(identity, known, seen.ticket, https)

    def passing(self, path: str, identity: str, cookie_header: str | bytes, https: bool) -> dict[str, Any] | None:
        """``quick``'s answer for a verified session it has already let through, in a few comparisons: the
        facts for ``scope["mfa"]`` (a fresh copy), or None to ask ``quick``.

        The same Cookie header, the same identity, the very epoch-cache entry ``quick`` checked its ticket
        against (``EpochCache.entries``: a refresh, a revocation learned, ``forget`` or eviction each replace
        or drop it) while that entry is younger than the cache's refresh age, and the ticket's next timeout or
        re-issue not yet due; no path ``quick`` treats specially. Each is a condition under which ``quick``
        would answer the same ``Pass`` without cookies, so this adds no rule of its own (``tests/
        test_gate_quick.py`` checks both against each other). It exists because this is every request of a
        signed-in user: no ``Pass``, no clock but the two deadlines, no method calls beyond the memo's.
        """
        hit = self._passes.get(cookie_header)
        if hit is None or hit[0] != identity or hit[1] is not https or self.epochs.entries.get(identity) is not hit[2] \
                or self.epochs.clock() >= hit[3] or self.sessions.clock() >= hit[4] or path.startswith(self._special):
            return None
        return hit[5].copy()

    def _decide(self, identity: str, known: tuple[int, bool], ticket: Ticket | None, https: bool) -> Pass | None:
        """``quick`` for everything but a verified session with nothing due: timeouts, re-issue, policy."""
        epoch, enabled = known
        sessions = self.sessions
        now = sessions.clock()
        if ticket is not None and (now >= ticket.created + sessions.absolute_timeout
                                   or now >= ticket.seen + sessions.idle_timeout):
            ticket = None  # timed out: as if absent (``Sessions.loads``)
        if ticket is None:
            if enabled or self.policy == "required":
                return None
            return Pass({"account": identity, "enabled": False, "verified": False, "verified_at": None,
                         "method": None})
        if ticket.account != identity or ticket.epoch != epoch:
            return None  # another user's or a revoked session: let handle() clear it
        verified_at = ticket.verified_at
        if not enabled:
            if self.policy == "required":
                return None
        elif not verified_at:
            return None
        facts = {"account": identity, "enabled": enabled, "verified": bool(verified_at),
                 "verified_at": float(verified_at) if verified_at else None,
                 "method": ticket.method if verified_at else None}
        if now - ticket.seen >= sessions.refresh_after:  # ``Sessions.stale``
            return Pass(facts, [self.refreshed_cookie(ticket, https)])
        return Pass(facts, [])

    def _seen(self, header: str | bytes, https: bool) -> _Seen:
        memo = self._seen_memo[https]
        try:
            return memo[header]
        except KeyError:
            pass
        text = header if isinstance(header, str) else header.decode("latin-1")
        raw = cookie_value(text, self._session_cookie[https])
        seen = _Seen(raw is not None, self.sessions.signed(raw) if raw else None, self.sessions)
        if len(header) <= _MEMO_HEADER_MAX:
            if len(memo) >= _MEMO_ENTRIES_MAX:
                memo.clear()
            memo[header] = seen
        return seen

    def refreshed_cookie(self, ticket: Ticket, https: bool) -> str:
        session = GateSession(ticket.sid, ticket.account, ticket.epoch, float(ticket.created), "",
                              float(ticket.verified_at) or None, ticket.method)
        return self.session_cookie(session, https)

    def handle(self, req: Request) -> Op[Decision]:
        if self.is_exempt(req.path) and not self.owns(req.path):
            return Pass({"exempt": True, "verified": False, "verified_at": None})
        if req.identity is None:
            return (yield from self._anonymous(req))
        ctx = yield from self._context(req)
        if self.owns(req.path):
            from .views import dispatch

            decision = yield from dispatch(self, ctx)
            self.epochs.forget(ctx.account)  # this instance may just have changed it
        else:
            decision = yield from self._guard(ctx)
        return self._with_cookies(decision, ctx.cookies)

    def unavailable(self, req: Request) -> Reply:
        """Fail closed: the store is down, so nobody gets through."""
        if req.wants_json():
            return self.json(503, {"error": "unavailable"}, [("retry-after", "30")])
        body = self.pages.render("mfa_message.html", title="Temporarily unavailable",
                                 message="Sign-in is unavailable right now. Please try again in a minute.")
        return Reply(503, [("content-type", "text/html; charset=utf-8"), ("retry-after", "30")], body.encode())

    # -- decisions ---------------------------------------------------------------------------------
    def _anonymous(self, req: Request) -> Op[Decision]:
        # The app's login is gone: whatever this browser's gate session proved no longer applies.
        cookies = []
        ticket = self.sessions.loads(req.cookies.get(cookie_name(SESSION_COOKIE, req.https)))
        if ticket:
            yield from self.sessions.delete(ticket.sid)
            cookies.append(self.clear_cookie(SESSION_COOKIE, req.https))
        if self.owns(req.path):
            return self._with_cookies(self.redirect(self._login_redirect(req)), cookies)
        return Pass({"account": None, "enabled": False, "verified": False, "verified_at": None}, cookies)

    def _login_redirect(self, req: Request) -> str:
        return f"{self.login_url}?next={quote(req.full_path, safe='/')}"

    def _context(self, req: Request) -> Op[Context]:
        account = req.identity or ""
        seed, epoch = yield cmd("HMGET", self.twofactor.keys.account(account, "mfa"), "seed", "epoch")
        ctx = Context(req, account, bool(seed), int(epoch or 0), None)
        self.epochs.put(account, ctx.epoch, ctx.enabled)
        raw = req.cookies.get(cookie_name(SESSION_COOKIE, req.https))
        ticket = self.sessions.loads(raw)
        if ticket:
            session = yield from self.sessions.load(ticket.sid)
            if session and session.account == account and session.epoch == ctx.epoch:
                ctx.session = session
                if self.sessions.stale(ticket):
                    ctx.cookies.append(self.session_cookie(session, req.https))
            elif session:  # another identity's, or ended by disable/regenerate/sign-out-everywhere
                yield from self.sessions.delete(ticket.sid)
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
        if ctx.enabled and not ctx.verified:
            return self._challenge(ctx, f"{self.prefix}/verify")
        if not ctx.enabled and self.policy == "required":
            return self._challenge(ctx, f"{self.prefix}/setup")
        return Pass(self.mfa_facts(ctx))
        yield  # pragma: no cover

    def _challenge(self, ctx: Context, where: str) -> Reply:
        url = f"{where}?next={quote(ctx.req.full_path, safe='/')}"
        if ctx.req.wants_json():
            return self.json(401, {"error": "mfa_required", "verify_url": url})
        return self.redirect(url)

    def mfa_facts(self, ctx: Context) -> dict[str, Any]:
        s = ctx.session
        return {"account": ctx.account, "enabled": ctx.enabled, "verified": ctx.verified,
                "verified_at": s.verified_at if s else None, "method": s.method if s and s.verified_at else None}

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

    def html(self, template: str, status: int = 200, **context: Any) -> Reply:
        context = {"prefix": self.prefix, "issuer": self.issuer, "digits": self.twofactor.params.digits, **context}
        body = self.pages.render(template, **context)
        return Reply(status, [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")],
                     body.encode("utf-8"))

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


def _authenticated(accounts: Accounts, account_id: str, password: str) -> Op[bool]:
    account = yield from accounts.authenticate(account_id, password)
    return account is not None
