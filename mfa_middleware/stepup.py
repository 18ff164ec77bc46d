"""``require_recent(scope_or_environ, max_age)``: step-up for handlers whose sensitivity depends on data rather
than on the path (``step_up=`` covers paths). The same rule and pages as the gate's ``step_up`` routes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response

from .asgi import asgi_headers
from .gate import Gate, Reply, Request
from .paths import asgi_root, asgi_route_path, wsgi_root, wsgi_route_path
from .policy import fresh
from .wsgi import reply_to, wsgi_headers

GATE_KEY = "mfa.gate"  # where the adapters leave the gate in the scope / environ, beside "mfa"


class AsgiReply(Response):
    """A Starlette response (so a Starlette or FastAPI handler returns it as it is; any ASGI server can call it),
    with ``status`` beside Starlette's ``status_code``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body, reply.status, headers=dict(reply.headers))
        self.status = reply.status


class WsgiReply:
    """A WSGI app that sends the reply (Flask accepts one as a view's return value)."""

    def __init__(self, reply: Reply) -> None:
        self.status, self.headers, self.body = reply.status, reply.headers, reply.body

    def __call__(self, environ: Any, start_response: Callable[..., Any]) -> Iterable[bytes]:
        return reply_to(environ, start_response, Reply(self.status, self.headers, self.body))


def require_recent(scope_or_environ: MutableMapping[str, Any], max_age: int) -> AsgiReply | WsgiReply | None:
    """None when this session proved itself within ``max_age`` seconds (the second factor, or the password
    for accounts without 2FA); else the reply to send: to the prompt and back, 401 JSON for JSON clients, a
    401 page for a form POST. Both replies also carry ``status``, ``headers`` and ``body`` for frameworks that
    need their own response object (Django: ``HttpResponse(r.body, status=r.status, headers=r.headers)``)."""
    gate: Gate | None = scope_or_environ.get(GATE_KEY)
    facts: Mapping[str, Any] | None = scope_or_environ.get("mfa")
    if gate is None or facts is None:
        raise RuntimeError("require_recent needs a request that went through MFAMiddleware/MFAWsgiMiddleware")
    if facts.get("exempt"):
        raise RuntimeError("require_recent needs a path the gate guards, not an exempt one")
    asgi = "type" in scope_or_environ
    req = _asgi_request(scope_or_environ) if asgi else _wsgi_request(scope_or_environ)
    req = replace(req, locale=gate.hook_locale(scope_or_environ))
    if not facts.get("account"):  # nobody signed in: to the login page and back
        reply = gate.redirect(gate.login_redirect(req))
        gate.secured(reply)
        return AsgiReply(reply) if asgi else WsgiReply(reply)
    if fresh(facts, max_age, gate.clock()):
        return None
    required = facts.get("setup_due") is not None
    reply = gate.stale_reply(req, req.root + gate.prefix, dict(facts), max_age, required)
    gate.secured(reply)
    return AsgiReply(reply) if asgi else WsgiReply(reply)


def _asgi_request(scope: Mapping[str, Any]) -> Request:
    return Request(method=scope.get("method", "GET"), path=asgi_route_path(scope),
                   query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
                   headers=asgi_headers(scope)[0],
                   cookies={}, client_ip="", https=scope.get("scheme") == "https", identity=None,
                   root=asgi_root(scope))


def _wsgi_request(environ: Mapping[str, Any]) -> Request:
    return Request(method=str(environ.get("REQUEST_METHOD", "GET")).upper(), path=wsgi_route_path(environ),
                   query=dict(parse_qsl(str(environ.get("QUERY_STRING", "")))), headers=wsgi_headers(environ),
                   cookies={},
                   client_ip="", https=environ.get("wsgi.url_scheme") == "https", identity=None,
                   root=wsgi_root(environ))
