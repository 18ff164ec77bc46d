"""``REDIS_URL`` parsing and client construction (standalone, TLS, Sentinel, Cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
# Fail closed quickly: a hung store must not pile up requests.
DEFAULT_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


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
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise StoreURLError(f"unsupported store URL scheme {scheme!r}; use one of: " + ", ".join(SCHEMES))
    options = _options(parts.query)
    if scheme in ("redis", "rediss", "unix"):
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
        nodes.append((host.strip("[]"), _int(port, "port")))
    if not nodes:
        raise StoreURLError("the store URL names no host")
    return tuple(nodes)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise StoreURLError(f"bad {what} in store URL: {text!r}") from None


def _options(query: str) -> dict[str, Any]:
    opts: dict[str, Any] = dict(DEFAULT_TIMEOUTS)
    for key, value in parse_qsl(query):
        if key in ("socket_timeout", "socket_connect_timeout"):
            try:
                opts[key] = float(value)
            except ValueError:
                raise StoreURLError(f"bad {key} in store URL: {value!r}") from None
    return opts


def build_client(spec: StoreSpec, module: ModuleType) -> Any:
    """Build a client with ``module`` = ``redis`` (blocking) or ``redis.asyncio``.

    Both modules expose the same constructors, so one builder serves both drivers.
    """
    common: dict[str, Any] = {"decode_responses": True, "protocol": 2, **spec.options}
    if spec.kind == "redis":
        return module.Redis.from_url(spec.url, **common)
    auth = {"username": spec.username, "password": spec.password}
    if spec.kind == "cluster":
        startup = [module.cluster.ClusterNode(h, p) for h, p in spec.nodes]
        return module.RedisCluster(startup_nodes=startup, ssl=spec.tls, **auth, **common)
    sentinel = module.sentinel.Sentinel(
        list(spec.nodes), sentinel_kwargs={**spec.options, "decode_responses": True}, **spec.options
    )
    return sentinel.master_for(spec.service, db=spec.db, ssl=spec.tls, **auth, **common)
