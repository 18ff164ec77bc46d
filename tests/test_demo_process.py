"""`make run` in miniature: the demo as a real process on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.apps import run_demo


@pytest.fixture(scope="module", params=["examples.demo", "examples.flask_demo"])
def demo(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each demo as ``python -m`` starts it: the Starlette one on uvicorn, the Flask one on waitress; the
    embedded in-memory store, the seeded login."""
    with run_demo(request.param) as run:
        yield run.url
    assert f"http://127.0.0.1:{run.port}/" in run.stdout and "demo / demo-password" in run.stdout


def test_demo_runs_on_a_production_server(demo: str) -> None:
    server = httpx.get(demo + "/login").headers["server"]
    assert server in ("uvicorn", "waitress"), server  # not Werkzeug's development server


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
