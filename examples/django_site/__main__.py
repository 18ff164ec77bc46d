"""``python -m examples.django_site``: migrate the sqlite database, seed demo and a staff admin, serve ASGI."""

from __future__ import annotations

import contextlib
import logging
import sys

from ddns_update.hosts import HostRefused, Hosts
from examples.demo import ADMIN_PASSWORD, ADMIN_USER, DEMO_HOST, DEMO_PASSWORD, DEMO_USER
from mfa_middleware.accounts import AccountExists, Accounts
from mfa_middleware.config import Settings
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import MemoryStore, Store, open_store

from .gate import setup_django


def _seed_update_account(store: Store) -> None:
    """Routers log in to /nic/update with an account of the shared store (not a Django user): seed the demo one."""
    with contextlib.suppress(AccountExists):
        store.run(Accounts(store.keys, PasswordHasher()).create(DEMO_USER, DEMO_PASSWORD))
    with contextlib.suppress(HostRefused):
        store.run(Hosts(store.keys).add(DEMO_USER, [DEMO_HOST]))


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    setup_django()
    import uvicorn
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from .asgi import create_app

    call_command("migrate", verbosity=0)
    settings = Settings.from_env(demo=True)
    users = get_user_model()._default_manager
    memory = MemoryStore()
    if settings.demo_seed:
        if not users.filter(username=DEMO_USER).exists():
            users.create_user(username=DEMO_USER, password=DEMO_PASSWORD)
        if not users.filter(username=ADMIN_USER).exists():  # staff: the gate requires 2FA of them
            users.create_user(username=ADMIN_USER, password=ADMIN_PASSWORD, is_staff=True)
        _seed_update_account(open_store(settings.redis_url, memory=memory))
    print(f"Demo site (Django, ASGI): http://{settings.host}:{settings.port}/", flush=True)
    if settings.demo_seed:
        print(f"Demo login: {DEMO_USER} / {DEMO_PASSWORD}   admin (staff, 2FA required): "
              f"{ADMIN_USER} / {ADMIN_PASSWORD}", flush=True)
    uvicorn.run(create_app(settings, memory), host=settings.host, port=settings.port, log_level="info", lifespan="on")


if __name__ == "__main__":
    main()
