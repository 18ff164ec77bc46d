"""The update endpoint's failure throttle at full speed over real sockets (issue 20, item 2): uvicorn (ASGI)
and waitress (WSGI) serving ``/nic/update`` from this process, clients bound to 127.0.0.x so that each
guessing address is a real peer address, a real redis-server, the production argon2id profile.

"Compared" is counted as argon2id runs (the cache only says yes: a compared wrong password runs one verify,
a throttled one none). The timing test prints the medians and asserts only on their ratio.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
import uvicorn
import waitress

from ddns_update.app import WsgiUpdateApp, build_service, create_app
from ddns_update.credentials import ThrottlePolicy
from ddns_update.hosts import Hosts
from ddns_update.service import UpdateService
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import Keys, open_store
from tests.ddns_harness import AGENT, PASSWORD, settings
from tests.servers import free_port, wait_for_port

HOST = "router.example.test"
ROUTER = "127.0.0.1"  # the owner's router: proves its password from here before the attack
LIMITS = ThrottlePolicy()


def _service(url: str, throttle: ThrottlePolicy | None = None) -> tuple[UpdateService, PasswordHasher]:
    hasher = PasswordHasher()  # the production profile: what a compared guess really costs
    return build_service(settings(url), Keys(), hasher, throttle=throttle), hasher


@contextlib.contextmanager
def served(adapter: str, url: str, service: UpdateService) -> Iterator[str]:
    """``service`` served on a free loopback port by uvicorn or waitress in a thread; its base URL."""
    port = free_port()
    if adapter == "asgi":
        app = create_app(settings(url), service=service, gc_tuning=False)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for_port(port)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)
    else:
        store = open_store(url)
        wsgi = waitress.create_server(WsgiUpdateApp(service, store), host="127.0.0.1", port=port, threads=8)
        thread = threading.Thread(target=wsgi.run, daemon=True)
        thread.start()
        wait_for_port(port)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            wsgi.close()
            wsgi.task_dispatcher.shutdown()
            thread.join(10)
            store.close()


def _accounts(url: str, *names: str) -> None:
    store = open_store(url)
    try:
        for name in names:
            store.run(Accounts(store.keys, PasswordHasher()).create(name, PASSWORD))
            store.run(Hosts(store.keys).add(name, [f"{name}.{HOST}"]))
    finally:
        store.close()


def _client(base: str, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"user-agent": AGENT}, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def _update(client: httpx.AsyncClient, login: str, password: str, myip: str) -> httpx.Response:
    return await client.get(f"/nic/update?hostname={login}.{HOST}&myip={myip}", auth=(login, password))


async def _attack(base: str, router: httpx.AsyncClient, login: str, addresses: list[str],
                  ) -> tuple[list[tuple[int, str]], list[str]]:
    """1,000 wrong passwords for ``login`` from 20 connections in flight spread over ``addresses``, while the
    owner's router updates from its own address; every attack answer and every router answer."""
    answers: list[tuple[int, str]] = []
    router_answers: list[str] = []
    attacking = True

    async def attacker(address: str, count: int) -> None:
        async with _client(base, address) as client:
            for i in range(count):
                r = await _update(client, login, f"guess-{address}-{i}", "203.0.113.9")
                answers.append((r.status_code, r.text))

    async def owner() -> None:
        n = 0
        while attacking or n < 2:
            n += 1
            router_answers.append((await _update(router, login, PASSWORD, f"192.0.2.{n % 2 + 1}")).text)
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(owner)
        async with anyio.create_task_group() as attack:
            for w in range(20):
                attack.start_soon(attacker, addresses[w % len(addresses)], 1000 // 20)
        attacking = False
    return answers, router_answers


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_a_thousand_guesses_against_a_warm_login(redis_url: str, adapter: str) -> None:
    _accounts(redis_url, "alice", "bob")
    service, hasher = _service(redis_url)
    with served(adapter, redis_url, service) as base:
        router = _client(base, ROUTER)
        for login in ("alice", "bob"):  # both routers prove their passwords: the verifiers are warm
            assert (await _update(router, login, PASSWORD, "192.0.2.1")).text == "good 192.0.2.1\n"
        for login, addresses in (("alice", ["127.0.0.2"]), ("bob", [f"127.0.0.{i}" for i in range(2, 22)])):
            before, started = hasher.calls, time.monotonic()
            answers, router_answers = await _attack(base, router, login, addresses)
            elapsed, compared = time.monotonic() - started, hasher.calls - before
            assert len(answers) == 1000 and set(answers) == {(401, "badauth\n")}
            assert compared <= LIMITS.per_login, compared
            assert router_answers and all(a.startswith(("good 192.0.2.", "nochg 192.0.2.")) for a in router_answers), \
                router_answers
            print(f"\n{adapter}: 1000 wrong passwords for warm login {login} from {len(addresses)} address(es) in "
                  f"{elapsed:.1f}s: {compared} compared (limit {LIMITS.per_login} per login, {LIMITS.per_login_ip} "
                  f"per login and address), {1000 - compared} throttled; the router's {len(router_answers)} "
                  f"updates from its own address all good/nochg")
        await router.aclose()


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_a_wrong_password_takes_as_long_for_a_known_login_as_for_an_unknown_one(redis_url: str,
                                                                                     adapter: str) -> None:
    _accounts(redis_url, "alice")
    unlimited = ThrottlePolicy(per_login=10**6, per_login_ip=10**6, per_ip=10**6)  # every guess is compared
    service, _ = _service(redis_url, unlimited)
    with served(adapter, redis_url, service) as base:
        async with _client(base, ROUTER) as client:
            assert (await _update(client, "alice", PASSWORD, "192.0.2.1")).text == "good 192.0.2.1\n"  # warm
            times: dict[str, list[float]] = {"alice": [], "nobody": []}
            for i in range(55):
                for login in ("alice", "nobody"):  # interleaved, so drift in the machine's load hits both alike
                    started = time.perf_counter()
                    r = await _update(client, login, f"wrong-{i}", "192.0.2.1")
                    elapsed = time.perf_counter() - started
                    assert r.status_code == 401
                    if i >= 5:  # the first few warm up connections and caches
                        times[login].append(elapsed)
    known, unknown = statistics.median(times["alice"]), statistics.median(times["nobody"])
    ratio = known / unknown
    print(f"\n{adapter}: wrong password, median of {len(times['alice'])}: known warm login {known * 1000:.2f} ms, "
          f"unknown login {unknown * 1000:.2f} ms, ratio {ratio:.3f}")
    assert 0.9 <= ratio <= 1.1, ratio


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_throttled_refusals_of_known_and_unknown_logins(redis_url: str, adapter: str) -> None:
    """Informative only (printed, nothing asserted on time): once throttled, a known login's refusal makes the
    same store steps as an unknown login's (``Credentials.refuse``)."""
    _accounts(redis_url, "alice")
    service, _ = _service(redis_url)
    with served(adapter, redis_url, service) as base:
        async with _client(base, ROUTER) as client:
            assert (await _update(client, "alice", PASSWORD, "192.0.2.1")).text == "good 192.0.2.1\n"
        async with _client(base, "127.0.0.5") as client:
            times: dict[str, list[float]] = {"alice": [], "nobody": []}
            for i in range(70):
                for login in ("alice", "nobody"):
                    started = time.perf_counter()
                    r = await _update(client, login, f"wrong-{i}", "192.0.2.1")
                    elapsed = time.perf_counter() - started
                    assert r.status_code == 401
                    if i >= 20:  # past both limits: every one of these is refused unchecked
                        times[login].append(elapsed)
    known, unknown = statistics.median(times["alice"]), statistics.median(times["nobody"])
    print(f"\n{adapter}: throttled, median of {len(times['alice'])}: known login {known * 1000:.2f} ms, unknown login "
          f"{unknown * 1000:.2f} ms, ratio {known / unknown:.3f}")
