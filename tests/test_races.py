"""Races across two app instances (separate uvicorn processes) sharing one Redis: every guard is an atomic
step in the store, so what one instance accepted the other refuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ddns_update.hosts import Hosts
from tests.apps import App, Browser, make_user, open_test_store, update
from tests.servers import RedisServer


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, App, App]]:
    redis = RedisServer().start()
    logs = tmp_path_factory.mktemp("apps")
    a, b = App(redis.url, logs, "a").start(), App(redis.url, logs, "b").start()
    try:
        yield redis, a, b
    finally:
        logs_text = a.stop() + b.stop()
        redis.cleanup()
        assert "Traceback" not in logs_text, logs_text[-3000:]


def test_totp_code_used_on_a_is_refused_on_b(two_apps: tuple[RedisServer, App, App]) -> None:
    redis, a, b = two_apps
    store = open_test_store(redis.url)
    user = make_user(store, "replay")
    store.close()
    on_a, on_b = Browser(a.url), Browser(b.url)
    assert on_a.login(user.name).status_code == 303 and on_b.login(user.name).status_code == 303
    code = user.code()
    assert on_a.verify(code).status_code == 303
    assert on_a.home().status_code == 200
    refused = on_b.verify(code)
    assert refused.status_code == 401 and "already used" in refused.text
    assert on_b.home().status_code == 303  # still unverified on B
    print("\nTOTP replay across instances: accepted on A, refused on B (401 'already used')")


def test_one_backup_code_100_concurrent_submissions_across_both(two_apps: tuple[RedisServer, App, App]) -> None:
    redis, a, b = two_apps
    store = open_test_store(redis.url)
    user = make_user(store, "backup-race")
    store.close()
    browsers = [Browser(a.url if i % 2 else b.url, timeout=60) for i in range(100)]
    with ThreadPoolExecutor(20) as pool:
        assert all(r.status_code == 303 for r in pool.map(lambda br: br.login(user.name), browsers))
    pages = [br.client.get("/mfa/verify/backup") for br in browsers]
    from tests.apps import csrf_of

    tokens = [csrf_of(p.text) for p in pages]
    barrier = threading.Barrier(100)
    code = user.backup_codes[0]

    def submit(i: int) -> int:
        barrier.wait()
        r = browsers[i].client.post("/mfa/verify/backup", data={"backup_code": code, "csrf_token": tokens[i]})
        return r.status_code

    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(submit, range(100)))
    through = sum(1 for br in browsers if br.home().status_code == 200)
    for br in browsers:
        br.close()
    assert statuses.count(200) == 1, statuses  # the "backup code used" page
    assert through == 1
    assert set(statuses) <= {200, 401, 429}
    print(f"\none backup code, 100 concurrent submissions over 2 instances: {statuses.count(200)} success, "
          f"{statuses.count(401)} refused as used, {statuses.count(429)} refused by the throttle")


def test_100_concurrent_updates_one_host_two_instances(two_apps: tuple[RedisServer, App, App]) -> None:
    redis, a, b = two_apps
    store = open_test_store(redis.url)
    host = "race.example.test"
    make_user(store, "racer", (host,), enroll=False)
    clients = [httpx.Client(base_url=a.url if i % 2 else b.url, timeout=60) for i in range(100)]
    for c in clients[:2]:  # prove the credential once per instance's verifier cache
        update(c, "racer", host, "192.0.2.250")
    barrier = threading.Barrier(100)

    def send(i: int) -> tuple[str, str]:
        ip = f"198.51.100.{i}"
        barrier.wait()
        return ip, update(clients[i], "racer", host, ip).text.strip()

    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(send, range(100)))
    for c in clients:
        c.close()
    acked = [ip for ip, answer in answers if answer == f"good {ip}"]
    assert len(acked) == 100, [x for x in answers if not x[1].startswith("good")][:5]
    hosts = Hosts(store.keys)
    (record,) = store.run(hosts.list("racer"))
    history = [r.ipv4 for r in store.run(hosts.history("racer", host))]
    store.close()
    # Each update is one atomic step: the record is the newest history entry, and the history is a run of
    # distinct acknowledged updates (the list keeps the last 20), none lost or duplicated between the two.
    assert record.ipv4 == history[0]
    assert record.ipv4 in acked
    assert len(history) == 20 and len(set(history)) == 20 and set(history) <= set(acked)
    print(f"\n100 concurrent updates of one host over 2 instances: {len(acked)} 'good', stored record "
          f"{record.ipv4} = newest of {len(history)} consistent history entries")
