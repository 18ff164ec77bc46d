"""The Flask demo's owner page (/account): behind the WSGI gate, the same forms and answers as the Starlette
demo's (tests/test_ddns_demo.py), driven over HTTP through httpx's WSGI transport, on the in-memory store and
on a real redis-server. Group logins made on the page then update through the same app's /nic/update."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask

from ddns_update.groups import Groups
from ddns_update.hosts import Hosts
from examples.demo import DEMO_HOST, DEMO_PASSWORD, DEMO_USER
from examples.flask_demo import create_app
from mfa_middleware.config import Settings
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import Store
from tests.gate_harness import csrf_of
from tests.test_ddns_demo import assert_page_headers

AGENT = {"user-agent": "test/1.0 me@example.com"}
OTHER_HOST = "other.example.test"


@pytest.fixture(params=["memory", "redis"])
def app(request: pytest.FixtureRequest, redis_url: str) -> Flask:
    url = redis_url if request.param == "redis" else None
    return create_app(Settings(secret_key="s" * 32, encryption_keys=("e" * 32,), redis_url=url),
                      argon2_profile=FAST)


@pytest.fixture
def client(app: Flask) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1:8000") as c:
        yield c


def _store(app: Flask) -> Store:
    store: Store = app.extensions["mfa_store"]
    return store


def _log_in(client: httpx.Client) -> str:
    """Log the demo user in; the owner page's CSRF token."""
    r = client.post("/login", data={"username": DEMO_USER, "password": DEMO_PASSWORD,
                                    "csrf_token": csrf_of(client.get("/login").text)})
    assert r.status_code == 303, r.text
    page = client.get("/account")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def _update(client: httpx.Client, auth: tuple[str, str], host: str = DEMO_HOST) -> httpx.Response:
    return client.get(f"/nic/update?hostname={host}&myip=192.0.2.1", auth=auth, headers=AGENT)


def _made(page: httpx.Response) -> tuple[str, str]:
    login = re.search(r"<code data-username>([^<]+)</code>", page.text)
    password = re.search(r"<code data-password>([^<]+)</code>", page.text)  # shown once, in a role=status notice
    assert page.status_code == 200 and login and password, page.text
    return login[1], password[1]


def test_anonymous_visitors_are_sent_to_log_in(client: httpx.Client) -> None:
    for r in (client.get("/account"), client.post("/account/create", data={"group": "home"})):
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=/account"
    r = client.post("/login?next=/account", data={"username": DEMO_USER, "password": DEMO_PASSWORD,
                                                  "csrf_token": csrf_of(client.get("/login").text)})
    assert (r.status_code, r.headers["location"]) == (303, "/account")


def test_home_links_the_page_and_the_page_lists_the_demo_host(client: httpx.Client) -> None:
    _log_in(client)
    assert '<a href="/account">Hosts &amp; groups</a>' in client.get("/").text
    page = client.get("/account")
    assert page.status_code == 200 and f'data-host="{DEMO_HOST}"' in page.text
    assert "Account password updates: allowed" in page.text


def test_refusals_change_nothing(app: Flask, client: httpx.Client) -> None:
    csrf = _log_in(client)
    create = {"group": "home", "hosts": DEMO_HOST, "password": DEMO_PASSWORD}
    wrong = client.post("/account/create", data={**create, "password": "no", "csrf_token": csrf})
    assert wrong.status_code == 401 and "Wrong password." in wrong.text
    missing = client.post("/account/create", data=create)
    forged = client.post("/account/create", data={**create, "csrf_token": csrf + "x"})
    assert missing.status_code == forged.status_code == 400 and missing.text == forged.text
    assert "The form expired or did not come from this site." in missing.text
    bad_name = client.post("/account/create", data={**create, "group": "<b>x", "csrf_token": csrf})
    assert bad_name.status_code == 400 and "“&lt;b&gt;x” is not a group name" in bad_name.text
    assert "<b>x" not in bad_name.text
    # The refused field is marked and keeps what was typed; the error is tied to it.
    assert re.search(r'id="create-group"[^>]*value="&lt;b&gt;x"[^>]*aria-describedby="create-group-hint error"'
                     r'[^>]*aria-invalid="true"', bad_name.text)
    unknown = client.post("/account/frobnicate", data={"csrf_token": csrf})
    assert unknown.status_code == 404 and "There is no such page." in unknown.text
    assert client.get("/account/create").status_code == 405
    assert _store(app).run(Groups(_store(app).keys, PasswordHasher(FAST)).list(DEMO_USER)) == []
    assert _update(client, (DEMO_USER, DEMO_PASSWORD)).text == "good 192.0.2.1\n"


def test_owner_page_hosts_groups_and_switch(app: Flask, client: httpx.Client) -> None:
    csrf = _log_in(client)
    login, password = _made(client.post("/account/create", data={
        "group": "home", "hosts": DEMO_HOST, "password": DEMO_PASSWORD, "csrf_token": csrf}))
    assert _update(client, (login, password)).text == "good 192.0.2.1\n"
    assert f'data-group-login="{login}" data-group-hosts="{DEMO_HOST}"' in client.get("/account").text
    assert_page_headers(client.get("/account"))

    wrong = client.post("/account/rotate", data={"group": "home", "password": "no", "csrf_token": csrf})
    assert wrong.status_code == 401 and _update(client, (login, password)).text == "nochg 192.0.2.1\n"
    new_password = _rotated(client.post("/account/rotate", data={
        "group": "home", "password": DEMO_PASSWORD, "csrf_token": csrf}), login)
    old = _update(client, (login, password))
    assert (old.status_code, old.text) == (401, "badauth\n")
    assert _update(client, (login, new_password)).text == "nochg 192.0.2.1\n"

    _store(app).run(Hosts(_store(app).keys).add(DEMO_USER, [OTHER_HOST]))
    changed = client.post("/account/hosts", data={"group": "home", "add": OTHER_HOST, "remove": DEMO_HOST,
                                                  "csrf_token": csrf})
    assert changed.status_code == 200 and f'data-group-login="{login}" data-group-hosts="{OTHER_HOST}"' in changed.text
    assert _update(client, (login, new_password)).text == "nohost\n"
    assert _update(client, (login, new_password), OTHER_HOST).text == "good 192.0.2.1\n"

    switched = client.post("/account/switch", data={"value": "deny", "csrf_token": csrf})
    assert "Account password updates: denied" in switched.text
    own = _update(client, (DEMO_USER, DEMO_PASSWORD))
    assert (own.status_code, own.text) == (401, "badauth\n")
    assert _update(client, (login, new_password), OTHER_HOST).text == "nochg 192.0.2.1\n"
    allowed = client.post("/account/switch", data={"value": "allow", "csrf_token": csrf})
    assert "Account password updates: allowed" in allowed.text
    assert _update(client, (DEMO_USER, DEMO_PASSWORD)).text == "nochg 192.0.2.1\n"

    deleted = client.post("/account/delete", data={"group": "home", "csrf_token": csrf})
    assert deleted.status_code == 200 and "Group deleted." in deleted.text and login not in deleted.text
    assert _update(client, (login, new_password), OTHER_HOST).status_code == 401


def _rotated(page: httpx.Response, login: str) -> str:
    password = re.search(rf"New password for <code data-username>{login}</code>: <code data-password>([^<]+)</code>",
                         page.text)
    assert page.status_code == 200 and password, page.text
    return password[1]
