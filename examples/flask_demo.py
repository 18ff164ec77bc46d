"""The demo site as a Flask (WSGI) app behind the WSGI gate: ``python -m examples.flask_demo``.

Same login form (``username``, ``password``, ``csrf_token``) and pages as ``examples.demo``; state in the
embedded in-memory store unless ``REDIS_URL`` is set.
"""

from __future__ import annotations

import contextlib
import html
import logging
import secrets
from typing import Any

from flask import Flask, redirect, request, session

from ddns_update.app import CHECKIP_PATH, UPDATE_PATH, WsgiCheckIpApp, WsgiUpdateApp, build_service
from ddns_update.flask_pages import owner_blueprint
from ddns_update.hosts import HostRefused, Hosts
from mfa_middleware import metrics
from mfa_middleware.accounts import AccountExists, Accounts
from mfa_middleware.config import Settings
from mfa_middleware.crypto import constant_time_equals
from mfa_middleware.identity import flask_session
from mfa_middleware.passwords import OWASP, Argon2Profile, PasswordHasher
from mfa_middleware.store import MemoryStore, Store, StoreError, open_store
from mfa_middleware.wsgi import MFAWsgiMiddleware

from .demo import (
    ADMIN_PASSWORD,
    ADMIN_PATH,
    ADMIN_USER,
    DEMO_HOST,
    DEMO_PASSWORD,
    DEMO_USER,
    PAGE,
    UNAVAILABLE,
    admin_body,
    admin_step_up,
    admins_required,
    login_body,
    safe_next,
    start,
)

log = logging.getLogger("examples.flask_demo")


def _page(title: str, body: str, status: int = 200) -> tuple[str, int]:
    return PAGE.format(title=html.escape(title), body=body), status


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def _user(_request: Any = None) -> str | None:
    """Who the demo's own login put in the session (also the owner page's identity hook)."""
    user = session.get("user")
    return str(user) if user else None


def _login_form(error: str = "", status: int = 200) -> tuple[str, int]:
    action = "/login?next=" + request.args.get("next", "/")
    return _page("Log in", login_body(action, "csrf_token", _csrf(), error), status)


def mount(default: Any, apps: dict[str, Any]) -> Any:
    """A WSGI dispatcher: an exact path (or a path under it) goes to its app, the rest to ``default``."""

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, target in apps.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return target(environ, start_response)
        return default(environ, start_response)

    return dispatch


def create_app(settings: Settings | None = None, memory: MemoryStore | None = None, *,
               argon2_profile: Argon2Profile = OWASP, store: Store | None = None) -> Flask:
    settings = settings or Settings.from_env(demo=True)
    store = store or open_store(settings.redis_url, memory=memory or MemoryStore())
    accounts = Accounts(store.keys, PasswordHasher(argon2_profile))
    app = Flask(__name__)
    app.secret_key = settings.secret_key
    app.config.update(SESSION_COOKIE_NAME="demo_session", SESSION_COOKIE_SAMESITE="Lax")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method != "POST":  # GET, or HEAD (Flask routes it here too)
            return _login_form()
        expected = session.get("csrf")
        if not expected or not constant_time_equals(expected, request.form.get("csrf_token", "")):
            return _login_form("Your session expired; please try again.", 400)
        try:
            account = store.run(accounts.authenticate(request.form.get("username", ""),
                                                      request.form.get("password", "")))
        except StoreError as exc:
            log.error("login unavailable: %s", exc)
            return _page(*UNAVAILABLE, 503)
        if account is None:
            return _login_form("Wrong username or password.", 401)
        session.clear()
        session["user"] = account.id
        return redirect(safe_next(request.args.get("next")), 303)

    @app.route("/logout", methods=["GET", "POST"])
    def logout() -> Any:
        if request.method != "POST":
            return _page("Log out", f"""<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{_csrf()}"><button>Log out</button></form>""")
        session.clear()
        return redirect("/login", 303)

    @app.route("/")
    def home() -> Any:
        user = _user()
        if not user:
            return redirect("/login?next=/", 303)
        return _page("Home", f"""<h1>Hello, {html.escape(user)}</h1>
<nav><a href="/mfa/security">Security</a><a href="/account">Hosts &amp; groups</a><a href="/logout">Log out</a></nav>
<p>You are logged in.</p>""")

    @app.route(ADMIN_PATH)
    def admin() -> Any:
        user = _user()
        if not user:
            return redirect(f"/login?next={ADMIN_PATH}", 303)
        return _page(*admin_body(user, request.environ.get("mfa")))

    app.register_blueprint(owner_blueprint(store, accounts, _user))  # /account, behind the gate like /

    gated = MFAWsgiMiddleware(
        app.wsgi_app, identity=flask_session(app), store=store, secret_key=settings.secret_key,
        encryption_keys=settings.encryption_keys, argon2_profile=argon2_profile, login_url="/login",
        policy=admins_required, step_up=admin_step_up(),
    )
    # Beside the gate, not behind it: routers have no browser session, Prometheus has no login.
    service = build_service(settings, store.keys, accounts.hasher)
    beside: dict[str, Any] = {UPDATE_PATH: WsgiUpdateApp(service, store),
                              CHECKIP_PATH: WsgiCheckIpApp(service.policy.trusted_proxies)}
    if settings.metrics_path:
        beside[settings.metrics_path] = metrics.wsgi_app()
    app.wsgi_app = mount(gated, beside)  # type: ignore[method-assign]
    app.extensions["mfa_store"], app.extensions["mfa_accounts"] = store, accounts
    if settings.demo_seed:
        for user, password in ((DEMO_USER, DEMO_PASSWORD), (ADMIN_USER, ADMIN_PASSWORD)):
            with contextlib.suppress(AccountExists):
                store.run(accounts.create(user, password))
        with contextlib.suppress(HostRefused):  # e.g. another account holds it in a shared Redis
            store.run(Hosts(store.keys).add(DEMO_USER, [DEMO_HOST]))
    return app


def main() -> None:
    import waitress

    settings = start("Flask")
    # A production WSGI server, not Werkzeug's development one (which chunks replies and says not to be used
    # in production); waitress adds nothing to set up and runs wherever Python does.
    # waitress drops X-Forwarded-For from every peer it was not told to trust; the app decides instead, by
    # TRUSTED_PROXIES (client_address), as the Starlette demo does.
    waitress.serve(create_app(settings), host=settings.host, port=settings.port, threads=8,
                   clear_untrusted_proxy_headers=False)


if __name__ == "__main__":
    main()
