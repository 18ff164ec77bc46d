"""Both demo sites: log in with the demo form and meet the gate (in-memory store and Redis)."""

from __future__ import annotations

import re

import httpx
import pytest

from mfa_middleware.config import Settings
from mfa_middleware.passwords import FAST


def _settings(redis_url: str | None) -> Settings:
    env = {"MFA_SECRET_KEY": "s" * 32, "MFA_ENCRYPTION_KEY": "e" * 32, "DEMO_SEED": "1"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return Settings.from_env(env, demo=True)


def _csrf(text: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert m
    return m.group(1)


def test_flask_demo_gate(redis_url: str) -> None:
    from examples.flask_demo import create_app

    app = create_app(_settings(redis_url), argon2_profile=FAST)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as c:
        token = _csrf(c.get("/login").text)
        r = c.post("/login", data={"username": "demo", "password": "demo-password", "csrf_token": token})
        assert r.status_code == 303
        assert c.get("/").status_code == 200
        assert 'data-mfa-status="off"' in c.get("/mfa/security").text
        assert "<svg" in c.get("/mfa/setup").text


@pytest.mark.parametrize("use_redis", [False, True])
async def test_starlette_demo_gate(redis_url: str, use_redis: bool) -> None:
    from examples.demo import create_app

    app = create_app(_settings(redis_url if use_redis else None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            token = _csrf((await c.get("/login")).text)
            r = await c.post("/login", data={"username": "demo", "password": "demo-password", "csrf_token": token})
            assert r.status_code == 303
            assert (await c.get("/")).status_code == 200
            r = await c.get("/mfa/setup")
            assert r.status_code == 200 and "<svg" in r.text
            r = await c.get("/mfa/security", headers={"Accept": "application/json"})
            assert r.status_code == 200


def test_flask_demo_login_fails_closed_without_its_store() -> None:
    """Redis away (nothing listens on its port): the login form answers 503, not a 500, and nobody is let in."""
    from examples.flask_demo import create_app
    from tests.servers import free_port

    settings = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,), demo_seed=False,
                        redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(settings, argon2_profile=FAST)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as c:
        token = _csrf(c.get("/login").text)
        r = c.post("/login", data={"username": "demo", "password": "demo-password", "csrf_token": token})
        assert r.status_code == 503 and "Sign-in is unavailable" in r.text
        assert c.get("/", follow_redirects=False).status_code == 303  # still to the login page
