"""Dev tool: the update endpoint's CPU cost per request, in process, next to the bare Starlette endpoint.

``.venv/bin/python bench/profile_update.py [SORT] [--mode nochg|good] [--requests N] [--rounds R]``

No HTTP server and no load generator: both ASGI apps are called directly by 32 concurrent coroutines on one
event loop, against a real redis-server (``tests.servers.RedisServer``) holding one account with 200 hosts
and a warm credential. Prints, per round (bare and endpoint interleaved), this process's CPU µs per
request (``time.process_time``: Redis's own CPU is not counted) and wall µs, then the minimum and median
over the rounds. uvicorn's own per-request cost comes on top of both in ``bench.update_endpoint``.

``SORT`` (e.g. ``tottime``, ``cumtime``) adds a cProfile of one more endpoint run, sorted by it.
``--mode good`` sends a new address on every pass over the hosts, so every request changes a record.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import itertools
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import apps
from ddns_update.abuse import AbusePolicy
from ddns_update.app import build_service, create_app
from ddns_update.hosts import Hosts
from ddns_update.service import UpdatePolicy
from mfa_middleware.accounts import Accounts
from mfa_middleware.config import Settings
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import Keys, open_store
from tests.servers import RedisServer

HOSTS = 200
CONCURRENCY = 32
AUTH = b"Basic " + base64.b64encode(b"alice:password-123")


def _scope(query: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/nic/update", "raw_path": b"/nic/update", "query_string": query, "root_path": "",
            "headers": [(b"host", b"t"), (b"user-agent", b"bench/1.0"), (b"authorization", AUTH)],
            "client": ("127.0.0.1", 1), "server": ("t", 80)}


def _queries(mode: str) -> Callable[[], bytes]:
    counter = itertools.count()

    def nochg() -> bytes:
        return f"hostname=h{next(counter) % HOSTS}.example.test&myip=192.0.2.1".encode()

    def good() -> bytes:  # a new address per pass over the hosts: every request changes its record
        n = next(counter)
        ip = n // HOSTS
        return f"hostname=h{n % HOSTS}.example.test&myip=10.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}".encode()

    return good if mode == "good" else nochg


async def _load(app: Any, query: Callable[[], bytes], requests: int, last: list[bytes]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            last.append(message["body"])

    async def worker(n: int) -> None:
        for _ in range(n):
            await app(_scope(query()), receive, send)

    await asyncio.gather(*(worker(requests // CONCURRENCY) for _ in range(CONCURRENCY)))


async def main(args: argparse.Namespace) -> None:
    server = RedisServer().start()
    try:
        settings = Settings(redis_url=server.url, secret_key="s" * 32, encryption_keys=("e" * 32,))
        sync = open_store(server.url)
        sync.run(Accounts(sync.keys, PasswordHasher(FAST)).create("alice", "password-123"))
        sync.run(Hosts(sync.keys).add("alice", [f"h{i}.example.test" for i in range(HOSTS)]))
        sync.close()
        policy = UpdatePolicy(abuse=AbusePolicy(nochg_per_host=10**9, faults=10**9))
        app = create_app(settings, service=build_service(settings, Keys(), PasswordHasher(FAST), policy=policy))
        bare = apps.bare()
        query = _queries(args.mode)
        last: list[bytes] = []
        await _load(app, query, 400, last)  # warms the credential cache, the script cache, the connection
        print("endpoint answered:", last[-1])
        cpu: dict[str, list[float]] = {"bare": [], "ddns": []}
        for _ in range(args.rounds):
            for name, target in (("bare", bare), ("ddns", app)):
                last.clear()
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                await _load(target, query, args.requests, last)
                used = (time.process_time() - start_cpu) / len(last) * 1e6
                wall = (time.perf_counter() - start_wall) / len(last) * 1e6
                cpu[name].append(used)
                print(f"{name} cpu us/req {used:6.1f}  wall {wall:6.1f}")
        for name, values in cpu.items():
            print(f"{name}: cpu us/req min {min(values):.1f} median {statistics.median(values):.1f}")
        if args.sort:
            profile = cProfile.Profile()
            profile.enable()
            await _load(app, query, args.requests, last)
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
    finally:
        server.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("sort", nargs="?", help="add a cProfile sorted by this key (tottime, cumtime, ...)")
    parser.add_argument("--mode", choices=("nochg", "good"), default="nochg")
    parser.add_argument("--requests", type=int, default=4000, help="requests per round (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--lines", type=int, default=35, help="profile lines printed (default 35)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
