"""Scale: Redis memory per host at 1,000,000 hosts, and update latency at 1M vs 1k hosts (issue 7).

``python -m bench.scale`` (``BENCH_SCALE_ACCOUNTS`` shrinks it for a quick look; default 100,000 x 10 hosts)

Two redis-servers, loaded by ``bench/load_hosts.py`` in the endpoint's own layout: 100 accounts x 10 hosts,
and 100,000 accounts x 10 hosts. Memory is ``INFO memory`` used_memory read between the loader's phases:
after the accounts (with warm verifiers), after the hosts (record + ownership index), after one update
per host (real addresses in every record, first history entry), and after dropping the history lists
again, so the current record and its indexes are measured apart from the history; then one more update per
host re-creates the history lists (the steady state: a host that was ever updated has one). Latency: the
real endpoint (uvicorn + ``create_app``) in front of each Redis, wrk sending authenticated ``good`` updates
to random hosts (a new seed every run), the two runs interleaved; Redis's own time per update script
(``INFO commandstats``) is printed beside them.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import redis

from bench.harness import interleaved, machine, redis_server, save, table, target, uvicorn_app, wrk
from bench.load_hosts import LOADED_IPV6, Plan, in_parallel, load, server_env
from bench.update_endpoint import LUA
from ddns_update.dns_sync import bar
from ddns_update.hosts import history_prefix
from mfa_middleware.store import Keys

ACCOUNTS = int(os.environ.get("BENCH_SCALE_ACCOUNTS", "100000"))
HOSTS_PER_ACCOUNT = 10
SMALL_ACCOUNTS = 100  # 1k hosts
MEMORY_GOAL, P99_GOAL = 250, 1.2
RESTORED_IP = "198.51.100.1"  # the address the history lists are re-created with


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def drop_history(client: Any) -> int:
    """UNLINK every host's history list (SCAN, never KEYS); returns how many."""
    pattern = history_prefix(Keys(), "*") + "*"  # mfa:{a:*}:hist:*
    dropped = 0
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            dropped += client.unlink(*batch)
            batch.clear()
    if batch:
        dropped += client.unlink(*batch)
    return dropped


def reset_stats(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.config_resetstat()


def evalsha_cost(url: str) -> float:
    """Redis's own CPU per EVALSHA (the update script) since the last ``reset_stats``, in µs."""
    with redis.Redis.from_url(url, decode_responses=True) as client:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0.0))


def evalsha_latency(url: str) -> dict[str, float]:
    """Redis's own p50/p99/p99.9 per EVALSHA since the last ``reset_stats``, in µs (``INFO latencystats``,
    Redis 7's per-command histograms; {} when the server does not keep them)."""
    with redis.Redis.from_url(url, decode_responses=True) as client:
        stats = client.info("latencystats").get("latency_percentiles_usec_evalsha", {})
    return {k: float(v) for k, v in stats.items()} if isinstance(stats, dict) else {}


def load_and_measure(url: str, accounts: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url, decode_responses=True)
    plan = Plan(url, accounts, HOSTS_PER_ACCOUNT)
    memory = {"empty": used_memory(client)}
    times = load(plan, progress=bar(), between=lambda phase: memory.__setitem__(phase, used_memory(client)))
    dropped = drop_history(client)
    memory["without_history"] = used_memory(client)
    client.close()
    # Back to a steady state for the latency runs: every host has its history list again, as a host that has
    # ever been updated does. Left without them, nearly every update at 1M hosts would create a key (and grow
    # Redis's keyspace table, rehashing as it goes) while at 1k hosts none does after the first second.
    times["history_again"] = in_parallel(plan, "update", ipv4=RESTORED_IP,
                                         ipv6=LOADED_IPV6 if plan.dual_stack else None, progress=bar())
    n = plan.hosts
    out = {
        "hosts": n, "accounts": accounts, "load_seconds": times, "used_memory": memory,
        "record_and_indexes_per_host": (memory["without_history"] - memory["accounts"]) / n,
        "history_per_host_one_entry": (memory["update"] - memory["without_history"]) / n,
        "accounts_per_host": (memory["accounts"] - memory["empty"]) / n,
        "history_lists_dropped": dropped,
    }
    print(f"{n} hosts / {accounts} accounts loaded in {sum(times.values()):.0f}s "
          f"({', '.join(f'{k} {v:.1f}s' for k, v in times.items())})")
    print(f"  current record + indexes: {out['record_and_indexes_per_host']:.1f} B/host; "
          f"history (1 entry): {out['history_per_host_one_entry']:.1f} B/host; "
          f"account data (hash, login claim, cached verifier) spread per host: {out['accounts_per_host']:.1f} B")
    return out


def run() -> list[str]:
    print(f"== scale: {ACCOUNTS * HOSTS_PER_ACCOUNT} hosts vs {SMALL_ACCOUNTS * HOSTS_PER_ACCOUNT} hosts ==")
    with redis_server() as small_redis, redis_server() as big_redis:
        small = load_and_measure(small_redis.url, SMALL_ACCOUNTS)
        big = load_and_measure(big_redis.url, ACCOUNTS)
        names = {f"{small['hosts']} hosts": (small_redis, SMALL_ACCOUNTS),
                 f"{big['hosts']} hosts": (big_redis, ACCOUNTS)}
        with uvicorn_app("bench.apps:update_endpoint", server_env(small_redis.url)) as small_url, \
                uvicorn_app("bench.apps:update_endpoint", server_env(big_redis.url)) as big_url:
            urls = dict(zip(names, (small_url, big_url), strict=True))

            # A new seed every run: replaying one run's (host, address) sequence finds, at 1M hosts, most
            # records still holding what the last run set (each host is hit about once a run) and answers
            # nochg, so the two sizes would measure different work (the wrong-answer count catches it).
            seeds = itertools.count(1)

            def runner(name: str) -> Any:
                accounts = names[name][1]
                return lambda: wrk(urls[name] + "/nic/update", connections=16, script=LUA,
                                   args=["good", "0", str(accounts), str(HOSTS_PER_ACCOUNT), str(next(seeds)),
                                         "random"])

            for server, _ in names.values():
                reset_stats(server.url)
            results = interleaved({name: runner(name) for name in names})
        redis_us = {name: evalsha_cost(server.url) for name, (server, _) in names.items()}
        redis_tail = {name: evalsha_latency(server.url) for name, (server, _) in names.items()}
    print(table(results, next(iter(results))))
    print("Redis's own time per update script (INFO commandstats, usec_per_call of evalsha): "
          + ", ".join(f"{name} {us:.1f} µs" for name, us in redis_us.items()))
    print("  its percentiles (INFO latencystats, all rounds): " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v:.0f} µs" for k, v in tail.items()) for name, tail in redis_tail.items()))
    small_r, big_r = results.values()
    p99_ratio = big_r.p99_ms / small_r.p99_ms
    per_host = big["record_and_indexes_per_host"]
    save("scale", {"machine": machine(), "small": small, "big": big,
                   "latency": {name: {"hosts": int(name.split()[0]), **vars(r)} for name, r in results.items()},
                   "redis_us_per_update": redis_us, "redis_evalsha_percentiles_us": redis_tail})
    ok = all(r.wrong == 0 and r.errors == 0 for r in results.values())
    return [
        target("scale_memory_per_host", per_host, MEMORY_GOAL, higher_is_better=False),
        target("scale_p99", p99_ratio if ok else float("inf"), P99_GOAL, higher_is_better=False),
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
