"""Update endpoint vs. a bare Starlette endpoint, warm credentials, 10k hosts each way (issue 7).

``python -m bench.update_endpoint``

One redis-server, 2,000 accounts x 10 hosts loaded in the endpoint's layout (``bench/load_hosts.py``):
accounts 0-999 are the ``nochg`` pool (every record already holds the address sent), 1000-1999 the
``good`` pool (each pass over the 10k hosts sends a new address, so every request changes a record).
Every request carries its account's Basic credentials; the verifier cache is warm, as it is for a router
after its first update. Also measured: argon2id verifies the server ran (must be 0), store round trips per
update (must be 1: counted with MONITOR, where commands a Lua script runs are tagged ``lua``), and the
cold-credential cost, one argon2id verify.
"""

from __future__ import annotations

import http.client
import itertools
import statistics
import subprocess
import tempfile
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

import argon2
import redis

from bench.harness import (
    AtBest,
    Result,
    interleaved,
    machine,
    redis_server,
    save,
    series,
    table,
    target,
    uvicorn_app,
    wrk,
)
from bench.load_hosts import NOCHG_IP, PASSWORD, Plan, account_name, host_name, load, server_env
from mfa_middleware.passwords import OWASP, PasswordHasher
from mfa_middleware.store import Keys

LUA = Path(__file__).with_name("updates.lua")
POOL_ACCOUNTS, HOSTS_PER_ACCOUNT = 1000, 10  # 10k hosts per pool
GOAL = 0.60


def run() -> list[str]:
    print("== update endpoint: /nic/update vs bare Starlette (warm credentials, 10k hosts per pool) ==")
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        plan = Plan(server.url, 2 * POOL_ACCOUNTS, HOSTS_PER_ACCOUNT)
        times = load(plan)
        print(f"loaded {plan.hosts} hosts in {sum(times.values()):.1f}s")
        client = redis.Redis.from_url(server.url, decode_responses=True)
        argon2_file = Path(tmp) / "argon2-calls"
        env = {**server_env(server.url), "BENCH_ARGON2_FILE": str(argon2_file)}
        with uvicorn_app("bench.apps:bare") as bare, uvicorn_app("bench.apps:update_endpoint", env) as endpoint:
            trips = round_trips(server.port, endpoint)
            seeds = itertools.count(1)
            pool = [str(POOL_ACCOUNTS), str(HOSTS_PER_ACCOUNT)]
            def run(url: str, mode: str, first: int, seed: int, connections: int) -> Result:
                result = wrk(url + "/nic/update", script=LUA, connections=connections,
                             args=[mode, str(first), *pool, str(seed)])
                reset_counters(client)
                return result

            results = interleaved({
                "bare Starlette": AtBest(lambda c: run(bare, "any", 0, 1, c)),
                "/nic/update nochg": AtBest(lambda c: run(endpoint, "nochg", 0, 1, c)),
                "/nic/update good": AtBest(lambda c: run(endpoint, "good", POOL_ACCOUNTS, next(seeds), c)),
            })
            flagged = count_flags(client)
        client.close()
        argon2_calls = int(argon2_file.read_text()) if argon2_file.exists() else -1
    print(table(results, "bare Starlette"))
    print(f"argon2id verifies on the server during the runs: {argon2_calls} (warm path: must be 0)")
    print(f"store round trips per update (MONITOR, client commands only): {trips:.2f} (must be 1)")
    print(f"logins flagged for abuse: {flagged}")
    cold = cold_credential()
    base = results["bare Starlette"].rps
    nochg = results["/nic/update nochg"].rps / base
    good = results["/nic/update good"].rps / base
    save("update_endpoint", {
        "machine": machine(), "throughput": series(results), "baseline": "bare Starlette",
        "argon2_calls": argon2_calls, "round_trips_per_update": trips, "cold_credential_ms": cold,
    })
    ok = argon2_calls == 0 and all(r.wrong == 0 and r.errors == 0 for r in results.values())
    if not ok:
        print("WARNING: wrong answers, errors or argon2 calls on the warm path: the ratios below do not count")
    return [
        target("update_nochg", nochg if ok else 0.0, GOAL),
        target("update_good", good if ok else 0.0, GOAL),
        target("update_round_trips", trips, 1, higher_is_better=False),
    ]


def reset_counters(client: Any) -> None:
    """Drop the nochg/fault counters: a benchmark repeats one host's nochg far more than a router would."""
    keys = Keys()
    with client.pipeline(transaction=False) as pipe:
        for i in range(2 * POOL_ACCOUNTS):
            pipe.delete(keys.account(account_name(i), "nochg"), keys.account(account_name(i), "faults"))
        pipe.execute()


def count_flags(client: Any) -> int:
    keys = Keys()
    with client.pipeline(transaction=False) as pipe:
        for i in range(2 * POOL_ACCOUNTS):
            pipe.hlen(keys.account(account_name(i), "abuse"))
        return sum(pipe.execute())


def round_trips(port: int, endpoint: str, requests: int = 20) -> float:
    """Send ``requests`` updates one by one while MONITOR watches; client commands ÷ requests."""
    monitor = subprocess.Popen(["redis-cli", "-p", str(port), "monitor"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        host, port_s = endpoint.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port_s), timeout=10)
        for n in range(requests):
            i = n % 2 * POOL_ACCOUNTS + n  # alternate the nochg and good pools
            ip = NOCHG_IP if i < POOL_ACCOUNTS else f"198.51.100.{n + 1}"
            auth = b64encode(f"{account_name(i)}:{PASSWORD}".encode()).decode()
            conn.request("GET", f"/nic/update?hostname={host_name(i, 0)}&myip={ip}",
                         headers={"Authorization": "Basic " + auth, "User-Agent": "bench/1.0"})
            body = conn.getresponse().read().decode()
            if not body.startswith(("nochg", "good")):
                raise RuntimeError(f"round-trip probe got {body!r}")
        conn.close()
        time.sleep(0.3)
    finally:
        monitor.terminate()
    out, _ = monitor.communicate(timeout=10)
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    client = [line for line in lines if " lua]" not in line]
    return len(client) / requests


def cold_credential(repeat: int = 5) -> dict[str, float]:
    """One argon2id verify: the chosen profile (OWASP m=19 MiB, t=2, p=1) vs argon2-cffi's defaults."""
    chosen = PasswordHasher(OWASP)
    default = argon2.PasswordHasher()
    hashes = (chosen.hash(PASSWORD), default.hash(PASSWORD))

    def timed(fn: Any, stored: str) -> float:
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn(stored, PASSWORD)
            samples.append((time.perf_counter() - t) * 1000)
        return statistics.median(samples)

    out = {"owasp_ms": timed(chosen.verify, hashes[0]), "argon2_cffi_default_ms": timed(default.verify, hashes[1])}
    print(f"cold credential, one argon2id verify: OWASP m={OWASP.memory_cost // 1024} MiB t={OWASP.time_cost} "
          f"p={OWASP.parallelism}: {out['owasp_ms']:.1f} ms; argon2-cffi defaults "
          f"(m={default.memory_cost // 1024} MiB t={default.time_cost} p={default.parallelism}): "
          f"{out['argon2_cffi_default_ms']:.1f} ms")
    return out


if __name__ == "__main__":
    for line in run():
        print(line)
