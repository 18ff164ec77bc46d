"""``MFAMiddleware``: the gate as ASGI middleware (Starlette, FastAPI, Django's ASGI handler…).

Put it *inside* the app's session middleware, so the identity hook can read the app's login.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from typing_extensions import Unpack

from .gate import MAX_FORM_BYTES, Pass, Reply, Request, parse_cookies, parse_form
from .metrics import STORE_ERRORS
from .options import GateOptions, gate_and_store_url
from .paths import asgi_root, asgi_route_path
from .store import AsyncStore, StoreError, open_async_store

log = logging.getLogger("mfa_middleware")
# The ASGI types as Starlette spells them (MutableMapping, not dict), so that ``Middleware(MFAMiddleware, ...)``
# type-checks in a Starlette or FastAPI app.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AsgiIdentity = Callable[[Any], "str | Awaitable[str | None] | None"]  # called with the scope


class MFAMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        identity: AsgiIdentity,
        secret_key: str | None = None,
        encryption_keys: Sequence[str] | str | None = None,
        store: AsyncStore | None = None,
        redis_url: str | None = None,
        **options: Unpack[GateOptions],
    ) -> None:
        self.app = app
        self.identity = identity
        self.gate, url = gate_and_store_url(
            secret_key=secret_key, encryption_keys=encryption_keys, redis_url=redis_url,
            keys=store.keys if store else None, **options,
        )
        self.store = store or open_async_store(url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        identity = self.identity(scope)
        if type(identity) is not str:  # the common hook returns a str: skip the awaitable check then
            if inspect.isawaitable(identity):
                identity = await identity
            identity = str(identity) if identity else None
        elif not identity:
            identity = None
        if kind == "http":
            # The path the app routes: without the root_path it is mounted under (Starlette, Django).
            path = asgi_route_path(scope) if scope.get("root_path") else scope["path"]
            https = scope.get("scheme") == "https"
            # The Cookie header as sent: the memo's key (``Gate.handle`` remembers an answer only under the very
            # Cookie header it decided on, see ``_request``, so a first-of-several or oddly cased header at
            # worst misses the memo).
            cookie = b""
            for key, value in scope.get("headers", ()):
                if key == b"cookie":
                    cookie = value if value.__class__ is bytes else bytes(value)  # a bytearray is unhashable
                    break
            if identity is not None:  # a signed-in user's every request: Gate.passing
                facts = self.gate.passing(path, identity, cookie, https)
                if facts is not None:
                    scope["mfa"], scope["mfa.gate"] = facts, self.gate
                    await self.app(scope, receive, send)
                    return
            quick = self.gate.quick(path, identity, cookie, https)
            if quick is not None:
                scope["mfa"], scope["mfa.gate"] = quick.mfa, self.gate
                await self.app(scope, receive, _with_cookies(send, quick) if quick.cookies else send)
                return
        req = await self._request(scope, receive, identity)
        try:
            decision = await self.store.run(self.gate.handle(req))
        except StoreError as exc:
            log.error("2FA gate failing closed: %s", exc)
            STORE_ERRORS.labels("gate").inc()
            decision = self.gate.unavailable(req)
        if isinstance(decision, Reply):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await respond(send, decision)
            return
        scope["mfa"], scope["mfa.gate"] = decision.mfa, self.gate
        await self.app(scope, receive, _with_cookies(send, decision))

    async def _request(self, scope: Scope, receive: Receive, identity: str | None) -> Request:
        headers, cookies = asgi_headers(scope)
        method = scope.get("method", "GET")
        path = asgi_route_path(scope)
        form: dict[str, str] = {}
        if self.gate.wants_body(method, path):
            form = parse_form(await _read_body(receive))
        client = scope.get("client") or ("", 0)
        return Request(
            method=method, path=path,
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers=headers, cookies=parse_cookies(headers.get("cookie", "")),
            client_ip=self.gate.client_ip(str(client[0]), headers),
            https=scope.get("scheme") in ("https", "wss"), identity=identity,
            form=form, root=asgi_root(scope), memo_key=_memo_key(scope["type"], cookies),
            locale=await self._locale(scope),
        )

    async def _locale(self, scope: Scope) -> str | None:
        """The host app's language for this user (the ``locale`` hook; it may be a coroutine function)."""
        hook = self.gate.locale_hook
        if hook is None:
            return None
        try:
            found: Any = hook(scope)
            if inspect.isawaitable(found):
                found = await found
        except Exception:  # a broken hook costs the user their language, not the page
            log.exception("the locale hook failed; Accept-Language decides")
            return None
        return str(found) if found else None


def asgi_headers(scope: Mapping[str, Any]) -> tuple[dict[str, str], list[tuple[bytes, bytes]]]:
    """The request's headers by lower-case name, and every Cookie header as (name as sent, value). Repeated
    headers join with commas (X-Forwarded-For from a chain of proxies), cookies with "; "."""
    headers: dict[str, str] = {}
    cookies: list[tuple[bytes, bytes]] = []
    for k, v in scope.get("headers", []):
        name = k.decode("latin-1").lower()
        if name == "cookie":
            cookies.append((bytes(k), bytes(v)))
        value = v.decode("latin-1")
        if name in headers:
            value = headers[name] + ("; " if name == "cookie" else ", ") + value
        headers[name] = value
    return headers, cookies


def _memo_key(kind: str, cookies: list[tuple[bytes, bytes]]) -> bytes | None:
    """What ``handle`` may remember its answer under: the one Cookie header this request carried, exactly as the
    fast lane reads it (lower-case name), or None. Several Cookie headers (frameworks disagree on joining them)
    or an oddly cased one are decided afresh every time."""
    if kind != "http" or len(cookies) > 1:
        return None
    if not cookies:
        return b""
    name, value = cookies[0]
    return value if name == b"cookie" else None


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body") or len(body) > MAX_FORM_BYTES:
            return body


async def respond(send: Send, reply: Reply) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _with_cookies(send: Send, decision: Pass) -> Send:
    if not decision.cookies:
        return send

    async def send_wrapper(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers += [(b"set-cookie", c.encode("latin-1")) for c in decision.cookies]
            message = {**message, "headers": headers}
        await send(message)

    return send_wrapper
