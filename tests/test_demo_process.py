"""`make run` in miniature: the demo as a real process on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import free_port, wait_for_port


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    for name in ("REDIS_URL", "MFA_SECRET_KEY", "MFA_ENCRYPTION_KEY"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "examples.demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        assert "Traceback" not in err, err
        assert f"http://127.0.0.1:{port}/" in out and "demo / demo-password" in out


def test_demo_serves_login_and_logs_in(demo: str) -> None:
    with httpx.Client(base_url=demo, follow_redirects=False) as client:
        page = client.get("/login")
        assert page.status_code == 200 and 'name="username"' in page.text and 'name="password"' in page.text
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = client.post("/login", data={"username": "demo", "password": "demo-password", "csrf_token": token})
        assert r.status_code == 303
        home = client.get("/", follow_redirects=True)
        assert home.status_code == 200


def test_demo_refuses_bad_login(demo: str) -> None:
    with httpx.Client(base_url=demo) as client:
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = client.post("/login", data={"username": "demo", "password": "nope", "csrf_token": token})
        assert r.status_code == 401
        r = client.post("/login", data={"username": "demo", "password": "demo-password"})
        assert r.status_code == 400  # no CSRF token
