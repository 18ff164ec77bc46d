"""``MFAWsgiMiddleware``: the gate as WSGI middleware (``app.wsgi_app = MFAWsgiMiddleware(app.wsgi_app, ...)``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from typing_extensions import Unpack

from .gate import MAX_FORM_BYTES, Gate, Pass, Reply, Request, parse_cookies, parse_form
from .metrics import STORE_ERRORS
from .options import GateOptions, gate_and_store_url
from .paths import wsgi_root, wsgi_route_path
from .store import Store, StoreError, open_store

log = logging.getLogger("mfa_middleware")
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
WsgiIdentity = Callable[[Environ], "str | None"]

class MFAWsgiMiddleware:
    def __init__(
        self,
        app: WSGIApp,
        *,
        identity: WsgiIdentity,
        secret_key: str | None = None,
        encryption_keys: Sequence[str] | str | None = None,
        store: Store | None = None,
        redis_url: str | None = None,
        **options: Unpack[GateOptions],
    ) -> None:
        self.app = app
        self.identity = identity
        self.gate: Gate
        self.gate, url = gate_and_store_url(
            secret_key=secret_key, encryption_keys=encryption_keys, redis_url=redis_url,
            keys=store.keys if store else None, **options,
        )
        self.store = store or open_store(url)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        identity = self.identity(environ)
        identity = str(identity) if identity else None
        # The path Flask/Django route (PATH_INFO): SCRIPT_NAME can come from a client header through a proxy fix.
        path = wsgi_route_path(environ)
        cookie, https = environ.get("HTTP_COOKIE", ""), environ.get("wsgi.url_scheme") == "https"
        if identity is not None:  # a signed-in user's every request: Gate.passing
            facts = self.gate.passing(path, identity, cookie, https)
            if facts is not None:
                environ["mfa"], environ["mfa.gate"] = facts, self.gate
                return self.app(environ, start_response)
        decision: Pass | Reply | None = self.gate.quick(path, identity, cookie, https)
        if decision is None:
            req = self._request(environ, identity)
            try:
                decision = self.store.run(self.gate.handle(req))
            except StoreError as exc:
                log.error("2FA gate failing closed: %s", exc)
                STORE_ERRORS.labels("gate").inc()
                decision = self.gate.unavailable(req)
        if isinstance(decision, Reply):
            return reply_to(environ, start_response, decision)
        environ["mfa"], environ["mfa.gate"] = decision.mfa, self.gate
        if not decision.cookies:
            return self.app(environ, start_response)

        def start_with_cookies(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, *(("set-cookie", c) for c in decision.cookies)], *exc)

        return self.app(environ, start_with_cookies)

    def _request(self, environ: Environ, identity: str | None) -> Request:
        path = wsgi_route_path(environ)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        form: dict[str, str] = {}
        if self.gate.wants_body(method, path):
            try:
                length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
            except ValueError:
                length = 0
            form = parse_form(environ["wsgi.input"].read(length) if length > 0 else b"")
        headers = wsgi_headers(environ)
        return Request(
            method=method, path=path, query=dict(parse_qsl(environ.get("QUERY_STRING", ""))), headers=headers,
            cookies=parse_cookies(headers.get("cookie", "")),
            client_ip=self.gate.client_ip(environ.get("REMOTE_ADDR"), headers),
            https=environ.get("wsgi.url_scheme") == "https", identity=identity,
            form=form, root=wsgi_root(environ), memo_key=environ.get("HTTP_COOKIE", ""),
            locale=self.gate.hook_locale(environ),
        )



def wsgi_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name (the server has joined repeated ones)."""
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    if "CONTENT_TYPE" in environ:
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def reply_to(environ: Environ, start_response: StartResponse, reply: Reply) -> list[bytes]:
    """Where each of the gate's own replies starts: with its exact Content-Length (else gunicorn chunks it), and
    for HEAD with GET's length and no body (waitress sends whatever body the app returns, even to HEAD)."""
    start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}",
                   [*reply.headers, ("content-length", str(len(reply.body)))])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [reply.body]
