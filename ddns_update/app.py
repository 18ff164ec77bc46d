"""Thin adapters around ``UpdateService``: an ASGI endpoint (Starlette) and a WSGI app, and the same pair for
``/nic/checkip``.

Inside a bigger Starlette app: ``Route("/nic/update", UpdateEndpoint(service, store), methods=["GET", "POST"])``
(the endpoint ignores the path, so it also works under ``Mount``) and
``Route("/nic/checkip", CheckIpEndpoint(service.policy.trusted_proxies))``. Served alone:
``uvicorn --factory ddns_update.app:create_app``, or on a WSGI server ``create_wsgi_app``. WSGI stacks:
``WsgiUpdateApp(service, blocking_store)`` and ``WsgiCheckIpApp(service.policy.trusted_proxies)``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, cast

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ddns_update.credentials import Credentials, ThrottlePolicy
from ddns_update.dns_backend import DnsBackend, backend_from_settings
from ddns_update.protocol import IPNetwork, checkip_body, client_address, ip_text, parse_ip, parse_trusted_proxies
from ddns_update.scripts import UPDATE
from ddns_update.service import SERVER_ERROR, UpdateFacts, UpdatePolicy, UpdateReply, UpdateService
from mfa_middleware import metrics
from mfa_middleware.accounts import Accounts
from mfa_middleware.config import Settings
from mfa_middleware.crypto import derive_key
from mfa_middleware.metrics import STORE_ERRORS, UPDATES
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import AsyncStore, Keys, MemoryStore, Op, Store, StoreError, open_async_store, open_store
from mfa_middleware.store.effects import Eval
from mfa_middleware.store.fast_driver import FastAsyncRedisDriver
from mfa_middleware.store.runner import run_async

log = logging.getLogger("ddns_update")
MAX_FORM_BYTES = 8192  # a POSTed update form is a few hundred bytes
METHODS = ("GET", "HEAD", "POST")
UPDATE_PATH = "/nic/update"
CHECKIP_PATH = "/nic/checkip"


def build_service(settings: Settings, keys: Keys, hasher: PasswordHasher | None = None,
                  backend: DnsBackend | None = None, policy: UpdatePolicy | None = None,
                  throttle: ThrottlePolicy | None = None) -> UpdateService:
    """The service with its credentials, DNS backend and policy taken from ``settings`` unless given."""
    hasher = hasher or PasswordHasher()
    credentials = Credentials(keys, Accounts(keys, hasher), hasher, derive_key(settings.secret_key, "ddns-credential"),
                              throttle)
    if policy is None:
        blocklist = tuple(p.strip() for p in os.environ.get("DDNS_AGENT_BLOCKLIST", "").split(",") if p.strip())
        policy = UpdatePolicy(agent_blocklist=blocklist,
                              trusted_proxies=tuple(parse_trusted_proxies(",".join(settings.trusted_proxies))))
    return UpdateService(keys, credentials, backend or backend_from_settings(settings), policy)


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; a repeated header's lines joined by commas (what the proxy parser expects)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _facts(query: bytes, body: bytes, headers: Mapping[str, str], peer: str | None) -> UpdateFacts:
    if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        query = query + b"&" + body if query else body
    return UpdateFacts(query, headers.get("authorization"), headers.get("user-agent"), peer, headers)


def _failed(exc: StoreError) -> UpdateReply:
    log.error("store failure, answering 911: %s", exc)
    STORE_ERRORS.labels("ddns").inc()
    return SERVER_ERROR


# The request headers the update reads (``_facts``, ``client_address``), by their raw ASGI names. Decoding
# only these, not every header a client sends, makes fewer strings per request, which costs the served
# endpoint noticeably more than the instructions suggest.
_READ = {name.encode("latin-1"): name for name in
         ("authorization", "user-agent", "content-type", "x-forwarded-for", "x-real-ip")}

# A 200 reply's headers (UpdateReply.headers), and encoded once for ASGI; content-length is added per reply.
_PLAIN_TEXT = UpdateReply(("good",)).headers
_PLAIN_HEADERS = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in _PLAIN_TEXT.items())


def _counted(reply: UpdateReply) -> UpdateReply:
    for line in reply.lines:
        UPDATES.inc(line.partition(" ")[0])
    return reply


class UpdateEndpoint:
    """ASGI app answering /nic/update (any path it is routed to)."""

    def __init__(self, service: UpdateService, store: AsyncStore) -> None:
        self.service = service
        self.store = store
        self.driver = store.driver  # run_async(driver, op) is store.run(op) without its frame
        # The lean Redis driver takes the quick lane's command encoded ahead (``UpdateService._update_command``).
        self.packed = isinstance(store.driver, FastAsyncRedisDriver)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in METHODS:
            await PlainTextResponse("method not allowed\n", 405, {"allow": ", ".join(METHODS)})(scope, receive, send)
            return
        headers: dict[str, str] = {}  # as _joined, for the headers the protocol reads: once per update
        for raw_name, raw_value in scope["headers"]:
            name = _READ.get(raw_name if raw_name.islower() else raw_name.lower())
            if name is not None:
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]},{value}" if name in headers else value
        query = scope.get("query_string", b"")
        client = scope.get("client")
        peer = client[0] if client else None
        quick = None if method == "POST" else self.service.quick(query, headers, peer, packed=self.packed)
        if quick is None:
            body = await self._body(receive) if method == "POST" else b""
            reply = await self.run(self.service.update(_facts(query, body, headers, peer)))
        else:  # the quick lane (UpdateService.quick): the step without the generator and its runner
            step = quick.step
            try:
                if isinstance(step, bytes):
                    result = await cast(FastAsyncRedisDriver, self.driver).execute_packed(UPDATE, step)
                else:
                    result = await self.driver.execute(step)
            except StoreError as exc:
                reply = _counted(_failed(exc))
            else:
                settled = self.service.quick_body(quick, result)
                if settled is not None:  # a one-line 200 reply
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [*_PLAIN_HEADERS, (b"content-length", b"%d" % len(settled))]})
                    await send({"type": "http.response.body", "body": settled})
                    return
                reply = await self.run(self.service.resume(_facts(query, b"", headers, peer), quick, result))
        # What PlainTextResponse(reply.body, reply.status, reply.headers) sends, without building one.
        content = reply.body.encode("utf-8")
        raw_headers = list(_PLAIN_HEADERS) if reply.status == 200 else \
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        raw_headers.append((b"content-length", str(len(content)).encode("latin-1")))
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})

    async def run(self, op: Op[UpdateReply]) -> UpdateReply:
        try:
            return _counted(await run_async(self.driver, op))
        except StoreError as exc:
            return _counted(_failed(exc))

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= MAX_FORM_BYTES:
                chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks) if size <= MAX_FORM_BYTES else b""


_NOT_ALLOWED = (("content-type", "text/plain; charset=utf-8"), ("allow", ", ".join(METHODS)))
_NOT_FOUND = (("content-type", "text/plain; charset=utf-8"),)


def wsgi_reply(environ: dict[str, Any], start_response: Callable[..., Any], status: int,
               headers: Iterable[tuple[str, str]], body: bytes) -> list[bytes]:
    """Where every WSGI reply of this package starts: with the body's exact Content-Length. Without one,
    gunicorn and Werkzeug chunk an HTTP/1.1 reply, and ddclient 3.10 reads the chunk size as the first
    host's answer. HEAD gets the length GET would have, and no body."""
    start_response(f"{status} {HTTPStatus(status).phrase}", [*headers, ("Content-Length", str(len(body)))])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _wsgi_headers(environ: dict[str, Any]) -> dict[str, str]:
    pairs = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        pairs.append(("content-type", environ["CONTENT_TYPE"]))
    return _joined(pairs)


class WsgiUpdateApp:
    """WSGI app answering /nic/update with a blocking store."""

    def __init__(self, service: UpdateService, store: Store) -> None:
        self.service = service
        self.store = store

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in METHODS:
            return wsgi_reply(environ, start_response, 405, _NOT_ALLOWED, b"method not allowed\n")
        headers = _wsgi_headers(environ)
        body = self._body(environ) if method == "POST" else b""
        query = str(environ.get("QUERY_STRING", "")).encode("latin-1", "replace")
        peer = environ.get("REMOTE_ADDR")
        quick = None if method == "POST" else self.service.quick(query, headers, peer)
        try:
            if quick is None:
                reply = self.store.run(self.service.update(_facts(query, body, headers, peer)))
            else:  # the quick lane, as in UpdateEndpoint
                result = self.store.driver.execute(cast(Eval, quick.step))  # not packed: an Eval
                settled = self.service.quick_body(quick, result)
                if settled is not None:
                    return wsgi_reply(environ, start_response, 200, _PLAIN_TEXT.items(), settled)
                reply = self.store.run(self.service.resume(_facts(query, body, headers, peer), quick, result))
            reply = _counted(reply)
        except StoreError as exc:
            reply = _counted(_failed(exc))
        return wsgi_reply(environ, start_response, reply.status, reply.headers.items(), reply.body.encode("utf-8"))

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return b""
        if length <= 0 or length > MAX_FORM_BYTES:
            return b""
        return bytes(environ["wsgi.input"].read(length))


CHECKIP_METHODS = ("GET", "HEAD")
_CHECKIP_NOT_ALLOWED = (("content-type", "text/plain; charset=utf-8"), ("allow", ", ".join(CHECKIP_METHODS)))


def checkip_reply(peer: str | None, headers: Mapping[str, str],
                  trusted: Sequence[IPNetwork]) -> tuple[int, list[tuple[str, str]], bytes]:
    """``GET /nic/checkip``: the client's address as the update endpoint would take it (``client_address``,
    the same trusted proxies), in dyndns.org's page or alone (``checkip_body``). No credentials, no store."""
    address = parse_ip(client_address(peer, headers, trusted) or "")
    if address is None:  # no peer address at all (e.g. a unix socket with no proxy header): nothing to report
        return 503, [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")], \
            b"the client address is unknown to this server\n"
    content_type, body = checkip_body(ip_text(address), headers.get("accept"))
    # The answer differs per client and per Accept header: no shared cache may keep it.
    return 200, [("content-type", content_type), ("cache-control", "no-store"), ("vary", "Accept"),
                 ("x-content-type-options", "nosniff")], body.encode("ascii")


class CheckIpEndpoint:
    """ASGI app answering /nic/checkip (any path it is routed to); ``trusted``: the update endpoint's
    ``service.policy.trusted_proxies``, so both name the same address."""

    def __init__(self, trusted: Sequence[IPNetwork] = ()) -> None:
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in CHECKIP_METHODS:
            headers = _joined((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
            client = scope.get("client")
            status, header_list, body = checkip_reply(client[0] if client else None, headers, self.trusted)
        else:
            status, header_list, body = 405, list(_CHECKIP_NOT_ALLOWED), b"method not allowed\n"
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in header_list]
        raw.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class WsgiCheckIpApp:
    """WSGI app answering /nic/checkip; see ``CheckIpEndpoint``."""

    def __init__(self, trusted: Sequence[IPNetwork] = ()) -> None:
        self.trusted = tuple(trusted)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in CHECKIP_METHODS:
            return wsgi_reply(environ, start_response, 405, _CHECKIP_NOT_ALLOWED, b"method not allowed\n")
        status, headers, body = checkip_reply(environ.get("REMOTE_ADDR"), _wsgi_headers(environ), self.trusted)
        return wsgi_reply(environ, start_response, status, headers, body)


# Served alone (``create_app``) the process is ours to tune. Requests here make no reference cycles, but
# concurrent requests waiting on Redis keep a few hundred young objects alive at any moment, so the default
# first-generation threshold (700) would run a collection every few dozen requests, and each full collection
# would walk every object imported at start-up. After start-up those objects are frozen out of the
# collector's view (``gc.freeze``) and the first threshold raised; cycles, should any appear, are still
# collected. ``bench/README.md`` has the measurements.
GC_THRESHOLD = 50_000


def tune_gc() -> None:
    gc.collect()  # start-up garbage goes now instead of being frozen with the rest
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, GC_THRESHOLD), second, third)


class UpdateServer(Starlette):
    """``create_app``'s app: a Starlette app whose ``/nic/update`` requests go straight to the endpoint.

    The router, its exception middleware and their ``send`` wrappers cost about as much CPU as the update
    itself costs in Python, for nothing the endpoint needs (it answers every outcome itself, 405 included).
    Everything else (404s, ``/metrics``, lifespan, a path under a ``root_path``) goes through Starlette as
    usual, and so does ``/nic/update`` once middleware or exception handlers have been added.
    """

    def __init__(self, endpoint: UpdateEndpoint, *, path: str = UPDATE_PATH, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.update_path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.update_path and not scope.get("root_path") \
                and not self.user_middleware and not self.exception_handlers:
            await self.endpoint(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, memory: MemoryStore | None = None,
               service: UpdateService | None = None, *, gc_tuning: bool = True) -> UpdateServer:
    """The endpoint served alone at ``/nic/update`` (``uvicorn --factory ddns_update.app:create_app``), with
    Prometheus metrics at ``settings.metrics_path``. ``gc_tuning``: see ``tune_gc`` (off for an app that
    shares its process, e.g. in a test run)."""
    settings = settings or Settings.from_env()
    store = open_async_store(settings.redis_url, memory=memory)
    endpoint = UpdateEndpoint(service or build_service(settings, store.keys), store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gc_tuning:
            tune_gc()  # everything is imported and built by now
        yield
        await store.close()

    routes = [Route(UPDATE_PATH, endpoint, methods=list(METHODS)),
              Route(CHECKIP_PATH, CheckIpEndpoint(endpoint.service.policy.trusted_proxies))]
    if settings.metrics_path:
        routes.append(Route(settings.metrics_path, metrics.asgi_app()))
    return UpdateServer(endpoint, routes=routes, lifespan=lifespan)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_wsgi_app(settings: Settings | None = None, memory: MemoryStore | None = None,
                    service: UpdateService | None = None) -> WsgiApp:
    """The endpoint served alone by a WSGI server: ``/nic/update``, ``/nic/checkip`` and the metrics.
    ``gunicorn -k gthread 'ddns_update.app:create_wsgi_app()'`` or ``waitress-serve --call
    ddns_update.app:create_wsgi_app``. Each gunicorn worker builds its own (its own store connections)."""
    settings = settings or Settings.from_env()
    store = open_store(settings.redis_url, memory=memory)
    service = service or build_service(settings, store.keys)
    apps: dict[str, WsgiApp] = {UPDATE_PATH: WsgiUpdateApp(service, store),
                                CHECKIP_PATH: WsgiCheckIpApp(service.policy.trusted_proxies)}
    if settings.metrics_path:
        apps[settings.metrics_path] = metrics.wsgi_app()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = apps.get(environ.get("PATH_INFO", ""))  # relative to where the server mounts it (SCRIPT_NAME)
        if app is None:
            return wsgi_reply(environ, start_response, 404, _NOT_FOUND, b"not found\n")
        return app(environ, start_response)

    return application

