"""Dev tool: A/B any ASGI factories under uvicorn, side by side, in rotated rounds; not run by ``make bench``.

``.venv/bin/python bench/ab.py FACTORY [FACTORY ...] [--path /] [--cookie-from gate] [--rounds 8]``
``.venv/bin/python bench/ab.py bench.apps:update_endpoint scratch:variant --update nochg``

Each ``module:factory`` is served by its own uvicorn (pinned to core 0, as in ``make bench``); wrk drives
each for 3 s per round at ``--connections``, the order rotated every round, and the table prints each
server's median req/s, ratio to the first, and its user and system CPU µs per request (from ``/proc``).
Variants of an app written in a scratch module (on ``PYTHONPATH``) answer "what does this change cost in
the served app": the gate's fast lane and the cost of ``Gate.quick`` inside a loaded server were measured
this way (bench/README.md). ``--cookie-from gate`` logs each server in as a fresh user of
``bench.gate_apps`` (enrolling 2FA when the factory's name contains "gated") and replays its cookies.
``--update nochg|good`` loads ``bench.update_endpoint``'s two pools of 10k hosts and sends its authenticated
``/nic/update`` requests (``bench/updates.lua``) instead.

``--together`` drives every server at once (all on core 0, one wrk each on core 1) instead of in turn: each
round's servers then run on the same machine at the same moment, so their ratio holds still where rotated
rounds swing with this VM's speed. Absolute req/s are then shares of one core; the ratios and the CPU per
request are what to read, and the ratios read differences smaller than one at a time (each server pays for
the other; ``harness.duet``, bench/README.md): fit to tell whether a change helps, not to measure a target.
``paired`` is the median of each round's ratio to the first factory.

``--turns`` drives every server at once too, but lets one run at a time, 50 ms each in turn
(``harness.taking_turns``): each server alone on its core, as in rotated rounds, with the VM's swings
spread over all of them. It dilutes less than ``--together`` but still some (each server's CPU per request
rises taking turns, for both alike; ``harness.taking_turns``). Latencies mean nothing then (a stopped
server's requests wait).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from pathlib import Path

import redis as redis_client

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gate_overhead, harness, update_endpoint
from bench.load_hosts import Plan, load, server_env
from tests.servers import RedisServer

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def _pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("factories", nargs="+", help="module:factory, e.g. bench.gate_apps:gated")
    parser.add_argument("--path", default="/")
    parser.add_argument("--cookie-from", choices=("none", "gate"), default="none")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--update", choices=("nochg", "good"), help="drive /nic/update with bench/updates.lua")
    parser.add_argument("--together", action="store_true", help="drive every server at once (see above)")
    parser.add_argument("--turns", action="store_true",
                        help="drive every server at once, but let one run at a time, 50 ms each (see above)")
    args = parser.parse_args(argv)
    with harness.redis_server() as redis:  # pinned to the load core, as in make bench
        _run(args, redis)


def _run(args: argparse.Namespace, redis: RedisServer) -> None:
    env = {"REDIS_URL": redis.url}
    pools = [str(update_endpoint.POOL_ACCOUNTS), str(update_endpoint.HOSTS_PER_ACCOUNT)]
    if args.update:
        load(Plan(redis.url, 2 * update_endpoint.POOL_ACCOUNTS, update_endpoint.HOSTS_PER_ACCOUNT))
        env = server_env(redis.url)
    names = list(dict.fromkeys(args.factories))
    with ExitStack() as stack:
        urls = {name: stack.enter_context(harness.uvicorn_app(name, env)) for name in names}
        browsers = {name: gate_overhead.Browser(url, gate_overhead.sessions(
            url, redis.url, "gated" in name, f"ab-user-{i}") if args.cookie_from == "gate" else None)
            for i, (name, url) in enumerate(urls.items())}
        pids = {name: _pid(url) for name, url in urls.items()}
        client = redis_client.Redis.from_url(redis.url)
        seeds = itertools.count(1)

        def measure(name: str, headers: list[str], seed: int) -> tuple[harness.Result, float, float]:
            user0, sys0 = _cpu(pids[name])
            if args.update:  # a new seed every run: the good pool gets new addresses each time
                first = "0" if args.update == "nochg" else pools[0]
                r = harness.wrk(urls[name] + "/nic/update", seconds=args.seconds, connections=args.connections,
                                script=update_endpoint.LUA, args=[args.update, first, *pools, str(seed)])
            else:
                r = harness.wrk(urls[name] + args.path, seconds=args.seconds, connections=args.connections,
                                headers=headers)
            user1, sys1 = _cpu(pids[name])
            return r, user1 - user0, sys1 - sys0

        def reset() -> None:
            if args.update:
                update_endpoint.reset_counters(client)

        samples: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in names}  # + round
        for n in range(args.rounds + 1):  # round 0 warms up and is not kept
            runs = []
            if args.together or args.turns:
                headers = {name: browsers[name].header() for name in names}  # any wait for a cookie first
                turns = harness.taking_turns(list(pids.values())) if args.turns else nullcontext()
                with turns, ThreadPoolExecutor(len(names)) as pool:
                    futures = [(name, pool.submit(measure, name, headers[name], next(seeds))) for name in names]
                    runs = [(name, future.result()) for name, future in futures]
                reset()
            else:
                for name in names[n % len(names):] + names[:n % len(names)]:
                    runs.append((name, measure(name, browsers[name].header(), next(seeds))))
                    reset()
            for name, (r, user, system) in runs:
                if r.wrong or r.errors:
                    print(f"warning: {name}: {r.wrong} wrong answers, {r.errors} errors", flush=True)
                if n and r.requests:
                    samples[name].append((r.rps, user / r.requests * 1e6, system / r.requests * 1e6, n))
    base = statistics.median(s[0] for s in samples[names[0]])
    print(f"{'factory':<40} {'req/s':>8} {'ratio':>6} {'paired':>6} {'user us/req':>12} {'sys us/req':>11}")
    for name, rows in samples.items():
        rps, user, system = (statistics.median(row[i] for row in rows) for i in range(3))
        first = {row[3]: row[0] for row in samples[names[0]]}
        paired = statistics.median(row[0] / first[row[3]] for row in rows if row[3] in first)
        print(f"{name:<40} {rps:>8.0f} {rps / base:>6.3f} {paired:>6.3f} {user:>12.1f} {system:>11.1f}")

if __name__ == "__main__":
    main()
