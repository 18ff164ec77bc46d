"""The demo site (Starlette): its own login, a home page, the 2FA gate around it,
and ``/nic/update`` and ``/nic/checkip`` mounted beside it. ``python -m examples.demo`` or ``make run``."""

from __future__ import annotations

import contextlib
import html
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ddns_update.app import CHECKIP_PATH, UPDATE_PATH, CheckIpEndpoint, UpdateEndpoint, build_service
from ddns_update.hosts import HostRefused, Hosts
from ddns_update.pages import owner_routes
from mfa_middleware import metrics
from mfa_middleware.accounts import AccountExists, Accounts
from mfa_middleware.asgi import MFAMiddleware
from mfa_middleware.config import Settings
from mfa_middleware.crypto import constant_time_equals
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import AsyncStore, MemoryStore, StoreError, open_async_store

log = logging.getLogger("examples.demo")
DEMO_USER, DEMO_PASSWORD, DEMO_HOST = "demo", "demo-password", "demo.example.test"
# The admin area: 2FA is required of the administrator (optional for everyone else), and its pages want a
# second factor given within the last five minutes (DEMO_ADMIN_STEP_UP seconds, for trying it out quicker).
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password"
ADMIN_PATH = "/admin/"


def admins_required(identity: str) -> str:
    """The demos' per-user policy: the gate asks this (at most once a second per user)."""
    return "required" if identity == ADMIN_USER else "optional"


def admin_step_up() -> dict[str, int]:
    return {ADMIN_PATH: int(os.environ.get("DEMO_ADMIN_STEP_UP", "300") or 300)}


def admin_body(user: str, mfa: dict[str, Any] | None) -> tuple[str, str, int]:
    """The admin area's page: (title, body, status) for whoever asks."""
    if user != ADMIN_USER:
        return "Not allowed", "<h1>Not allowed</h1><p>Only the administrator may see this page.</p>", 403
    when = (mfa or {}).get("verified_at")
    return "Admin area", f"""<h1>Admin area</h1>
<p data-admin-area>You confirmed it's you {int(time.time() - when) if when else "?"} seconds ago.
This area asks again when that was more than {admin_step_up()[ADMIN_PATH]} seconds ago.</p>
<nav><a href="/">Home</a></nav>""", 200

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#222}}
input,button{{font-size:1rem;padding:.5rem;margin:.25rem 0;width:100%;box-sizing:border-box}}
button{{background:#0a7d45;color:#fff;border:0;border-radius:4px;cursor:pointer}}
.error{{color:#b00}} nav a{{margin-inline-end:1rem}}</style></head><body>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(request: Request, submitted: Any) -> bool:
    expected = request.session.get("csrf")
    return bool(expected) and isinstance(submitted, str) and constant_time_equals(expected, submitted)


# The login form's answer while the store is away: nobody logs in (fail closed, as the gate does), no 500.
UNAVAILABLE = ("Temporarily unavailable",
               '<p role="alert">Sign-in is unavailable right now. Please try again in a minute.</p>')


def login_body(action: str, csrf_field: str, csrf_value: str, error: str = "") -> str:
    """The demos' login form (every framework's demo renders this one): fields ``username``, ``password``."""
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<h1>Log in</h1>{err}
<form method="post" action="{html.escape(action)}">
<input type="hidden" name="{csrf_field}" value="{html.escape(csrf_value)}">
<label>Username<input name="username" autocomplete="username" required autofocus></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form>"""


def login_form(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    action = "/login?next=" + request.query_params.get("next", "/")
    return page("Log in", login_body(action, "csrf_token", csrf_token(request), error), status)


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: no scheme, no host, no protocol-relative //."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login(request: Request) -> Response:
    if request.method != "POST":  # GET, or HEAD (Starlette routes it here too)
        return login_form(request)
    try:
        form = await request.form()
    except ClientDisconnect:  # the client left mid-body: nobody to answer (Starlette would log a traceback)
        return Response(status_code=400)
    if not csrf_ok(request, form.get("csrf_token")):
        return login_form(request, "Your session expired; please try again.", 400)
    accounts: Accounts = request.app.state.accounts
    store: AsyncStore = request.app.state.store
    try:
        account = await store.run(accounts.authenticate(str(form.get("username", "")),
                                                        str(form.get("password", ""))))
    except StoreError as exc:
        log.error("login unavailable: %s", exc)
        return page(*UNAVAILABLE, 503)
    if account is None:
        return login_form(request, "Wrong username or password.", 401)
    request.session.clear()
    request.session["user"] = account.id
    return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)


async def logout(request: Request) -> Response:
    if request.method != "POST":
        return page("Log out", f"""<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{csrf_token(request)}"><button>Log out</button></form>""")
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def admin(request: Request) -> Response:
    user = request.session.get("user")
    if not user:
        return RedirectResponse(f"/login?next={ADMIN_PATH}", status_code=303)
    return page(*admin_body(str(user), request.scope.get("mfa")))


async def home(request: Request) -> Response:
    user = request.session.get("user")
    if not user:
        return RedirectResponse("/login?next=/", status_code=303)
    return page("Home", f"""<h1>Hello, {html.escape(user)}</h1>
<nav><a href="/mfa/security">Security</a><a href="/account">Hosts &amp; groups</a><a href="/logout">Log out</a></nav>
<p>You are logged in.</p>""")


def session_identity(scope: dict[str, Any]) -> str | None:
    """The demo's identity hook: the account id its own login put in the session."""
    session = scope.get("session") or {}
    user = session.get("user")
    return str(user) if user else None


async def seed_demo(store: AsyncStore, accounts: Accounts) -> None:
    with contextlib.suppress(AccountExists):
        await store.run(accounts.create(DEMO_USER, DEMO_PASSWORD))
    with contextlib.suppress(AccountExists):
        await store.run(accounts.create(ADMIN_USER, ADMIN_PASSWORD))
    try:
        await store.run(Hosts(store.keys).add(DEMO_USER, [DEMO_HOST]))
    except HostRefused as exc:  # e.g. another account holds it in a shared Redis
        log.warning("demo host not seeded: %s", exc)


def create_app(settings: Settings | None = None, memory: MemoryStore | None = None) -> Starlette:
    settings = settings or Settings.from_env(demo=True)
    store = open_async_store(settings.redis_url, memory=memory or MemoryStore())
    accounts = Accounts(store.keys, PasswordHasher())
    updates = UpdateEndpoint(build_service(settings, store.keys, accounts.hasher), store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.demo_seed:
            await seed_demo(store, accounts)
        yield
        await store.close()

    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route(ADMIN_PATH, admin),
        Route(UPDATE_PATH, updates, methods=["GET", "HEAD", "POST"]),  # exempt from the gate by default
        Route(CHECKIP_PATH, CheckIpEndpoint(updates.service.policy.trusted_proxies)),  # likewise
        *owner_routes(store, accounts, lambda request: session_identity(request.scope)),  # /account, gated
    ]
    if settings.metrics_path:
        routes.append(Route(settings.metrics_path, metrics.asgi_app()))
    middleware = [
        Middleware(SessionMiddleware, secret_key=settings.secret_key, session_cookie="demo_session",
                   same_site="lax", https_only=False),
        # Inside the session middleware, so the gate sees the demo's login (session["user"]).
        Middleware(MFAMiddleware, identity=session_identity, store=store, secret_key=settings.secret_key,
                   encryption_keys=settings.encryption_keys, login_url="/login", policy=admins_required,
                   step_up=admin_step_up(),
                   exempt=(UPDATE_PATH, CHECKIP_PATH, *filter(None, [settings.metrics_path]))),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings, app.state.store, app.state.accounts = settings, store, accounts
    return app


def start(flavour: str = "") -> Settings:
    """What every demo does first: log to stderr, read the settings, say where it runs and how to log in."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(demo=True)
    where = "Redis at " + settings.redis_url if settings.redis_url else "the embedded in-memory store"
    label = f"Demo site ({flavour})" if flavour else "Demo site"
    print(f"{label}: http://{settings.host}:{settings.port}/  (state in {where})", flush=True)
    if settings.demo_seed:
        print(f"Demo login: {DEMO_USER} / {DEMO_PASSWORD}   host: {DEMO_HOST}", flush=True)
        print(f"Admin login: {ADMIN_USER} / {ADMIN_PASSWORD}   (2FA required; {ADMIN_PATH} asks again after "
              f"{admin_step_up()[ADMIN_PATH]} s)", flush=True)
    return settings


def main() -> None:
    import uvicorn

    settings = start()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
