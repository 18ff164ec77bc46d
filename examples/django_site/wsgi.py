"""WSGI entry point: Django's WSGI handler inside ``MFAWsgiMiddleware``, ``/nic/update`` and ``/nic/checkip`` beside it.

``gunicorn examples.django_site.wsgi`` (the ``application`` attribute is built on first access).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ddns_update.app import CHECKIP_PATH, UPDATE_PATH, WsgiCheckIpApp, WsgiUpdateApp, build_service
from mfa_middleware import MFAWsgiMiddleware
from mfa_middleware.config import Settings
from mfa_middleware.identity import django_session
from mfa_middleware.passwords import OWASP, Argon2Profile
from mfa_middleware.store import MemoryStore, Store, open_store

from .gate import gate_options, setup_django

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_app(settings: Settings | None = None, memory: MemoryStore | None = None, *,
               argon2_profile: Argon2Profile = OWASP, store: Store | None = None) -> WSGIApp:
    setup_django()
    from django.core.wsgi import get_wsgi_application

    settings = settings or Settings.from_env(demo=True)
    store = store or open_store(settings.redis_url, memory=memory or MemoryStore())
    site = MFAWsgiMiddleware(get_wsgi_application(), identity=django_session(), store=store,
                             **gate_options(settings, argon2_profile))
    service = build_service(settings, store.keys, site.gate.accounts.hasher)
    beside = {UPDATE_PATH: WsgiUpdateApp(service, store), CHECKIP_PATH: WsgiCheckIpApp(service.policy.trusted_proxies)}

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return beside.get(environ.get("PATH_INFO", ""), site)(environ, start_response)

    return application


def __getattr__(name: str) -> Any:
    if name == "application":
        app = globals()["application"] = create_app()
        return app
    raise AttributeError(name)
