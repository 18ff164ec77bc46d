"""The account owner's page: hosts with their addresses, groups (create, rotate, delete, hosts), and the
account-password-updates switch. Mount it behind the 2FA gate. Create and rotate ask for the account password
again.

Written once, sans-IO (like the store operations it calls): ``OwnerPage`` renders the page and handles its
POST actions as store operations (``Op``), run with ``store.run`` on the blocking ``Store`` or the
``AsyncStore``, and answers ``(status, html)``. It never sees a request: thin adapters read the logged-in
account, the form and the session's CSRF token and turn the answer into a response. ``owner_routes`` here is
the Starlette one (``request.session`` from SessionMiddleware); ``ddns_update.flask_pages`` is Flask's. Both
keep the page's CSRF token in the session under ``CSRF_KEY`` and redirect to ``/login?next=PATH`` when
nobody is logged in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ddns_update.account_settings import AccountSettings
from ddns_update.groups import BadGroupName, GroupRefused, Groups
from ddns_update.hosts import BadHostname, BadInterfaceId, HostRefused, Hosts
from mfa_middleware import i18n
from mfa_middleware.accounts import Accounts
from mfa_middleware.crypto import constant_time_equals
from mfa_middleware.gate import DEFAULT_CSP
from mfa_middleware.pages import Pages
from mfa_middleware.store import AsyncStore, Keys, Op

CSRF_KEY = "ddns_csrf"  # the session key of the page's CSRF token (apart from the host app's own)
Answer = tuple[int, str]  # (HTTP status, HTML body)
Form = Mapping[str, object]  # Starlette's FormData and Werkzeug's MultiDict both are one
TEMPLATES = Path(__file__).parent / "templates"
ACTIONS = ("create", "rotate", "delete", "hosts", "iid", "switch")


# The owner page may show a new group password: never cached, never framed (the gate's pages say the same).
PAGE_HEADERS = (("cache-control", "no-store"), ("x-frame-options", "DENY"),
                ("content-security-policy", DEFAULT_CSP), ("referrer-policy", "same-origin"),
                ("x-content-type-options", "nosniff"))


def split(value: object) -> list[str]:
    return [h for h in str(value or "").split(",") if h.strip()]


def session_token(session: MutableMapping[str, Any]) -> str:
    """The page's CSRF token from a framework's session mapping, made on first use."""
    if not session.get(CSRF_KEY):
        session[CSRF_KEY] = secrets.token_urlsafe(32)
    return str(session[CSRF_KEY])


def csrf_matches(expected: object, sent: object) -> bool:
    return bool(expected) and constant_time_equals(str(expected), str(sent or ""))


@dataclass(frozen=True)
class Look:
    """How one request sees the page: its language, and where the gate's stylesheet is (the page is drawn on
    the gate's base template, so it looks like the gate's pages). ``for_request`` reads both off the request."""

    lang: i18n.Lang = field(default_factory=lambda: i18n.lang(i18n.DEFAULT))
    prefix: str = "/mfa"
    issuer: str = "mfa-ddns"

    @classmethod
    def for_request(cls, scope_or_environ: Any, root: str = "") -> Look:
        gate = scope_or_environ.get("mfa.gate")
        lang = i18n.for_request(scope_or_environ)
        if gate is None:
            return cls(lang)
        return cls(lang, root + gate.prefix, gate.issuer)


@dataclass
class Outcome:
    """What an action did (``notice``: a kind and its values) or why it was refused (``error``, ``field``)."""

    notice: dict[str, Any] | None = None
    error: str = ""
    field: str = ""
    status: int = 200


class OwnerPage:
    """The page's logic for any framework: each method is an ``Op`` answering ``(status, html)``."""

    def __init__(self, keys: Keys, accounts: Accounts, path: str = "/account") -> None:
        self.accounts, self.path = accounts, path
        self.hosts, self.groups, self.switches = Hosts(keys), Groups(keys, accounts.hasher), AccountSettings(keys)
        self.pages = Pages([TEMPLATES])  # the gate's templates (its base) come after these

    @property
    def login_redirect(self) -> str:
        """Where an adapter sends a visitor nobody logged in (303)."""
        return f"/login?next={self.path}"

    def render(self, account_id: str, csrf: str, outcome: Outcome | None = None, look: Look | None = None,
               typed: Form | None = None) -> Op[Answer]:
        """The page for ``account_id``, with what the last action did or why it was refused."""
        look, outcome = look or Look(), outcome or Outcome()
        records = yield from self.hosts.list(account_id)
        group_list = yield from self.groups.list(account_id)
        current = (yield from self.switches.get(account_id)) or {}
        never = look.lang.gettext("never")
        hosts = [{"host": r.host, "ipv4": r.ipv4, "ipv6": r.ipv6, "offline": r.offline,
                  "updated": look.lang.datetime(r.updated_at, never), "ipv6_interface_id": r.ipv6_interface_id}
                 for r in records]
        kept = {"group": str((typed or {}).get("group", "")), "hosts": str((typed or {}).get("hosts", ""))}
        body = self.pages.render("ddns_account.html", look.lang, prefix=look.prefix, issuer=look.issuer,
                                 path=self.path, csrf=csrf, hosts=hosts, groups=group_list,
                                 deny=current.get("account_password_updates") == "deny", notice=outcome.notice,
                                 error=outcome.error, error_field=outcome.field,
                                 typed=kept if outcome.error else {"group": "", "hosts": ""})
        return outcome.status, body

    def message(self, look: Look, status: int, title: str, message: str) -> Answer:
        body = self.pages.render("mfa_message.html", look.lang, prefix=look.prefix, issuer=look.issuer,
                                 title=title, message=message, link=self.path)
        return status, body

    def handle(self, account_id: str, action: str, form: Form, session_csrf: object,
               look: Look | None = None) -> Op[Answer]:
        """A POST to ``PATH/ACTION``; ``session_csrf`` is the token the session holds (``None`` if none)."""
        look = look or Look()
        _ = look.lang.gettext
        if not csrf_matches(session_csrf, form.get("csrf_token")):
            return self.message(look, 400, _("Please try again"),
                                _("The form expired or did not come from this site. Please try again."))
        if action not in ACTIONS:
            return self.message(look, 404, _("Not found"), _("There is no such page."))
        csrf, group = str(session_csrf), str(form.get("group", ""))
        if action in ("create", "rotate"):
            ok = yield from self.accounts.authenticate(account_id, str(form.get("password", "")))
            if ok is None:
                where = "create-password" if action == "create" else "rotate-" + group
                return (yield from self.render(account_id, csrf, Outcome(error=_("Wrong password."), field=where,
                                                                         status=401), look, form))
        try:
            notice = yield from self._do(action, account_id, group, form)
        except (GroupRefused, HostRefused, ValueError) as exc:
            refused = Outcome(error=refusal(look.lang, exc), field=_field(action, group, form, exc), status=400)
            return (yield from self.render(account_id, csrf, refused, look, form))
        return (yield from self.render(account_id, csrf, Outcome(notice=notice), look))

    def _do(self, action: str, account_id: str, group: str, form: Form) -> Op[dict[str, Any]]:
        if action == "create":
            made, password = yield from self.groups.create(account_id, group, split(form.get("hosts")))
            return {"kind": "created", "params": {"login": made.login, "password": password}}
        if action == "rotate":
            login, password = yield from self.groups.rotate(account_id, group)
            return {"kind": "rotated", "params": {"login": login, "password": password}}
        if action == "delete":
            yield from self.groups.delete(account_id, group)
            return {"kind": "deleted", "params": {}}
        if action == "hosts":
            yield from self.groups.set_hosts(account_id, group, split(form.get("add")), split(form.get("remove")))
            return {"kind": "hosts", "params": {}}
        if action == "iid":
            host = str(form.get("host", ""))
            value = yield from self.hosts.set_interface_id(account_id, host, str(form.get("ipv6_interface_id", "")))
            return {"kind": "iid" if value else "iid-cleared", "params": {"host": host, "value": value or ""}}
        yield from self.switches.set(account_id, "account_password_updates", form.get("value") == "allow")
        return {"kind": "saved", "params": {}}


def refusal(lang: i18n.Lang, exc: Exception) -> str:
    """Why an action was refused, in the user's words and language (the exceptions' own texts are English,
    for logs and the CLI)."""
    _ = lang.gettext
    if isinstance(exc, BadGroupName):
        return (_("“%(name)s” is not a group name: use 1 to 63 of the letters a-z, the digits 0-9, “-” and “_”.")
                % {"name": exc.raw})
    if isinstance(exc, BadHostname):
        return _("“%(name)s” is not a valid host name.") % {"name": exc.raw}
    if isinstance(exc, BadInterfaceId):
        return _("“%(value)s” is not an IPv6 interface id (written like ::1:2:3:4).") % {"value": exc.raw}
    reason, params = getattr(exc, "reason", ""), getattr(exc, "params", {})
    if reason == "exists":
        return _("You already have a group called “%(name)s”.") % params
    if reason == "nogroup":
        return _("You have no group called “%(name)s”.") % params
    if reason == "nohost":
        return _("“%(host)s” is not one of your hosts.") % params
    return _("That could not be done. Check what you entered and try again.")


def _field(action: str, group: str, form: Form, exc: Exception) -> str:
    """The field a refusal is about, so the page marks it and moves focus there."""
    if action == "create":
        return "create-group" if isinstance(exc, BadGroupName) else "create-hosts"
    if action == "hosts":
        return "add-" + group
    if action == "iid":
        return "iid-" + str(form.get("host", ""))
    return ""


# --- Starlette adapter -------------------------------------------------------------------------------------

Identity = Callable[[Request], str | None]


def owner_routes(store: AsyncStore, accounts: Accounts, identity: Identity, path: str = "/account") -> list[Route]:
    """``GET PATH`` and ``POST PATH/{action}`` for Starlette; the app says who is logged in
    (``identity(request) -> account id | None``) and provides ``request.session`` (SessionMiddleware)."""
    core = OwnerPage(store.keys, accounts, path)

    async def page(request: Request) -> Response:
        account_id = identity(request)
        if account_id is None:
            return RedirectResponse(core.login_redirect, 303)
        look = Look.for_request(request.scope, request.scope.get("root_path", ""))
        return _respond(await store.run(core.render(account_id, session_token(request.session), look=look)))

    async def act(request: Request) -> Response:
        account_id = identity(request)
        if account_id is None:
            return RedirectResponse(core.login_redirect, 303)
        try:
            data = await request.form()
        except ClientDisconnect:  # the client left mid-body: nobody to answer
            return Response(status_code=400)
        action = request.path_params["action"]
        look = Look.for_request(request.scope, request.scope.get("root_path", ""))
        return _respond(await store.run(core.handle(account_id, action, data, request.session.get(CSRF_KEY), look)))

    return [Route(path, page), Route(path + "/{action}", act, methods=["POST"])]


def _respond(answer: Answer) -> Response:
    status, body = answer
    return HTMLResponse(body, status, headers=dict(PAGE_HEADERS))
