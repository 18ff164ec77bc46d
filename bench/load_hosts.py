"""Load accounts and hosts into a Redis in the update endpoint's own layout, fast.

``python -m bench.load_hosts --redis-url redis://127.0.0.1:6379/0 --accounts 100000 --hosts-per-account 10``

Nothing here writes a key by hand: every account, host, ownership claim, cached verifier and record goes
through the project's own operations (``Accounts.create``, ``Hosts.add``, ``Credentials.remember``,
``UpdateService.update``), so the layout measured is the layout served. Speed comes from running a
thousand of those operations in lockstep: each step of all of them goes to Redis as one pipeline.
Several loader processes split the accounts between them. Every account gets the same password, hashed
once (argon2id per account would take 100,000 x 20 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ddns_update.app import build_service
from ddns_update.credentials import Login
from ddns_update.dns_sync import bar
from ddns_update.hosts import Hosts
from ddns_update.service import UpdateFacts, UpdateService
from mfa_middleware.accounts import Accounts
from mfa_middleware.config import Settings
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import Keys, Op, open_store
from mfa_middleware.store.effects import Batch, Cmd, Eval, Offload

PASSWORD = "bench-router-password"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
ENCRYPTION_KEY = "bench-encryption-key-0123456789ab"
AGENT = "bench/1.0 bench@example.test"
NOCHG_IP = "203.0.113.7"  # every loaded record holds this address (and LOADED_IPV6 when dual)
LOADED_IPV6 = "2001:db8::7"
GROUP = 1000  # accounts per lockstep group


def account_name(i: int) -> str:
    return f"r{i:06d}"


def host_name(i: int, j: int) -> str:
    return f"h{j}.{account_name(i)}.example.test"


def settings(url: str) -> Settings:
    return Settings(redis_url=url, secret_key=SECRET_KEY, encryption_keys=(ENCRYPTION_KEY,))


def server_env(url: str) -> dict[str, str]:
    """What uvicorn needs to serve the loaded store (same keys, so the cached verifiers match)."""
    return {"REDIS_URL": url, "MFA_SECRET_KEY": SECRET_KEY, "MFA_ENCRYPTION_KEY": ENCRYPTION_KEY}


class _OneHash(PasswordHasher):
    """Hashes the shared bench password once; ``Accounts.create`` otherwise runs unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._one = super().hash(PASSWORD)

    def hash(self, password: str) -> str:
        return self._one if password == PASSWORD else super().hash(password)


def run_lockstep(driver: Any, ops: Sequence[Op[Any]]) -> list[Any]:
    """Drive many operations at once: each round sends every op's next effect in one pipeline."""
    results: list[Any] = [None] * len(ops)
    sends: list[Any] = [None] * len(ops)
    active = list(range(len(ops)))
    while active:
        wanted: list[tuple[int, Cmd | Eval | Batch]] = []
        for i in active:
            effect = _next(ops[i], sends[i], results, i)
            if effect is not None:
                wanted.append((i, effect))
        flat: list[Cmd | Eval] = []
        for _, effect in wanted:
            flat.extend(effect.steps if isinstance(effect, Batch) else (effect,))
        replies = driver.execute_batch(tuple(flat)) if flat else []
        pos = 0
        for i, effect in wanted:
            if isinstance(effect, Batch):
                sends[i] = replies[pos : pos + len(effect.steps)]
                pos += len(effect.steps)
            else:
                sends[i] = replies[pos]
                pos += 1
        active = [i for i, _ in wanted]
    return results


def _next(op: Op[Any], value: Any, results: list[Any], i: int) -> Cmd | Eval | Batch | None:
    try:
        effect = op.send(value)
        while isinstance(effect, Offload):
            effect = op.send(effect.fn())
        return effect
    except StopIteration as stop:
        results[i] = stop.value
        return None


@dataclass(frozen=True)
class Plan:
    url: str
    accounts: int
    hosts_per_account: int
    dual_stack: bool = True  # records get an IPv6 address too (the larger record: the honest memory figure)

    @property
    def hosts(self) -> int:
        return self.accounts * self.hosts_per_account


class Loader:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.store = open_store(plan.url)
        self.keys: Keys = self.store.keys
        hasher = _OneHash()
        self.accounts = Accounts(self.keys, hasher)
        self.hosts = Hosts(self.keys)
        self.service: UpdateService = build_service(settings(plan.url), self.keys, hasher)

    def names(self, i: int) -> list[str]:
        return [host_name(i, j) for j in range(self.plan.hosts_per_account)]

    def _run(self, ops: Sequence[Op[Any]]) -> list[Any]:
        return run_lockstep(self.store.driver, ops)

    def create_accounts(self, first: int, last: int) -> None:
        """Accounts (with their login claims) and their warm verifiers, as a proven login leaves them."""
        ids = range(first, last)
        self._run([self.accounts.create(account_name(i), PASSWORD) for i in ids])
        self.store.driver.execute_batch(tuple(
            # Proven from the address the benchmark clients connect from, as a router that updated before is.
            self.service.credentials.remember(Login(account_name(i), account_name(i)), PASSWORD, "1", "127.0.0.1")
            for i in ids))

    def add_hosts(self, first: int, last: int) -> None:
        """Each account's hosts: record, ownership claim (``ddns-admin host add``'s operation)."""
        self._run([self.hosts.add(account_name(i), self.names(i)) for i in range(first, last)])

    def update(self, first: int, last: int, ipv4: str, ipv6: str | None) -> list[Any]:
        """One ddclient-style update per account (all its hosts in one request) through the service."""
        myip = f"{ipv4},{ipv6}" if ipv6 else ipv4
        auth = _basic(PASSWORD)
        ops = [self.service.update(UpdateFacts(f"hostname={','.join(self.names(i))}&myip={myip}",
                                               auth(account_name(i)), AGENT, "127.0.0.1"))
               for i in range(first, last)]
        return self._run(ops)


def _basic(password: str) -> Callable[[str], str]:
    import base64

    return lambda login: "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def _groups(first: int, last: int) -> list[tuple[int, int]]:
    return [(a, min(a + GROUP, last)) for a in range(first, last, GROUP)]


def _worker(plan: Plan, phase: str, first: int, last: int, done: Any, ipv4: str, ipv6: str | None) -> None:
    loader = Loader(plan)
    for a, b in _groups(first, last):
        if phase == "accounts":
            loader.create_accounts(a, b)
        elif phase == "hosts":
            loader.add_hosts(a, b)
        else:
            replies = loader.update(a, b, ipv4, ipv6)
            bad = [r.lines for r in replies if any(not line.startswith(("good", "nochg")) for line in r.lines)]
            if bad:
                raise RuntimeError(f"update pass answered {bad[:3]}")
        with done.get_lock():
            done.value += (b - a) * plan.hosts_per_account
    loader.store.close()


def in_parallel(plan: Plan, phase: str, *, workers: int = 0, ipv4: str = NOCHG_IP, ipv6: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> float:
    """Run ``phase`` ("accounts", "hosts" or "update") over all accounts in ``workers`` processes; returns seconds."""
    workers = workers or max(1, min(4, (os.cpu_count() or 1)))
    started = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    done = ctx.Value("q", 0)
    share = -(-plan.accounts // workers)
    procs = [ctx.Process(target=_worker, args=(plan, phase, a, min(a + share, plan.accounts), done, ipv4, ipv6))
             for a in range(0, plan.accounts, share)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        if progress:
            progress(int(done.value), plan.hosts)
        time.sleep(0.25)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a loader process failed ({phase}, exit code {p.exitcode})")
    if progress:
        progress(plan.hosts, plan.hosts)
    return time.perf_counter() - started


def load(plan: Plan, *, workers: int = 0, progress: Callable[[int, int], None] | None = None,
         between: Callable[[str], None] | None = None) -> dict[str, float]:
    """Accounts, hosts, then one update per host (records get their addresses, history its first entry).

    ``between(phase)`` runs after each phase (the scale bench reads Redis memory there).
    """
    times = {}
    for phase in ("accounts", "hosts", "update"):
        times[phase] = in_parallel(plan, phase, workers=workers, ipv6=LOADED_IPV6 if plan.dual_stack else None,
                                   progress=progress)
        if between:
            between(phase)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_hosts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), required="REDIS_URL" not in os.environ)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--hosts-per-account", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0, help="loader processes (default: up to 4)")
    args = parser.parse_args(argv)
    plan = Plan(args.redis_url, args.accounts, args.hosts_per_account)
    times = load(plan, workers=args.workers, progress=bar())
    print(f"loaded {plan.hosts} hosts across {plan.accounts} accounts: "
          + ", ".join(f"{phase} {s:.1f}s" for phase, s in times.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
