"""``REDIS_URL`` parsing and client construction (standalone, TLS, Sentinel, Cluster)."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
# Fail closed quickly: a hung store must not pile up requests.
DEFAULT_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
# Connections per process to a standalone Redis. A burst of requests waits (at most socket_timeout) for a
# pooled connection instead of opening thousands at once, which starves the event loop of the handshakes.
DEFAULT_MAX_CONNECTIONS = 64


class StoreURLError(ValueError):
    """The store URL cannot be used; the message says why."""


@dataclass(frozen=True)
class StoreSpec:
    kind: str  # "memory", "redis", "sentinel", "cluster"
    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def parse_store_url(url: str | None) -> StoreSpec:
    if not url or url.strip() in ("", "memory://"):
        return StoreSpec("memory")
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed "[" around an IPv6 host
        raise StoreURLError(f"bad store URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise StoreURLError(f"unsupported store URL scheme {scheme!r}; use one of: " + ", ".join(SCHEMES))
    options = _options(parts.query)
    if scheme in ("redis", "rediss", "unix"):
        url = scheme + url[len(parts.scheme):]  # redis-py only knows the lower-case schemes
        _check_standalone(url)
        return StoreSpec("redis", url=url, options=options)
    kind = "sentinel" if scheme.endswith("sentinel") else "cluster"
    nodes = _nodes(parts.netloc.rpartition("@")[2], default_port=26379 if kind == "sentinel" else 6379)
    path = [p for p in parts.path.split("/") if p]
    service, db = "", 0
    if kind == "sentinel":
        if not path:
            raise StoreURLError("redis+sentinel:// needs the service name: redis+sentinel://host:26379/mymaster")
        service = unquote(path[0])
        db = _int(path[1], "database number") if len(path) > 1 else 0
    return StoreSpec(
        kind,
        url=url,
        nodes=nodes,
        service=service,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=scheme.startswith("rediss"),
        options=options,
    )


def _nodes(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in filter(None, netloc.split(",")):
        host, sep, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not sep:
            host, port = item, str(default_port)
        nodes.append((host.strip("[]"), _int(port, "port", 65535)))
    if not nodes:
        raise StoreURLError("the store URL names no host")
    return tuple(nodes)


def _int(text: str, what: str, high: int = 2**31 - 1) -> int:
    # ASCII digits only: int() would also take "-1", " 1", "1_0" and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > high:
        raise StoreURLError(f"bad {what} in store URL: {text!r}")
    return int(text)


def _check_standalone(url: str) -> None:
    """Refuse now, with a clear message, what redis-py would refuse when the client is built."""
    from redis.connection import parse_url

    try:
        parts = urlsplit(url)
        if parts.scheme != "unix":
            _ = parts.port  # raises on a port that is not a number in 0-65535
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise StoreURLError(f"bad store URL: {exc}") from None


def _options(query: str) -> dict[str, Any]:
    opts: dict[str, Any] = dict(DEFAULT_TIMEOUTS)
    for key, value in parse_qsl(query):
        if key == "max_connections":
            if not value.isdigit() or int(value) < 1:
                raise StoreURLError(f"bad max_connections in store URL: {value!r}")
            opts[key] = int(value)
        elif key in ("socket_timeout", "socket_connect_timeout"):
            try:
                opts[key] = float(value)
            except ValueError:
                raise StoreURLError(f"bad {key} in store URL: {value!r}") from None
            if not 0 < opts[key] < 3600:  # also refuses nan and inf, which sockets refuse later
                raise StoreURLError(f"bad {key} in store URL: {value!r} (seconds, above 0)")
    return opts


def retry_policy(module: ModuleType, retries: int = 1) -> Any:
    """redis-py's default (10 retries with back-off on timeouts too) turns a hung store into requests stuck
    for 15 s and more, and re-sends commands that may already have run. Ours: retry once, at once, and only
    when the connection broke (a restarted server, a failover); never after a timeout, so a hung store costs
    a request at most ``socket_timeout`` per round trip (plus one reconnect) and the gate fails closed fast.
    """
    exceptions = importlib.import_module("redis.exceptions")
    backoff = importlib.import_module("redis.backoff")
    retry_mod = importlib.import_module(module.__name__ + ".retry")
    return retry_mod.Retry(backoff.NoBackoff(), retries, supported_errors=(exceptions.ConnectionError,))


@functools.cache
def _cluster_class(module: ModuleType) -> Any:
    """redis-py's cluster client retries a command that timed out (TimeoutError is in its ERRORS_ALLOW_RETRY,
    whatever the Retry object allows): a hung master cost each request on its slots three socket timeouts
    and a slot-map refresh, over 3 s. Ours retries as ``retry_policy`` says: after a broken connection
    (and CLUSTERDOWN, a failover in progress), never after a timeout. A timeout still has the slot map
    re-read before the next command, so a moved slot is found all the same."""
    base = module.RedisCluster
    timeout = importlib.import_module("redis.exceptions").TimeoutError
    retried = tuple(e for e in base.ERRORS_ALLOW_RETRY if e is not timeout)
    return type(base.__name__, (base,), {"ERRORS_ALLOW_RETRY": retried, "__module__": __name__})


def build_client(spec: StoreSpec, module: ModuleType) -> Any:
    """Build a client with ``module`` = ``redis`` (blocking) or ``redis.asyncio``.

    Both modules expose the same constructors, so one builder serves both drivers.
    """
    options = dict(spec.options)
    max_connections = int(options.pop("max_connections", DEFAULT_MAX_CONNECTIONS))
    common: dict[str, Any] = {"decode_responses": True, "protocol": 2, **options}
    if spec.kind == "redis":
        pool = module.BlockingConnectionPool.from_url(
            spec.url, max_connections=max_connections, timeout=options["socket_timeout"],
            retry=retry_policy(module), **common)
        return module.Redis(connection_pool=pool)
    auth = {"username": spec.username, "password": spec.password}
    if spec.kind == "cluster":
        # The cluster client's own retry re-reads the slot map after a connection error (a failed-over
        # primary); MOVED/ASK redirections are followed apart from it.
        startup = [module.cluster.ClusterNode(h, p) for h, p in spec.nodes]
        return _cluster_class(module)(startup_nodes=startup, ssl=spec.tls, retry=retry_policy(module, 2),
                                      **auth, **common)
    sentinel = module.sentinel.Sentinel(
        list(spec.nodes), sentinel_kwargs={**options, "decode_responses": True}, **options
    )
    # Each new connection asks the Sentinels for the current primary, and a demoted primary's READONLY
    # answer drops the connection: the one retry lands on the new primary.
    return sentinel.master_for(spec.service, db=spec.db, ssl=spec.tls, retry=retry_policy(module),
                               **auth, **common)
