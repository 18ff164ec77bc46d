"""The same small site behind each adapter (Starlette + ASGI gate, Flask + WSGI gate), driven over real HTTP
through httpx's ASGI/WSGI transports, with a real redis-server and a clock the test can move."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import httpx
from flask import Flask, jsonify, redirect, request, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mfa_middleware import FAST, MFAMiddleware, MFAWsgiMiddleware, flask_session, require_recent, starlette_session
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import open_store
from mfa_middleware.totp import TotpParams, code_at, current_step

SECRET = "test-secret-key-0123456789abcdef"
ENC_KEY = "test-encryption-key-0123456789ab"
PASSWORD = "correct horse battery"
ADAPTERS = ["asgi", "wsgi"]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _starlette_app(redis_url: str, **gate: Any) -> Starlette:
    from mfa_middleware.store import open_async_store

    store = open_async_store(redis_url)
    accounts = Accounts(store.keys, PasswordHasher(FAST))

    async def login(req: Request) -> Response:
        form = await req.form()
        account = await store.run(accounts.authenticate(str(form.get("username", "")),
                                                        str(form.get("password", ""))))
        if account is None:
            return PlainTextResponse("bad login", 401)
        req.session.clear()
        req.session["user"] = account.id
        return RedirectResponse("/", 303)

    async def logout(req: Request) -> Response:
        req.session.clear()
        return RedirectResponse("/login", 303)

    async def home(req: Request) -> Response:
        if not req.session.get("user"):
            return RedirectResponse("/login", 303)
        return JSONResponse({"user": req.session["user"], "mfa": req.scope.get("mfa")})

    async def nic_update(req: Request) -> Response:
        return PlainTextResponse("good 192.0.2.1")

    async def billing(req: Request) -> Response:  # a step-up route when the site configures one
        return PlainTextResponse(f"billing {req.method}")

    async def sensitive(req: Request) -> Any:  # step-up decided by the handler
        return require_recent(req.scope, 120) or PlainTextResponse("sensitive ok")

    routes = [Route("/", home), Route("/login", login, methods=["POST"]), Route("/logout", logout, methods=["POST"]),
              Route("/nic/update", nic_update), Route("/billing/pay", billing, methods=["GET", "POST"]),
              Route("/sensitive", sensitive)]
    mw = [Middleware(SessionMiddleware, secret_key=SECRET, session_cookie="app_session"),
          Middleware(MFAMiddleware, identity=starlette_session("user"), store=store, secret_key=SECRET,
                     argon2_profile=FAST, **{"encryption_keys": ENC_KEY, **gate})]
    return Starlette(routes=routes, middleware=mw)


def _flask_app(redis_url: str, **gate: Any) -> Flask:
    store = open_store(redis_url)
    accounts = Accounts(store.keys, PasswordHasher(FAST))
    app = Flask("gate_test")
    app.secret_key = SECRET

    @app.post("/login")
    def login() -> Any:
        account = store.run(accounts.authenticate(request.form.get("username", ""),
                                                  request.form.get("password", "")))
        if account is None:
            return "bad login", 401
        session.clear()
        session["user"] = account.id
        return redirect("/", 303)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect("/login", 303)

    @app.get("/")
    def home() -> Any:
        if not session.get("user"):
            return redirect("/login", 303)
        return jsonify(user=session["user"], mfa=request.environ.get("mfa"))

    @app.get("/nic/update")
    def nic_update() -> Any:
        return "good 192.0.2.1"

    @app.route("/billing/pay", methods=["GET", "POST"])
    def billing() -> Any:
        return f"billing {request.method}"

    @app.get("/sensitive")
    def sensitive() -> Any:
        return require_recent(request.environ, 120) or "sensitive ok"

    app.wsgi_app = MFAWsgiMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, identity=flask_session(app), store=store, secret_key=SECRET,
        argon2_profile=FAST, **{"encryption_keys": ENC_KEY, **gate})
    return app


@dataclass
class Browser:
    """One browser (cookie jar) on one site."""

    kind: str
    client: Any
    csrf: str = ""

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if self.kind == "asgi":
            return await self.client.request(method, path, **kw)  # type: ignore[no-any-return]
        return await anyio.to_thread.run_sync(lambda: self.client.request(method, path, **kw))  # type: ignore[no-any-return]

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, data=data or {}, **kw)

    async def form(self, path: str, data: dict[str, str], page: str | None = None) -> httpx.Response:
        """GET the page holding the form (for its CSRF token), then POST it."""
        r = await self.get(page or path)
        token = csrf_of(r.text)
        return await self.post(path, {"csrf_token": token, **data})

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return await self.post("/login", {"username": username, "password": password})

    async def logout(self) -> None:
        await self.post("/logout")

    def cookie(self, name: str) -> str | None:
        for c in self.client.cookies.jar:
            if c.name == name:
                return str(c.value)
        return None


@dataclass
class Site:
    kind: str
    redis_url: str
    clock: Clock = field(default_factory=Clock)
    gate: dict[str, Any] = field(default_factory=dict)
    base_url: str = "http://testserver"
    app: Any = None

    def __post_init__(self) -> None:
        self.gate.setdefault("clock", self.clock)
        make = _starlette_app if self.kind == "asgi" else _flask_app
        self.app = make(self.redis_url, **self.gate)
        self.store = open_store(self.redis_url)
        self.accounts = Accounts(self.store.keys, PasswordHasher(FAST))
        self.seeds: dict[str, str] = {}

    def browser(self, base_url: str | None = None) -> Browser:
        url = base_url or self.base_url
        if self.kind == "asgi":
            client: Any = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=url)
        else:
            client = httpx.Client(transport=httpx.WSGITransport(app=self.app), base_url=url)
        return Browser(self.kind, client)

    def add_account(self, username: str) -> None:
        self.store.run(self.accounts.create(username, PASSWORD))

    def code(self, username: str, offset_steps: int = 0) -> str:
        params = TotpParams()
        return code_at(self.seeds[username], current_step(self.clock(), params) + offset_steps, params)

    async def enroll(self, browser: Browser, username: str) -> list[str]:
        """Turn on 2FA for a logged-in browser through the setup page; the backup codes shown."""
        r = await browser.get("/mfa/setup")
        assert r.status_code == 200, r.text
        self.seeds[username] = key_of(r.text)
        r = await browser.post("/mfa/setup", {"csrf_token": csrf_of(r.text), "password": PASSWORD,
                                              "code": self.code(username)})
        assert r.status_code == 303 and r.headers["location"] == "/mfa/backup-codes", r.text
        r = await browser.get("/mfa/backup-codes")
        codes = backup_codes_of(r.text)
        assert len(codes) == 10
        self.clock.advance(30)  # the enrollment code's step is used; the next verify needs a fresh one
        return codes

    async def new_user(self, username: str, enroll: bool = True) -> tuple[Browser, list[str]]:
        self.add_account(username)
        b = self.browser()
        r = await b.login(username)
        assert r.status_code == 303, r.text
        codes = await self.enroll(b, username) if enroll else []
        return b, codes

    async def verify(self, browser: Browser, username: str, next_: str = "/") -> httpx.Response:
        r = await browser.get(f"/mfa/verify?next={next_}")
        return await browser.post(f"/mfa/verify?next={next_}", {"csrf_token": csrf_of(r.text),
                                                                "code": self.code(username)})


def csrf_of(text: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert m, f"no CSRF token in page: {text[:500]}"
    return m.group(1)


def key_of(text: str) -> str:
    m = re.search(r"data-totp-key>([^<]+)<", text)
    assert m
    return m.group(1).replace(" ", "")


def backup_codes_of(text: str) -> list[str]:
    return re.findall(r'data-backup-code="([^"]+)"', text)


Factory = Callable[..., Site]


def _gate_of(self: Site) -> Any:
    app = self.app
    if self.kind == "wsgi":
        return app.wsgi_app.gate
    stack = app.middleware_stack or app.build_middleware_stack()
    app.middleware_stack = stack
    while not isinstance(stack, MFAMiddleware):
        stack = stack.app
    return stack.gate


Site.app_gate = _gate_of  # type: ignore[attr-defined]
