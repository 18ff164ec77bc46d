"""Multi-step operations interrupted between steps (the store failing mid-way) leave nothing half-written
that a retry cannot finish. A real Redis; the store "fails" at a chosen step, as a dropped connection would."""

from __future__ import annotations

from typing import Any

import pytest

from ddns_update.groups import Groups
from ddns_update.hosts import HostRefused, Hosts
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import Store, StoreUnavailable, open_store
from mfa_middleware.store.effects import Cmd, Eval


class FailAt:
    """Passes steps to a real driver and fails the ``n``-th (1-based), once."""

    def __init__(self, driver: Any, n: int) -> None:
        self.driver, self.n, self.seen = driver, n, 0

    def _tick(self) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise StoreUnavailable("injected: the store went away between steps")

    def execute(self, step: Cmd | Eval) -> Any:
        self._tick()
        return self.driver.execute(step)

    def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        self._tick()
        return self.driver.execute_batch(steps)

    def close(self) -> None:
        self.driver.close()


def _failing(url: str, n: int) -> Store:
    real = open_store(url)
    return Store(FailAt(real.driver, n), real.keys)


def test_account_create_interrupted_after_the_login_claim(redis_url: str) -> None:
    accounts = Accounts(open_store(redis_url).keys, PasswordHasher(FAST))
    with pytest.raises(StoreUnavailable):
        _failing(redis_url, 2).run(accounts.create("ann", "ann-password-1"))  # claimed, account not written
    store = open_store(redis_url)
    store.run(accounts.create("ann", "ann-password-1"))  # the retry reclaims the orphan claim
    assert store.run(accounts.authenticate("ann", "ann-password-1")) is not None


def test_host_remove_interrupted_before_release_then_retried(redis_url: str) -> None:
    store = open_store(redis_url)
    accounts, hosts = Accounts(store.keys, PasswordHasher(FAST)), Hosts(store.keys)
    for name in ("bob", "eve"):
        store.run(accounts.create(name, f"{name}-password-1"))
    store.run(hosts.add("bob", ["shared.example.test"]))
    # Steps: HGETALL groups, REMOVE_RECORDS, then the ownership release: fail the release.
    with pytest.raises(StoreUnavailable):
        _failing(redis_url, 3).run(hosts.remove("bob", ["shared.example.test"]))
    assert store.run(hosts.list("bob")) == []
    with pytest.raises(HostRefused):  # the claim is still bob's …
        store.run(hosts.add("eve", ["shared.example.test"]))
    store.run(hosts.remove("bob", ["shared.example.test"]))  # … until the retry releases it
    assert store.run(hosts.add("eve", ["shared.example.test"])) == ["shared.example.test"]
    assert store.run(hosts.owner("shared.example.test")) == "eve"


def test_group_create_interrupted_after_the_login_claim_then_retried(redis_url: str) -> None:
    store = open_store(redis_url)
    hasher = PasswordHasher(FAST)
    store.run(Accounts(store.keys, hasher).create("carl", "carl-password-1"))
    store.run(Hosts(store.keys).add("carl", ["nas.example.test"]))
    groups = Groups(store.keys, hasher)
    # Steps: SET NX of the login, then the CREATE script: fail the script.
    with pytest.raises(StoreUnavailable):
        _failing(redis_url, 2).run(groups.create("carl", "lan", ["nas.example.test"], login="carl-lan"))
    assert store.run(groups.list("carl")) == []
    group, password = store.run(groups.create("carl", "lan", ["nas.example.test"], login="carl-lan"))
    assert group.login == "carl-lan" and password
    print("\ninterrupted account create, host remove and group create: each retry completes, nothing orphaned")
