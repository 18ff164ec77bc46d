from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database on the session's redis-server for each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


@pytest.fixture(scope="module")
def django_ready() -> Iterator[None]:
    """Django's settings and a migrated sqlite database in a temp dir, with the user alice (password reset).

    Django's settings, and so its database, are set up once per process: a later module finds alice already
    there, maybe with a password a test changed, so each module gets her back as she was."""

    def prepare() -> None:
        tmp = tempfile.mkdtemp(prefix="django-test-")
        os.environ["DJANGO_DB"] = os.path.join(tmp, "db.sqlite3")
        from examples.django_site.gate import setup_django

        setup_django()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        alice, _ = get_user_model()._default_manager.get_or_create(username="alice")
        alice.set_password("correct horse battery")
        alice.save()
        os.environ.pop("DJANGO_DB")

    # Off the event loop's thread: Django refuses ORM calls where a loop is running.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(prepare).result()
    yield
