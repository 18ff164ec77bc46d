"""The account owner's page on Flask (WSGI): a Blueprint over the framework-neutral ``OwnerPage`` core.

Flask is not a dependency of this package (only of its test extra), so it lives here, apart from
``ddns_update.pages``: import this module only in a Flask app. Same pages, forms and answers as the Starlette
routes; the page's CSRF token is kept in Flask's ``session`` under ``pages.CSRF_KEY`` (``ddns_csrf``), so the
app needs a ``secret_key``. Register it inside the app that the WSGI 2FA gate wraps.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Request, Response, redirect, request, session
from werkzeug.wrappers import Response as BaseResponse

from ddns_update.pages import CSRF_KEY, PAGE_HEADERS, Answer, Look, OwnerPage, session_token
from mfa_middleware.accounts import Accounts
from mfa_middleware.store import Store

FlaskIdentity = Callable[[Request], str | None]


def owner_blueprint(store: Store, accounts: Accounts, identity: FlaskIdentity, path: str = "/account",
                    name: str = "ddns_owner") -> Blueprint:
    """``GET PATH`` and ``POST PATH/<action>`` on the blocking ``store``; ``identity(request)`` says which
    account is logged in (``None``: redirect to ``/login?next=PATH``)."""
    core = OwnerPage(store.keys, accounts, path)
    blueprint = Blueprint(name, __name__)

    def page() -> BaseResponse:
        account_id = identity(request)
        if account_id is None:
            return redirect(core.login_redirect, 303)
        look = Look.for_request(request.environ, request.root_path)
        return _respond(store.run(core.render(account_id, session_token(session), look=look)))

    def act(action: str) -> BaseResponse:
        account_id = identity(request)
        if account_id is None:
            return redirect(core.login_redirect, 303)
        look = Look.for_request(request.environ, request.root_path)
        return _respond(store.run(core.handle(account_id, action, request.form, session.get(CSRF_KEY), look)))

    blueprint.add_url_rule(path, "page", page)
    blueprint.add_url_rule(path + "/<action>", "act", act, methods=["POST"])
    return blueprint


def _respond(answer: Answer) -> Response:
    status, body = answer
    return Response(body, status, mimetype="text/html", headers=list(PAGE_HEADERS))
