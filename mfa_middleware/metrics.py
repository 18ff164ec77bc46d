"""Prometheus metrics for the gate and the update endpoint, in one registry of our own.

Served at ``METRICS_PATH`` (default ``/metrics``) by the demos and ``ddns_update.app.create_app``;
host apps can mount ``asgi_app()`` / ``wsgi_app()`` or merge ``REGISTRY`` into theirs. Counters are
per process: behind several worker processes, scrape each (or use prometheus_client's multiprocess mode).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, make_asgi_app, make_wsgi_app

REGISTRY = CollectorRegistry(auto_describe=True)

VERIFICATIONS = Counter(
    "mfa_verifications", "Second-factor checks, by method (totp, backup_code) and result "
    "(ok, wrong, replayed, locked)", ["method", "result"], registry=REGISTRY)
LOCKOUTS = Counter("mfa_lockouts", "Accounts or client addresses locked out by the throttle", registry=REGISTRY)
UPDATES = Counter("ddns_updates", "Update answers, one per answer line, by code", ["answer"], registry=REGISTRY)
ARGON2_VERIFIES = Counter("argon2_verifies", "argon2id password verifications run", registry=REGISTRY)
CREDENTIAL_CACHE = Counter(
    "ddns_credential_cache", "Update-credential lookups, by result (hit: no argon2 needed; miss)", ["result"],
    registry=REGISTRY)
STORE_ERRORS = Counter("store_errors", "Requests that failed closed because the store failed, by component",
                       ["component"], registry=REGISTRY)


class _MetricsApp:
    """An ASGI app object (not a function), so that Starlette's ``Route`` hands it the raw scope."""

    def __init__(self) -> None:
        self.app = make_asgi_app(registry=REGISTRY)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def asgi_app() -> Any:
    return _MetricsApp()


def wsgi_app() -> Any:
    return make_wsgi_app(registry=REGISTRY)
