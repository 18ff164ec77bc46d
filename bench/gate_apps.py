"""Apps for the gate overhead benchmark (``uvicorn --factory bench.gate_apps:NAME``; Flask ones by
gunicorn as ``bench.gate_apps:flask_plain()``).

Each is a hello-world whose own login is a session cookie (Starlette's ``SessionMiddleware``, Flask's
signed session): ``plain`` is that app, ``gated`` the same app with the 2FA gate inside its session
middleware, ``bare`` a hello-world with no session at all (reference), ``session`` only Starlette's
``SessionMiddleware`` (reference, as issue 7 asks).
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mfa_middleware import MFAMiddleware, MFAWsgiMiddleware, flask_session, starlette_session
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import open_async_store, open_store

SECRET = os.environ.get("MFA_SECRET_KEY", "bench-secret-key-0123456789abcdef")
ENC = os.environ.get("MFA_ENCRYPTION_KEY", "bench-encryption-key-0123456789ab")


def staff_only(identity: str) -> str:
    """A per-user policy, as host apps configure one: the gated benchmarks run with it (the target must hold)."""
    return "required" if identity.startswith("admin") else "optional"


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello, world\n")


def bare() -> Starlette:
    return Starlette(routes=[Route("/", hello)])


def _starlette(gated: bool) -> Starlette:
    store = open_async_store(os.environ.get("REDIS_URL"))
    accounts = Accounts(store.keys, PasswordHasher(FAST))

    async def login(request: Request) -> Response:
        form = await request.form()
        account = await store.run(accounts.authenticate(str(form.get("username")), str(form.get("password"))))
        if account is None:
            return PlainTextResponse("no", 401)
        request.session["user"] = account.id
        return PlainTextResponse("ok")

    middleware = [Middleware(SessionMiddleware, secret_key=SECRET)]
    if gated:
        middleware.append(Middleware(MFAMiddleware, identity=starlette_session("user"), store=store,
                                     secret_key=SECRET, encryption_keys=ENC, argon2_profile=FAST, policy=staff_only))
    return Starlette(routes=[Route("/", hello), Route("/login", login, methods=["POST"])], middleware=middleware)


def session() -> Starlette:
    return _starlette(gated=False)


def gated() -> Starlette:
    return _starlette(gated=True)


def _flask(gated: bool) -> Any:
    from flask import Flask, request
    from flask import session as flask_login_session

    app = Flask("bench")
    app.secret_key = SECRET
    store = open_store(os.environ.get("REDIS_URL"))
    accounts = Accounts(store.keys, PasswordHasher(FAST))

    @app.get("/")
    def index() -> str:
        return "hello, world\n"

    @app.post("/login")
    def login() -> tuple[str, int]:
        account = store.run(accounts.authenticate(request.form.get("username", ""), request.form.get("password", "")))
        if account is None:
            return "no", 401
        flask_login_session["user"] = account.id
        return "ok", 200

    if gated:
        app.wsgi_app = MFAWsgiMiddleware(app.wsgi_app, identity=flask_session(app, "user"),  # type: ignore[method-assign]
                                         store=store, secret_key=SECRET, encryption_keys=ENC, argon2_profile=FAST,
                                         policy=staff_only)
    return app


def flask_plain() -> Any:
    return _flask(gated=False)


def flask_gated() -> Any:
    return _flask(gated=True)
