"""The account owner's page: hosts with their addresses, groups (create, rotate, delete, hosts), and the
account-password-updates switch. Reusable Starlette routes; the host app says who is logged in
(``identity(request) -> account id | None``) and provides ``request.session`` (SessionMiddleware) for the
CSRF token. Mount them behind the 2FA gate. Create and rotate ask for the account password again.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Callable

from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ddns_update.account_settings import AccountSettings
from ddns_update.groups import GroupRefused, Groups
from ddns_update.hosts import Hosts
from mfa_middleware.accounts import Accounts
from mfa_middleware.crypto import constant_time_equals
from mfa_middleware.store import AsyncStore


def split(value: object) -> list[str]:
    return [h for h in str(value or "").split(",") if h.strip()]


Identity = Callable[[Request], str | None]
_E = html.escape


def owner_routes(store: AsyncStore, accounts: Accounts, identity: Identity, path: str = "/account") -> list[Route]:
    hosts, groups, switches = Hosts(store.keys), Groups(store.keys, accounts.hasher), AccountSettings(store.keys)

    def token(request: Request) -> str:
        if not request.session.get("ddns_csrf"):
            request.session["ddns_csrf"] = secrets.token_urlsafe(32)
        return str(request.session["ddns_csrf"])

    def form(request: Request, action: str, fields: str, label: str) -> str:
        return (f'<form method="post" action="{path}/{action}"><input type="hidden" name="csrf_token" '
                f'value="{token(request)}">{fields}<button>{_E(label)}</button></form>')

    async def show(request: Request, account_id: str, notice: str = "", status: int = 200) -> Response:
        records = await store.run(hosts.list(account_id))
        group_list = await store.run(groups.list(account_id))
        current = await store.run(switches.get(account_id)) or {}
        pw_field = '<input type="password" name="password" placeholder="account password" required>'
        rows = "".join(f"<tr><td>{_E(r.host)}</td><td>{_E(r.ipv4 or '-')}</td><td>{_E(r.ipv6 or '-')}</td>"
                       f"<td>{'offline' if r.offline else 'online'}</td><td>{r.updated_at or 'never'}</td></tr>"
                       for r in records)
        glist = "".join(
            f"<li><b>{_E(g.name)}</b> login <code>{_E(g.login)}</code>: {_E(', '.join(g.hosts) or '-')}"
            + form(request, "rotate", f'<input type="hidden" name="group" value="{_E(g.name)}">{pw_field}', "Rotate")
            + form(request, "delete", f'<input type="hidden" name="group" value="{_E(g.name)}">', "Delete")
            + form(request, "hosts", f'<input type="hidden" name="group" value="{_E(g.name)}">'
                   '<input name="add" placeholder="add hosts"><input name="remove" placeholder="remove hosts">',
                   "Change hosts") + "</li>" for g in group_list)
        deny = current.get("account_password_updates") == "deny"
        body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hosts &amp; groups</title></head>
<body><h1>Hosts &amp; groups</h1>{notice}
<table><tr><th>host</th><th>IPv4</th><th>IPv6</th><th>state</th><th>updated</th></tr>{rows}</table>
<h2>Groups</h2><ul>{glist}</ul>
{form(request, "create", '<input name="group" placeholder="group name" required>'
      '<input name="hosts" placeholder="host1,host2" required>' + pw_field, "Create group")}
<h2>Update clients</h2><p>Account password updates: {"denied" if deny else "allowed"}</p>
{form(request, "switch", f'<input type="hidden" name="value" value="{"allow" if deny else "deny"}">',
      "Allow" if deny else "Deny")}</body></html>"""
        return HTMLResponse(body, status)

    async def page(request: Request) -> Response:
        account_id = identity(request)
        if account_id is None:
            return RedirectResponse(f"/login?next={path}", 303)
        return await show(request, account_id)

    async def act(request: Request) -> Response:
        account_id = identity(request)
        if account_id is None:
            return RedirectResponse(f"/login?next={path}", 303)
        try:
            data = await request.form()
        except ClientDisconnect:  # the client left mid-body: nobody to answer
            return Response(status_code=400)
        sent, expected = str(data.get("csrf_token", "")), request.session.get("ddns_csrf")
        if not expected or not constant_time_equals(str(expected), sent):
            return HTMLResponse("CSRF check failed; reload the page.", 400)
        action, group = request.path_params["action"], str(data.get("group", ""))
        if action in ("create", "rotate"):
            ok = await store.run(accounts.authenticate(account_id, str(data.get("password", ""))))
            if ok is None:
                return await show(request, account_id, '<p role="alert">Wrong password.</p>', 401)
        try:
            notice = await _do(action, account_id, group, data)
        except (GroupRefused, ValueError) as exc:
            return await show(request, account_id, f'<p role="alert">{_E(str(exc))}</p>', 400)
        return await show(request, account_id, notice)

    async def _do(action: str, account_id: str, group: str, data: FormData) -> str:
        get = data.get
        if action == "create":
            made, password = await store.run(groups.create(account_id, group, split(get("hosts"))))
            return (f'<p>Group created. Username <code data-username>{_E(made.login)}</code>, password '
                    f'<code data-password>{_E(password)}</code> (shown only now).</p>')
        if action == "rotate":
            login, password = await store.run(groups.rotate(account_id, group))
            return f'<p>New password for <code>{_E(login)}</code>: <code data-password>{_E(password)}</code></p>'
        if action == "delete":
            await store.run(groups.delete(account_id, group))
            return "<p>Group deleted.</p>"
        if action == "hosts":
            await store.run(groups.set_hosts(account_id, group, split(get("add")), split(get("remove"))))
            return "<p>Group hosts changed.</p>"
        if action == "switch":
            await store.run(switches.set(account_id, "account_password_updates", get("value") == "allow"))
            return "<p>Saved.</p>"
        raise ValueError(f"unknown action {action!r}")

    return [Route(path, page), Route(path + "/{action}", act, methods=["POST"])]
