"""ASGI entry point: Django's ASGI handler inside ``MFAMiddleware``, ``/nic/update`` and ``/nic/checkip`` beside it.

``uvicorn examples.django_site.asgi:application`` (built on first access).
"""

from __future__ import annotations

from typing import Any

from ddns_update.app import CHECKIP_PATH, UPDATE_PATH, CheckIpEndpoint, UpdateEndpoint, build_service
from mfa_middleware import MFAMiddleware
from mfa_middleware.asgi import ASGIApp, Receive, Scope, Send
from mfa_middleware.config import Settings
from mfa_middleware.identity import django_session_async
from mfa_middleware.passwords import OWASP, Argon2Profile
from mfa_middleware.store import AsyncStore, MemoryStore, open_async_store

from .gate import gate_options, setup_django


def create_app(settings: Settings | None = None, memory: MemoryStore | None = None, *,
               argon2_profile: Argon2Profile = OWASP, store: AsyncStore | None = None) -> ASGIApp:
    setup_django()
    from django.core.asgi import get_asgi_application

    settings = settings or Settings.from_env(demo=True)
    store = store or open_async_store(settings.redis_url, memory=memory or MemoryStore())
    site = MFAMiddleware(get_asgi_application(), identity=django_session_async(), store=store,
                         **gate_options(settings, argon2_profile))
    updates = UpdateEndpoint(build_service(settings, store.keys, site.gate.accounts.hasher), store)
    checkip = CheckIpEndpoint(updates.service.policy.trusted_proxies)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # Django's handler refuses lifespan; nothing to start or stop here
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await store.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "http" and scope["path"] in (UPDATE_PATH, CHECKIP_PATH):
            await (updates if scope["path"] == UPDATE_PATH else checkip)(scope, receive, send)
            return
        await site(scope, receive, send)

    return application


def __getattr__(name: str) -> Any:
    if name == "application":
        app = globals()["application"] = create_app()
        return app
    raise AttributeError(name)
