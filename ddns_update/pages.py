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

import html
import secrets
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ddns_update.account_settings import AccountSettings
from ddns_update.groups import Group, GroupRefused, Groups
from ddns_update.hosts import HostRecord, HostRefused, Hosts
from mfa_middleware.accounts import Accounts
from mfa_middleware.crypto import constant_time_equals
from mfa_middleware.gate import DEFAULT_CSP
from mfa_middleware.store import AsyncStore, Keys, Op

CSRF_KEY = "ddns_csrf"  # the session key of the page's CSRF token (apart from the host app's own)
CSRF_FAILED = "CSRF check failed; reload the page."
Answer = tuple[int, str]  # (HTTP status, HTML body)
Form = Mapping[str, object]  # Starlette's FormData and Werkzeug's MultiDict both are one
_E = html.escape
_REAUTH_INPUT = '<input type="password" name="password" placeholder="account password" required>'


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


def _alert(message: str) -> str:
    return f'<p role="alert">{_E(message)}</p>'


class OwnerPage:
    """The page's logic for any framework: each method is an ``Op`` answering ``(status, html)``."""

    def __init__(self, keys: Keys, accounts: Accounts, path: str = "/account") -> None:
        self.accounts, self.path = accounts, path
        self.hosts, self.groups, self.switches = Hosts(keys), Groups(keys, accounts.hasher), AccountSettings(keys)

    @property
    def login_redirect(self) -> str:
        """Where an adapter sends a visitor nobody logged in (303)."""
        return f"/login?next={self.path}"

    def render(self, account_id: str, csrf: str, notice: str = "", status: int = 200) -> Op[Answer]:
        """The page for ``account_id``; ``notice`` is trusted HTML shown above the hosts."""
        records = yield from self.hosts.list(account_id)
        group_list = yield from self.groups.list(account_id)
        current = (yield from self.switches.get(account_id)) or {}
        deny = current.get("account_password_updates") == "deny"
        return status, _Html(self.path, csrf).page(records, group_list, deny, notice)

    def handle(self, account_id: str, action: str, form: Form, session_csrf: object) -> Op[Answer]:
        """A POST to ``PATH/ACTION``; ``session_csrf`` is the token the session holds (``None`` if none)."""
        if not csrf_matches(session_csrf, form.get("csrf_token")):
            return 400, CSRF_FAILED
        csrf = str(session_csrf)
        if action in ("create", "rotate"):
            ok = yield from self.accounts.authenticate(account_id, str(form.get("password", "")))
            if ok is None:
                return (yield from self.render(account_id, csrf, _alert("Wrong password."), 401))
        try:
            notice = yield from self._do(action, account_id, str(form.get("group", "")), form)
        except (GroupRefused, HostRefused, ValueError) as exc:
            return (yield from self.render(account_id, csrf, _alert(str(exc)), 400))
        return (yield from self.render(account_id, csrf, notice))

    def _do(self, action: str, account_id: str, group: str, form: Form) -> Op[str]:
        if action == "create":
            made, password = yield from self.groups.create(account_id, group, split(form.get("hosts")))
            return (f'<p>Group created. Username <code data-username>{_E(made.login)}</code>, password '
                    f'<code data-password>{_E(password)}</code> (shown only now).</p>')
        if action == "rotate":
            login, password = yield from self.groups.rotate(account_id, group)
            return f'<p>New password for <code>{_E(login)}</code>: <code data-password>{_E(password)}</code></p>'
        if action == "delete":
            yield from self.groups.delete(account_id, group)
            return "<p>Group deleted.</p>"
        if action == "hosts":
            yield from self.groups.set_hosts(account_id, group, split(form.get("add")), split(form.get("remove")))
            return "<p>Group hosts changed.</p>"
        if action == "iid":
            host = str(form.get("host", ""))
            value = yield from self.hosts.set_interface_id(account_id, host, str(form.get("ipv6_interface_id", "")))
            return f"<p>IPv6 interface id of <code>{_E(host)}</code>: <code>{_E(value or 'none')}</code></p>"
        if action == "switch":
            yield from self.switches.set(account_id, "account_password_updates", form.get("value") == "allow")
            return "<p>Saved.</p>"
        raise ValueError(f"unknown action {action!r}")


class _Html:
    """The page's markup; every form posts to ``PATH/ACTION`` with the CSRF token."""

    def __init__(self, path: str, csrf: str) -> None:
        self.path, self.csrf = path, csrf

    def form(self, action: str, fields: str, label: str) -> str:
        return (f'<form method="post" action="{self.path}/{action}"><input type="hidden" name="csrf_token" '
                f'value="{self.csrf}">{fields}<button>{_E(label)}</button></form>')

    def page(self, records: Sequence[HostRecord], groups: Sequence[Group], deny: bool, notice: str) -> str:
        rows = "".join(map(self.host_row, records))
        items = "".join(map(self.group_item, groups))
        create = self.form("create", '<input name="group" placeholder="group name" required>'
                           '<input name="hosts" placeholder="host1,host2" required>' + _REAUTH_INPUT, "Create group")
        switch = self.form("switch", f'<input type="hidden" name="value" value="{"allow" if deny else "deny"}">',
                           "Allow" if deny else "Deny")
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hosts &amp; groups</title></head>
<body><h1>Hosts &amp; groups</h1>{notice}
<table><tr><th>host</th><th>IPv4</th><th>IPv6</th><th>state</th><th>updated</th><th>IPv6 interface id</th></tr>
{rows}</table>
<h2>Groups</h2><ul>{items}</ul>
{create}
<h2>Update clients</h2><p>Account password updates: {"denied" if deny else "allowed"}</p>
{switch}</body></html>"""

    def host_row(self, r: HostRecord) -> str:
        # An update with an IPv6 prefix (a FRITZ!Box's <ip6lanprefix>) sets the AAAA to prefix + this id.
        iid = self.form("iid", f'<input type="hidden" name="host" value="{_E(r.host)}">'
                        f'<input name="ipv6_interface_id" value="{_E(r.ipv6_interface_id or "")}" '
                        f'placeholder="::1:2:3:4" aria-label="IPv6 interface id of {_E(r.host)}">', "Set")
        return (f"<tr><td>{_E(r.host)}</td><td>{_E(r.ipv4 or '-')}</td><td>{_E(r.ipv6 or '-')}</td>"
                f"<td>{'offline' if r.offline else 'online'}</td><td>{r.updated_at or 'never'}</td>"
                f"<td>{iid}</td></tr>")

    def group_item(self, g: Group) -> str:
        named = f'<input type="hidden" name="group" value="{_E(g.name)}">'
        return (f"<li><b>{_E(g.name)}</b> login <code>{_E(g.login)}</code>: {_E(', '.join(g.hosts) or '-')}"
                + self.form("rotate", named + _REAUTH_INPUT, "Rotate")
                + self.form("delete", named, "Delete")
                + self.form("hosts", named + '<input name="add" placeholder="add hosts">'
                            '<input name="remove" placeholder="remove hosts">', "Change hosts") + "</li>")




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
        return _respond(await store.run(core.render(account_id, session_token(request.session))))

    async def act(request: Request) -> Response:
        account_id = identity(request)
        if account_id is None:
            return RedirectResponse(core.login_redirect, 303)
        try:
            data = await request.form()
        except ClientDisconnect:  # the client left mid-body: nobody to answer
            return Response(status_code=400)
        action = request.path_params["action"]
        return _respond(await store.run(core.handle(account_id, action, data, request.session.get(CSRF_KEY))))

    return [Route(path, page), Route(path + "/{action}", act, methods=["POST"])]


def _respond(answer: Answer) -> Response:
    status, body = answer
    return HTMLResponse(body, status, headers=dict(PAGE_HEADERS))
