"""`make run` in miniature: the demo as a real process on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.apps import run_demo


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with run_demo("examples.demo") as run:
        yield run.url
    assert f"http://127.0.0.1:{run.port}/" in run.stdout and "demo / demo-password" in run.stdout


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
