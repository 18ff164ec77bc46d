"""Prometheus metrics for the gate and the update endpoint, in one registry of our own.

Served at ``METRICS_PATH`` (default ``/metrics``) by the demos and ``ddns_update.app.create_app``;
host apps can mount ``asgi_app()`` / ``wsgi_app()`` or merge ``REGISTRY`` into theirs. Counters are
per process: behind several worker processes, scrape each (or use prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections import Counter as Counts
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, make_asgi_app, make_wsgi_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


class Tally(Collector):
    """A counter with one label for per-request hot paths, exposed exactly as a prometheus ``Counter``.

    ``Counter.inc`` takes a lock per call; on the update endpoint's warm path two of them cost a few percent
    of the request. Here each thread counts into a dict of its own (no lock, no lost updates under threaded
    WSGI servers); a scrape sums them, and a finished thread's counts are folded into a retired total.
    """

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._local = threading.local()
        self._lock = threading.Lock()
        self._live: dict[int, dict[str, int]] = {}  # id -> a running thread's counts (the dict is kept alive)
        self._finished: collections.deque[dict[str, int]] = collections.deque()
        self._retired: Counts[str] = Counts()
        registry.register(self)

    def inc(self, value: str) -> None:
        try:
            counts: dict[str, int] = self._local.counts
        except AttributeError:
            counts = self._start_thread()
        counts[value] = counts.get(value, 0) + 1

    def _start_thread(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        self._local.counts = counts
        with self._lock:
            self._fold_finished()  # a thread-per-request server: keep ``_live`` to the running threads
            self._live[id(counts)] = counts
        # No lock in a finalizer: it may run inside a collection triggered while this thread holds the lock.
        weakref.finalize(threading.current_thread(), self._finished.append, counts)
        return counts

    def _fold_finished(self) -> None:
        while self._finished:
            counts = self._finished.popleft()
            self._live.pop(id(counts), None)
            self._retired.update(counts)

    def values(self) -> dict[str, int]:
        with self._lock:
            self._fold_finished()
            total = Counts(self._retired)
            for counts in list(self._live.values()):
                total.update(dict(counts))  # a copy: its thread may be adding a key meanwhile
        return dict(total)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.values().items()):
            family.add_metric([value], count)
        yield family


VERIFICATIONS = Counter(
    "mfa_verifications", "Second-factor checks, by method (totp, backup_code) and result "
    "(ok, wrong, replayed, locked)", ["method", "result"], registry=REGISTRY)
LOCKOUTS = Counter("mfa_lockouts", "Accounts or client addresses locked out by the throttle", registry=REGISTRY)
UPDATES = Tally("ddns_updates", "Update answers, one per answer line, by code", "answer")
ARGON2_VERIFIES = Counter("argon2_verifies", "argon2id password verifications run", registry=REGISTRY)
CREDENTIAL_CACHE = Tally(
    "ddns_credential_cache", "Update-credential lookups, by result (hit: no argon2 needed; miss)", "result")
STORE_ERRORS = Counter("store_errors", "Requests that failed closed because the store failed, by component",
                       ["component"], registry=REGISTRY)


class _MetricsApp:
    """An ASGI app object (not a function), so that Starlette's ``Route`` hands it the raw scope.

    prometheus_client's app streams its reply without a Content-Length (so it goes out chunked) and refuses
    HEAD: its reply is collected, HEAD asked as GET, and sent with its exact length (no body for HEAD)."""

    def __init__(self) -> None:
        self.app = make_asgi_app(registry=REGISTRY)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        head = scope.get("method") == "HEAD"
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def collect(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app({**scope, "method": "GET"} if head else scope, receive, collect)
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": b"" if head else body})


def asgi_app() -> Any:
    return _MetricsApp()


def wsgi_app() -> Any:
    """prometheus_client's WSGI app, its reply re-sent with an exact Content-Length (it sends none, so gunicorn
    chunks it); HEAD is asked as GET and answered without the body (waitress would send it)."""
    inner = make_wsgi_app(registry=REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            started.append((status, headers))
            return lambda data: None  # it returns its one body instead of writing

        head = environ.get("REQUEST_METHOD") == "HEAD"
        body = b"".join(inner({**environ, "REQUEST_METHOD": "GET"} if head else environ, keep))
        status, headers = started[-1]
        start_response(status, [*((k, v) for k, v in headers if k.lower() != "content-length"),
                                ("Content-Length", str(len(body)))])
        return [] if head else [body]

    return app
