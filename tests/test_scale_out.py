"""Scale-out: two stateless app instances on a real 3-master Redis Cluster (`redis+cluster://`), and an
instance on a real Sentinel-managed primary/replica pair (`redis+sentinel://`) through a failover."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from ddns_update.dns_sync import accounts_with_hosts
from ddns_update.groups import Groups
from ddns_update.hosts import Hosts
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import Op, StoreError, cmd, open_async_store, open_store
from tests.apps import App, Browser, make_user, open_test_store, update
from tests.servers import RedisCluster, RedisSentinelSetup


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisCluster, App, App]]:
    c = RedisCluster().start()
    logs = tmp_path_factory.mktemp("cluster-apps")
    a, b = App(c.url, logs, "a").start(), App(c.url, logs, "b").start()
    try:
        yield c, a, b
    finally:
        text = a.stop() + b.stop()
        c.cleanup()
        assert "Traceback" not in text and "CROSSSLOT" not in text, text[-3000:]


def _keys_per_node(c: RedisCluster) -> dict[int, int]:
    return {p: int(redis.Redis(port=p).dbsize()) for p in c.ports}


def test_cluster_gate_flow_across_two_instances(cluster: tuple[RedisCluster, App, App]) -> None:
    c, a, b = cluster
    store = open_test_store(c.url)
    users = [make_user(store, f"cl-user-{i}") for i in range(3)]
    store.close()
    for user in users:
        br = Browser(a.url)
        assert br.login(user.name).status_code == 303
        assert br.home().status_code == 303  # 2FA on: to /mfa/verify
        code = user.code()  # the very code, reused below: a new 30 s step must not make it another one
        assert br.verify(code).status_code == 303
        assert br.home().status_code == 200
        br.move_to(b.url)  # the load balancer sends the next request to the other instance
        assert br.home().status_code == 200
        other = Browser(b.url)  # a second browser: the same code is refused on B, a backup code works there
        assert other.login(user.name).status_code == 303
        assert other.verify(code).status_code == 401
        r = other.backup(user.backup_codes[0])
        assert r.status_code == 200 and other.home().status_code == 200
        other.move_to(a.url)
        assert other.home().status_code == 200
        again = Browser(a.url)
        assert again.login(user.name).status_code == 303
        assert again.backup(user.backup_codes[0]).status_code == 401  # used once, on B
    spread = _keys_per_node(c)
    assert all(n > 0 for n in spread.values()), spread
    print(f"\ncluster gate: {len(users)} users through login, TOTP, backup code, replay refusal on 2 instances; "
          f"keys per master {sorted(spread.values())}")


def test_cluster_updates_groups_history_and_sync_scan(cluster: tuple[RedisCluster, App, App]) -> None:
    c, a, b = cluster
    store = open_test_store(c.url)
    accounts = [f"cl-ddns-{i}" for i in range(12)]
    for name in accounts:
        make_user(store, name, (f"{name}.example.test", f"{name}-nas.example.test"), enroll=False)
    group, group_password = store.run(Groups(store.keys, PasswordHasher(FAST)).create(
        accounts[0], "lan", [f"{accounts[0]}-nas.example.test"]))
    answers = []
    with httpx.Client(base_url=a.url, timeout=10) as on_a, httpx.Client(base_url=b.url, timeout=10) as on_b:
        for i, name in enumerate(accounts):
            host = f"{name}.example.test"
            answers.append(update(on_a, name, host, f"192.0.2.{i + 1}").text.strip())
            answers.append(update(on_b, name, host, f"192.0.2.{i + 1}").text.strip())
            answers.append(update(on_b, name, host, f"198.51.100.{i + 1}").text.strip())
        group_answer = update(on_a, group.login, "lan", "203.0.113.7", group_password).text.strip()
    n = len(accounts)
    assert answers[0::3] == [f"good 192.0.2.{i + 1}" for i in range(n)]
    assert answers[1::3] == [f"nochg 192.0.2.{i + 1}" for i in range(n)]
    assert answers[2::3] == [f"good 198.51.100.{i + 1}" for i in range(n)]
    assert group_answer == "good 203.0.113.7"
    hosts = Hosts(store.keys)
    # The update script writes each host's history list by name (same hash tag, same slot): it worked.
    history = store.run(hosts.history(accounts[3], f"{accounts[3]}.example.test"))
    assert [r.ipv4 for r in history] == ["198.51.100.4", "192.0.2.4"]
    nas = store.run(hosts.history(accounts[0], f"{accounts[0]}-nas.example.test"))
    assert [r.ipv4 for r in nas] == ["203.0.113.7"]
    # `ddns-admin dns sync --all` finds accounts by SCAN: on a cluster it must walk every primary.
    found = store.run(accounts_with_hosts(store.keys))
    store.close()
    assert set(accounts) <= set(found), sorted(set(accounts) - set(found))
    print(f"\ncluster updates: {len(answers) + 1} updates (account + group logins) over 2 instances, history "
          f"written in-slot, sync SCAN found {len(found)} accounts across {len(c.ports)} primaries")


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisSentinelSetup, App]]:
    s = RedisSentinelSetup().start()
    app = App(s.url, tmp_path, "sentinel-app").start()
    try:
        yield s, app
    finally:
        text = app.stop()
        s.cleanup()
        assert "Traceback" not in text, text[-3000:]


def test_sentinel_failover_during_updates(sentinel: tuple[RedisSentinelSetup, App]) -> None:
    s, app = sentinel
    store = open_test_store(s.url)
    user = make_user(store, "sentinel-user", ("sentinel.example.test",))
    samples: list[tuple[float, str]] = []
    stop = threading.Event()

    def router() -> None:
        with httpx.Client(base_url=app.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                answer = update(client, user.name, "sentinel.example.test", f"10.9.{n // 256 % 256}.{n % 256}")
                samples.append((time.monotonic(), answer.text.strip()))
                time.sleep(0.01)

    thread = threading.Thread(target=router)
    thread.start()
    time.sleep(1.0)
    old = s.primary_port()
    failover_at = time.monotonic()
    new = s.failover()
    switched_at = time.monotonic()
    time.sleep(3.0)
    # Connections opened before the switch are dropped within 0.5 s of it (the driver's primary watch), and
    # the old primary refuses writes once its replica is gone for 2 s (min-replicas-to-write; README
    # "Sentinel: the failover window"); its demotion follows.
    s.wait_for(lambda: redis.Redis(port=old).info("replication")["role"] == "slave")
    demoted_after = time.monotonic() - failover_at
    browser = Browser(app.url)
    gate_ok = browser.login(user.name).status_code == 303 and browser.verify(user.code()).status_code == 303
    stop.set()
    thread.join(30)
    assert new != old
    assert all(a.startswith("good") or a == "911" for _, a in samples), {a for _, a in samples}
    after = [t for t, a in samples if t > switched_at and a.startswith("good")]
    assert after, "no update succeeded after the failover"
    errors = [t for t, a in samples if a == "911"]
    last_good = [a for _, a in samples if a.startswith("good")][-1].split()[1]
    store.close()
    # Read the new primary itself: the last acknowledged update must be there, not on the old primary.
    hosts_key = store.keys.account(user.name, "hosts")
    record = redis.Redis(port=new, decode_responses=True).hget(hosts_key, "sentinel.example.test") or ""
    assert record.split("|")[0] == last_good
    assert gate_ok and browser.home().status_code == 200
    role = redis.Redis(port=new).info("replication")["role"]
    assert role == "master"
    print(f"\nsentinel failover {old} -> {new}: {len(samples)} updates, {len(errors)} answered 911 during the "
          f"switch, first 'good' after the switch {after[0] - failover_at:.2f}s after the failover began "
          f"(Sentinel agreed after {switched_at - failover_at:.2f}s); gate login + TOTP fine afterwards; the old "
          f"primary was demoted {demoted_after:.1f}s after the failover began")


def _set(key: str, value: str) -> Op[None]:
    yield cmd("SET", key, value)


def test_sentinel_failover_moves_an_already_open_client_to_the_new_primary() -> None:
    """Split brain: the old primary stays `master` for seconds after the switch, and a warm pool's connections
    keep writing to it. The drivers ask the Sentinels every 0.5 s and drop the pool when the primary moved:
    a write through a client opened before the failover reaches the new primary within ~1 s."""
    s = RedisSentinelSetup().start()
    try:
        assert redis.Redis(port=s.data_ports[0]).config_get("min-replicas-to-write") == {"min-replicas-to-write": "1"}
        reached, old, new = asyncio.run(_write_through_failover(s))
        assert set(reached) == {"", ":async"}, reached
        assert max(reached.values()) < 1.2, reached
        print(f"\nsentinel failover {old} -> {new}: an already-open client wrote to the new primary "
              f"{reached[''] * 1000:.0f} ms (blocking) / {reached[':async'] * 1000:.0f} ms (async) after the switch")
    finally:
        s.cleanup()


async def _write_through_failover(s: RedisSentinelSetup) -> tuple[dict[str, float], int | None, int]:
    """Keep writing through one blocking and one async client opened before the failover; when did each
    write first land on the new primary (seconds after the Sentinels agreed)?"""
    sync_store, async_store = open_store(s.url), open_async_store(s.url)
    key = sync_store.keys.shared("failover-probe")

    async def write(n: int) -> None:
        for suffix in ("", ":async"):
            try:
                if suffix:
                    await async_store.run(_set(key + suffix, str(n)))
                else:
                    sync_store.run(_set(key, str(n)))
            except StoreError:
                pass  # the switch itself: a refused or broken write is answered 911, never lost silently

    try:
        for n in range(20):  # warm both pools on the old primary
            await write(n)
        old = s.primary_port()
        new = await asyncio.to_thread(s.failover)
        switched_at = time.monotonic()
        assert redis.Redis(port=old).info("replication")["role"] == "master"  # not demoted yet
        on_new = redis.Redis(port=new, decode_responses=True)
        reached: dict[str, float] = {}
        n = 100
        while len(reached) < 2 and time.monotonic() - switched_at < 10:
            n += 1
            await write(n)
            for suffix in ("", ":async"):
                if suffix not in reached and on_new.get(key + suffix) == str(n):
                    reached[suffix] = time.monotonic() - switched_at
            await asyncio.sleep(0.02)
        return reached, old, new
    finally:
        await async_store.close()
        sync_store.close()


def test_a_connection_busy_during_the_switch_is_dropped_when_released() -> None:
    """redis-py's async Sentinel pool takes back a connection that was busy while the primary moved without
    asking where it points, and the primary watch only drops *idle* ones: such a connection kept serving the
    old primary until a later check caught it idle. The watch now marks busy ones to be dropped on release."""
    s = RedisSentinelSetup().start()
    try:
        asyncio.run(_busy_through_failover(s))
    finally:
        s.cleanup()


async def _busy_through_failover(s: RedisSentinelSetup) -> None:
    store = open_async_store(s.url)
    try:
        key = store.keys.shared("busy-probe")
        await store.run(_set(key, "before"))
        driver: Any = store.driver
        pool = driver.client.connection_pool
        busy = await pool.get_connection()  # in use across the switch, as a request in flight holds one
        old = s.primary_port()
        assert busy.is_connected and busy.port == old
        new = await asyncio.to_thread(s.failover)
        driver.watch.next_at = 0.0  # the next request starts the primary check at once
        await store.run(_set(key, "during"))
        await driver.watch.task
        await pool.release(busy)
        assert not busy.is_connected, "a connection to the old primary went back to the pool still connected"
        await store.run(_set(key, "after"))
        assert redis.Redis(port=new, decode_responses=True).get(key) == "after"
        assert all(c.port == new for c in pool._available_connections if c.is_connected)
    finally:
        await store.close()
