"""The demo site: /nic/update mounted beside the gated pages, the seeded demo host, group logins vs web login."""

from __future__ import annotations

import re
import time

import httpx

from ddns_update.groups import Groups
from examples.demo import DEMO_HOST, DEMO_PASSWORD, DEMO_USER, create_app
from mfa_middleware import totp
from mfa_middleware.backup_codes import BackupCodeHasher
from mfa_middleware.config import Settings
from mfa_middleware.crypto import SeedCipher
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import MemoryStore, open_store
from mfa_middleware.twofactor import TwoFactor

AGENT = {"user-agent": "test/1.0 me@example.com"}
URL = f"/nic/update?hostname={DEMO_HOST}&myip=192.0.2.1"


async def test_demo_update_with_and_without_2fa_and_group_login_refused_by_web_login() -> None:
    memory = MemoryStore()
    settings = Settings(secret_key="s" * 32, encryption_keys=("e" * 32,))
    app = create_app(settings, memory)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
        r = await client.get(URL, auth=(DEMO_USER, DEMO_PASSWORD), headers=AGENT)
        assert (r.status_code, r.text) == (200, "good 192.0.2.1\n")
        assert (await client.get(URL, auth=(DEMO_USER, DEMO_PASSWORD), headers=AGENT)).text == "nochg 192.0.2.1\n"

        store = open_store(None, memory=memory)
        mfa = TwoFactor(store.keys, SeedCipher(["e" * 32]), BackupCodeHasher(b"k" * 32), PasswordHasher(FAST))
        seed = store.run(mfa.begin_enrollment(DEMO_USER))
        params = totp.TotpParams()
        assert store.run(mfa.confirm_enrollment(DEMO_USER, totp.code_at(seed, totp.current_step(time.time(), params),
                                                                         params)))
        assert (await client.get(URL, auth=(DEMO_USER, DEMO_PASSWORD), headers=AGENT)).text == "nochg 192.0.2.1\n"

        group, password = store.run(Groups(store.keys, PasswordHasher(FAST)).create(DEMO_USER, "home", [DEMO_HOST]))
        assert (await client.get(URL, auth=(group.login, password), headers=AGENT)).text == "nochg 192.0.2.1\n"
        form = (await client.get("/login")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        r = await client.post("/login", data={"username": group.login, "password": password, "csrf_token": token[1]},
                        follow_redirects=False)
        assert r.status_code == 401


async def test_owner_page_hosts_groups_and_switch() -> None:
    memory = MemoryStore()
    app = create_app(Settings(secret_key="s" * 32, encryption_keys=("e" * 32,)), memory)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
        assert (await client.get("/account")).status_code in (302, 303, 307)
        token = re.search(r'name="csrf_token" value="([^"]+)"', (await client.get("/login")).text)
        assert token
        await client.post("/login", data={"username": DEMO_USER, "password": DEMO_PASSWORD,
                                          "csrf_token": token[1]})
        page = await client.get("/account")
        assert page.status_code == 200 and DEMO_HOST in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        bad = await client.post("/account/create", data={"group": "home", "hosts": DEMO_HOST, "password": "no",
                                                         "csrf_token": csrf[1]})
        assert bad.status_code == 401
        assert (await client.post("/account/create", data={"group": "home", "hosts": DEMO_HOST,
                                                           "password": DEMO_PASSWORD})).status_code == 400
        made = await client.post("/account/create", data={"group": "home", "hosts": DEMO_HOST,
                                                          "password": DEMO_PASSWORD, "csrf_token": csrf[1]})
        login = re.search(r"<code data-username>([^<]+)</code>", made.text)
        password = re.search(r"<code data-password>([^<]+)</code>", made.text)
        assert made.status_code == 200 and login and password
        assert_page_headers(made)  # shows a group password: never cached, never framed
        assert_page_headers(page)
        r = await client.get(URL, auth=(login[1], password[1]), headers=AGENT)
        assert r.text == "good 192.0.2.1\n"
        switched = await client.post("/account/switch", data={"value": "deny", "csrf_token": csrf[1]})
        assert "denied" in switched.text
        assert (await client.get(URL, auth=(DEMO_USER, DEMO_PASSWORD), headers=AGENT)).status_code == 401
        await client.post("/account/delete", data={"group": "home", "csrf_token": csrf[1]})
        assert (await client.get(URL, auth=(login[1], password[1]), headers=AGENT)).status_code == 401


def assert_page_headers(page: httpx.Response) -> None:
    h = page.headers
    assert h["cache-control"] == "no-store" and h["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in h["content-security-policy"] and h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin"
