"""Durability: with `appendonly yes` + `appendfsync always`, Redis killed with -9 in the middle of 2,000 updates
loses none of the updates it acknowledged (`good`). See docs/running-at-scale.md for the settings."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import httpx

from ddns_update.hosts import Hosts
from tests.apps import App, make_user, open_test_store, update
from tests.servers import RedisServer

HOSTS = tuple(f"h{i}.durable.example.test" for i in range(5))
TOTAL = 2000


def _n(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return ((a - 10) << 24) | (b << 16) | (c << 8) | d


def test_no_acknowledged_update_lost_across_kill_9(tmp_path: Path) -> None:
    redis = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    app: App | None = None
    try:
        store = open_test_store(redis.url)
        make_user(store, "durable", HOSTS, enroll=False)
        store.close()
        app = App(redis.url, tmp_path).start()
        counter = itertools.count()
        sent = [0]
        answers: dict[str, list[tuple[str, str]]] = {h: [] for h in HOSTS}  # host -> [(ip, answer)] in order
        lock = threading.Lock()

        def router(host: str) -> None:
            with httpx.Client(base_url=app.url, timeout=10) as client:  # type: ignore[union-attr]
                while True:
                    with lock:
                        n = next(counter)
                        if n >= TOTAL:
                            return
                    ip = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
                    answer = update(client, "durable", host, ip).text.strip()
                    answers[host].append((ip, answer))
                    with lock:
                        sent[0] += 1

        threads = [threading.Thread(target=router, args=(h,)) for h in HOSTS]
        for t in threads:
            t.start()
        while sent[0] < TOTAL // 2:
            time.sleep(0.001)
        redis.kill()  # SIGKILL mid-way, with updates in flight
        time.sleep(0.5)
        redis.start()
        for t in threads:
            t.join(120)

        store = open_test_store(redis.url)
        hosts = Hosts(store.keys)
        records = {r.host: r for r in store.run(hosts.list("durable"))}
        acked = lost = refused = 0
        for host in HOSTS:
            goods = [ip for ip, a in answers[host] if a.startswith("good")]
            refused += sum(1 for _, a in answers[host] if a == "911")
            acked += len(goods)
            assert all(a.startswith("good") or a == "911" for _, a in answers[host]), answers[host][:5]
            # The current record is the last acknowledged update of this host.
            if records[host].ipv4 != goods[-1]:
                lost += 1
            history = [r.ipv4 or "" for r in store.run(hosts.history("durable", host))]
            # Every acknowledged update as new as the oldest history entry is in the history, newest first
            # (addresses were handed out in increasing order, so they tell the order updates were sent in).
            assert history[0] == goods[-1]
            assert [_n(ip) for ip in history] == sorted((_n(ip) for ip in history), reverse=True)
            lost += sum(1 for ip in goods if _n(ip) >= _n(history[-1]) and ip not in history)
        store.close()
        assert acked + refused == TOTAL
        assert refused > 0, "the kill landed after the last update: nothing was tested"
        assert lost == 0
        print(f"\ndurability: {TOTAL} updates over {len(HOSTS)} hosts, kill -9 after {TOTAL // 2}: "
              f"{acked} acknowledged 'good', {refused} answered 911 while down, lost 0")
    finally:
        log = app.stop() if app is not None else ""
        redis.cleanup()
        assert "Traceback" not in log
