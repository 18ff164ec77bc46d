"""The demo site as a FastAPI app: ``python -m examples.fastapi_demo``.

The gate goes in with ``app.add_middleware(MFAMiddleware, ...)``. FastAPI (like Starlette) runs the middleware
added *last* outermost, so the session middleware is added after the gate: it must wrap the gate, which reads
the login from ``request.session``. ``/nic/update`` and ``/nic/checkip`` are mounted beside the pages and are
exempt from the gate.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from ddns_update.app import CHECKIP_PATH, METHODS, UPDATE_PATH, CheckIpEndpoint, UpdateEndpoint, build_service
from mfa_middleware import MFAMiddleware, starlette_session
from mfa_middleware.accounts import Accounts
from mfa_middleware.config import Settings
from mfa_middleware.passwords import OWASP, Argon2Profile, PasswordHasher
from mfa_middleware.store import MemoryStore, open_async_store

from .demo import (
    ADMIN_PATH,
    admin_body,
    admin_step_up,
    admins_required,
    csrf_ok,
    csrf_token,
    login_form,
    page,
    safe_next,
    seed_demo,
    start,
)

log = logging.getLogger("examples.fastapi_demo")


def create_app(settings: Settings | None = None, memory: MemoryStore | None = None, *,
               argon2_profile: Argon2Profile = OWASP) -> FastAPI:
    settings = settings or Settings.from_env(demo=True)
    store = open_async_store(settings.redis_url, memory=memory or MemoryStore())
    accounts = Accounts(store.keys, PasswordHasher(argon2_profile))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.demo_seed:
            await seed_demo(store, accounts)
        yield
        await store.close()

    app = FastAPI(title="mfa-ddns FastAPI demo", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        return login_form(request)

    @app.post("/login")
    async def login(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                    csrf: Annotated[str, Form(alias="csrf_token")] = "") -> Response:
        if not csrf_ok(request, csrf):
            return login_form(request, "Your session expired; please try again.", 400)
        account = await store.run(accounts.authenticate(username, password))
        if account is None:
            return login_form(request, "Wrong username or password.", 401)
        request.session.clear()
        request.session["user"] = account.id
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)

    @app.get("/logout", response_class=HTMLResponse)
    async def logout_page(request: Request) -> Response:
        return page("Log out", f"""<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{csrf_token(request)}"><button>Log out</button></form>""")

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        user = request.session.get("user")
        if not user:
            return RedirectResponse("/login?next=/", status_code=303)
        mfa = request.scope.get("mfa") or {}
        how = "with two-factor authentication" if mfa.get("verified") else "with your password"
        return page("Home", f"""<h1>Hello, {html.escape(user)}</h1>
<nav><a href="/mfa/security">Security</a><a href="/logout">Log out</a></nav>
<p data-signed-in-with="{"2fa" if mfa.get("verified") else "password"}">You are signed in {how}.</p>""")

    @app.get(ADMIN_PATH, response_class=HTMLResponse)
    async def admin(request: Request) -> Response:
        user = request.session.get("user")
        if not user:
            return RedirectResponse(f"/login?next={ADMIN_PATH}", status_code=303)
        return page(*admin_body(str(user), request.scope.get("mfa")))

    # The update endpoint is a plain ASGI app; routers authenticate with HTTP Basic, never with the gate.
    updates = UpdateEndpoint(build_service(settings, store.keys, accounts.hasher), store)
    app.add_route(UPDATE_PATH, updates, methods=list(METHODS), include_in_schema=False)
    # The gate's default exemptions cover both paths.
    app.add_route(CHECKIP_PATH, CheckIpEndpoint(updates.service.policy.trusted_proxies), include_in_schema=False)

    app.add_middleware(MFAMiddleware, identity=starlette_session("user"), store=store,
                       secret_key=settings.secret_key, encryption_keys=settings.encryption_keys,
                       argon2_profile=argon2_profile, login_url="/login", policy=admins_required,
                       step_up=admin_step_up())
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key, session_cookie="demo_session",
                       same_site="lax", https_only=False)
    app.state.store, app.state.accounts = store, accounts
    return app


def main() -> None:
    import uvicorn

    settings = start("FastAPI")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
