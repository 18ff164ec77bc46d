"""Abuse at full speed, measured: TOTP brute force from many addresses against one account, and credential
stuffing on /nic/update with random passwords. Real Redis, real HTTP through the real ASGI adapters; the
throttles' "hour" is shortened (a policy setting) so the test can watch a lockout expire."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx

from ddns_update.app import UpdateEndpoint
from ddns_update.credentials import ThrottlePolicy as UpdateThrottle
from mfa_middleware.twofactor import ThrottlePolicy
from tests import ddns_harness, gate_harness

WINDOW_MS = 8000
GUESSES = 400


def _client(app: object, ip: str, cookies: httpx.Cookies | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=cookies)


async def test_totp_brute_force_from_many_ips_capped_per_account(redis_url: str) -> None:
    # Back-off off (free_failures huge): only the per-account cap stands between the attacker and the codes.
    policy = ThrottlePolicy(free_failures=10**6, max_per_hour=100, ip_max_per_hour=100, window_ms=WINDOW_MS)
    site = gate_harness.Site("asgi", redis_url, gate={"throttle": policy})
    await site.new_user("victim")
    owner = site.browser()  # the owner's next login, on another day
    assert (await owner.login("victim")).status_code == 303
    attacker = site.browser()
    assert (await attacker.login("victim")).status_code == 303  # the password was phished; the code was not
    page = await attacker.get("/mfa/verify")
    token = gate_harness.csrf_of(page.text)
    ips = [f"203.0.113.{i}" for i in range(1, 51)]
    clients = [_client(site.app, ip, attacker.client.cookies) for ip in ips]
    right = {site.code("victim", d) for d in (-1, 0, 1)}
    guesses = [f"{n:06d}" for n in range(1000, 1000 + 1500) if f"{n:06d}" not in right]
    statuses: list[int] = []
    started = time.monotonic()

    async def attacker_at(i: int) -> None:  # one attacker per address, each as fast as answers come
        for code in guesses[i:GUESSES:len(clients)]:
            r = await clients[i].post("/mfa/verify", data={"csrf_token": token, "code": code})
            statuses.append(r.status_code)

    async with anyio.create_task_group() as tg:
        for i in range(len(clients)):
            tg.start_soon(attacker_at, i)
    elapsed = time.monotonic() - started
    checked, refused = statuses.count(401), statuses.count(429)
    assert checked <= 100 and checked + refused == GUESSES, (checked, refused)
    assert elapsed < WINDOW_MS / 1000, "the attack outlasted the window: shorten it or lengthen the window"
    # The lockout is visible to the operator.
    env = {**os.environ, "REDIS_URL": redis_url}
    out = subprocess.run([str(Path(sys.executable).parent / "mfa-admin"), "--json", "user", "show", "victim"],
                         capture_output=True, text=True, env=env, check=True).stdout
    shown = json.loads(out)
    assert shown["locked_until"], shown
    # The owner, with the right code, is refused while locked …
    locked = await site.verify(owner, "victim")
    assert locked.status_code == 429
    # … and gets in once the window is over.
    await anyio.sleep(WINDOW_MS / 1000 + 0.5)  # the counters expire in Redis (real time) …
    site.clock.advance(WINDOW_MS / 1000 + 30)  # … and the gate's clock moves on too (to a fresh TOTP step)
    r = await site.verify(owner, "victim")
    assert r.status_code == 303 and (await owner.get("/")).status_code == 200
    for c in clients:
        await c.aclose()
    print(f"\nTOTP brute force: {GUESSES} guesses from {len(ips)} IPs (50 in flight) in {elapsed:.1f}s -> "
          f"{checked} checked (cap 100 per account per window), {refused} refused unchecked; "
          f"mfa-admin shows locked_until="
          f"{shown['locked_until']}; owner logged in after the window")


async def test_credential_stuffing_argon2_bounded(redis_url: str) -> None:
    throttle = UpdateThrottle(per_login=10, per_ip=50)
    site = ddns_harness.Site(redis_url, "asgi", throttle=throttle)
    site.account("alice", hosts=["router.example.test"])
    runs = [0]
    verify = site.hasher.verify

    def counting(stored: str | None, password: str) -> bool:
        runs[0] += 1
        return verify(stored, password)

    site.hasher.verify = counting  # type: ignore[method-assign]
    # The router proves its password once (one argon2 run) and is then served from the verifier cache.
    assert (await site.text("hostname=router.example.test&myip=192.0.2.1")).startswith("good")
    assert runs[0] == 1
    endpoint = UpdateEndpoint(site.service, site.async_store)
    attack_ips = [f"198.51.100.{i}" for i in range(1, 101)]
    stuffing_ips = [f"192.0.2.{i}" for i in range(100, 105)]
    answers: list[str] = []
    legit: list[str] = []

    async def attack(worker: int) -> None:  # 100 attackers in flight, each as fast as answers come
        for i in range(worker, 2000, 100):
            await attack_once(i)

    async def attack_once(i: int) -> None:
        if i % 2:  # the router's own login, random passwords, from 100 addresses
            login, ip = "alice", attack_ips[i % len(attack_ips)]
        else:  # random logins (stuffing lists), from 5 addresses
            login, ip = f"user{secrets.token_hex(4)}", stuffing_ips[i % len(stuffing_ips)]
        async with _client(endpoint, ip) as c:
            r = await c.get("/nic/update?hostname=router.example.test&myip=203.0.113.9",
                            auth=(login, secrets.token_urlsafe(12)), headers={"user-agent": ddns_harness.AGENT})
        answers.append(r.text.strip())

    async def router() -> None:
        for n in range(20):
            legit.append(await site.text(f"hostname=router.example.test&myip=192.0.2.{10 + n}"))
            await asyncio.sleep(0.01)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(router)
        for worker in range(100):
            tg.start_soon(attack, worker)
    elapsed = time.monotonic() - started
    attack_runs = runs[0] - 1
    bound = throttle.per_login + throttle.per_ip * len(stuffing_ips)
    assert set(answers) == {"badauth"} and len(answers) == 2000
    assert attack_runs <= bound, (attack_runs, bound)
    assert all(line.startswith("good") for line in legit), legit
    await site.close()
    print(f"\ncredential stuffing: 2000 random-password updates (1000 on one login from 100 IPs, 1000 random "
          f"logins from 5 IPs) in {elapsed:.1f}s -> {attack_runs} argon2 runs (bound {bound}: "
          f"{throttle.per_login}/login + {throttle.per_ip}/IP per window); the router's 20 updates all 'good'")
