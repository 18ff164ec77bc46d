"""Multi-step operations interrupted between steps (the store failing mid-way) leave nothing half-written
that a retry cannot finish. A real Redis; the store "fails" at a chosen step, as a dropped connection would."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
import redis

from ddns_update.groups import Groups
from ddns_update.hosts import HostRefused, Hosts
from mfa_middleware.accounts import Accounts
from mfa_middleware.gate import Gate, Reply, Request
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.sessions import SESSION_COOKIE
from mfa_middleware.store import Store, StoreUnavailable, open_store
from mfa_middleware.store.effects import Cmd, Eval
from mfa_middleware.totp import TotpParams, code_at, current_step
from tests.ddns_harness import Site as DdnsSite
from tests.gate_harness import ENC_KEY, PASSWORD, SECRET, backup_codes_of, csrf_of


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
    # Steps: HMGET (a tombstone of an interrupted delete?), SET NX of the login, then the CREATE script: fail
    # the script.
    with pytest.raises(StoreUnavailable):
        _failing(redis_url, 3).run(groups.create("carl", "lan", ["nas.example.test"], login="carl-lan"))
    assert store.run(groups.list("carl")) == []
    group, password = store.run(groups.create("carl", "lan", ["nas.example.test"], login="carl-lan"))
    assert group.login == "carl-lan" and password
    print("\ninterrupted account create, host remove and group create: each retry completes, nothing orphaned")


# -- the gate: a store failure after a one-way step must not cost the user what that step consumed --------
class FailAfter:
    """Passes steps to a real driver; once a step matching ``after`` has run, fails the next one matching
    ``fail`` (once), as a store that goes away between the two would."""

    def __init__(self, driver: Any, after: Callable[[Cmd | Eval], bool], fail: Callable[[Cmd | Eval], bool]) -> None:
        self.driver, self.after, self.fail = driver, after, fail
        self.armed, self.fired = False, False

    def _check(self, steps: tuple[Cmd | Eval, ...]) -> None:
        if self.armed and not self.fired and any(self.fail(s) for s in steps):
            self.fired = True
            raise StoreUnavailable("injected: the store went away between steps")

    def _saw(self, steps: tuple[Cmd | Eval, ...]) -> None:
        self.armed = self.armed or any(self.after(s) for s in steps)

    def execute(self, step: Cmd | Eval) -> Any:
        self._check((step,))
        result = self.driver.execute(step)
        self._saw((step,))
        return result

    def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        self._check(steps)
        result = self.driver.execute_batch(steps)
        self._saw(steps)
        return list(result)

    def close(self) -> None:
        self.driver.close()


def _script(name: str) -> Callable[[Cmd | Eval], bool]:
    return lambda step: isinstance(step, Eval) and step.script.name == name


def _session_write(step: Cmd | Eval) -> bool:
    return isinstance(step, Cmd) and step.args[0] == "HSET" and ":session:" in str(step.args[1])


class _GateUser:
    """One browser of account ``ann`` talking to a Gate directly (no framework), with a movable clock."""

    def __init__(self, redis_url: str) -> None:
        self.store = open_store(redis_url)
        self.now = time.time()
        self.gate = Gate(keys=self.store.keys, secret_key=SECRET, encryption_keys=ENC_KEY, argon2_profile=FAST,
                         clock=lambda: self.now)
        self.store.run(Accounts(self.store.keys, PasswordHasher(FAST)).create("ann", PASSWORD))
        self.cookies: dict[str, str] = {}
        self.seed = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                store: Store | None = None) -> Reply:
        path, _, query = path.partition("?")
        req = Request(method, path, dict(parse_qsl(query)), {}, dict(self.cookies), "192.0.2.7", False, "ann",
                      form or {})
        decision = (store or self.store).run(self.gate.handle(req))
        assert isinstance(decision, Reply), decision
        for name, value in decision.headers:
            if name == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.partition(";")[0]
        return decision

    def form(self, path: str, data: dict[str, str], page: str | None = None, store: Store | None = None) -> Reply:
        token = csrf_of(self.request("GET", page or path).body.decode())
        return self.request("POST", path, {"csrf_token": token, **data}, store)

    def code(self) -> str:
        return code_at(self.seed, current_step(self.now, TotpParams()), TotpParams())

    def enable(self) -> list[str]:
        self.seed = self.store.run(self.gate.twofactor.begin_enrollment("ann"))
        codes = self.store.run(self.gate.twofactor.confirm_enrollment("ann", self.code()))
        assert codes is not None
        self.now += 30  # the enrollment code's step is used
        return codes

    def verified(self) -> bool:
        ticket = self.gate.sessions.loads(self.cookies.get(SESSION_COOKIE))
        return bool(ticket and ticket.verified_at)

    def failing(self, after: Callable[[Cmd | Eval], bool], fail: Callable[[Cmd | Eval], bool]) -> Store:
        return Store(FailAfter(self.store.driver, after, fail), self.store.keys)


def test_backup_code_used_then_the_session_write_fails_is_not_lost(redis_url: str) -> None:
    user = _GateUser(redis_url)
    codes = user.enable()
    failing = user.failing(_script("mfa_use_backup"), _session_write)
    with pytest.raises(StoreUnavailable):
        user.form("/mfa/verify/backup?next=/app", {"backup_code": codes[0]}, store=failing)
    assert failing.driver.fired and user.store.run(user.gate.twofactor.status("ann")).backup_codes_left == 9
    assert not user.verified()
    # The browser comes back (a reload, or the same code again): the consumed code still lets it in.
    reply = user.request("GET", "/mfa/verify/backup?next=/app")
    assert reply.status == 303 and dict(reply.headers)["location"] == "/app", reply.body[:300]
    assert user.verified()
    ticket = user.gate.sessions.loads(user.cookies[SESSION_COOKIE])
    assert ticket is not None and ticket.method == "backup"
    # The grant is spent with the unverified session it belonged to: another browser gets nothing from it.
    other = _GateUser.__new__(_GateUser)
    other.__dict__.update(user.__dict__, cookies={})
    assert other.request("GET", "/mfa/verify/backup").status == 200 and not other.verified()
    print("\nbackup code used, session write failed: the same browser is let in on its next visit")


def test_totp_step_burned_by_a_failed_session_write_costs_only_the_next_code(redis_url: str) -> None:
    user = _GateUser(redis_url)
    user.enable()
    failing = user.failing(_script("advance"), _session_write)
    with pytest.raises(StoreUnavailable):
        user.form("/mfa/verify", {"code": user.code()}, store=failing)
    assert failing.driver.fired and not user.verified()
    # The step is burned (replay guard), by design: the same code is refused…
    assert user.form("/mfa/verify", {"code": user.code()}).status == 401
    user.now += 30  # … and the next one the app shows works: nothing finite was lost.
    assert user.form("/mfa/verify", {"code": user.code()}).status == 303 and user.verified()


def test_enable_then_the_store_fails_before_the_codes_are_shown(redis_url: str) -> None:
    user = _GateUser(redis_url)
    page = user.request("GET", "/mfa/setup")
    user.seed = re.search(r"data-totp-key>([^<]+)<", page.body.decode()).group(1).replace(" ", "")  # type: ignore[union-attr]
    # Fail *at* the enable step: nothing is enabled, and the user simply submits again.
    failing = user.failing(lambda step: True, _script("mfa_enable_session"))
    with pytest.raises(StoreUnavailable):
        user.form("/mfa/setup", {"password": PASSWORD, "code": user.code()}, store=failing)
    st = user.store.run(user.gate.twofactor.status("ann"))
    assert not st.enabled and st.backup_codes_left == 0
    # Fail right *after* it (the session and the codes to show are written in other steps).
    failing = user.failing(_script("mfa_enable_session"), lambda step: True)
    with pytest.raises(StoreUnavailable):
        user.form("/mfa/setup", {"password": PASSWORD, "code": user.code()}, store=failing)
    # Seed, the ten codes and the epoch were written by one script: all of them, never a part.
    st = user.store.run(user.gate.twofactor.status("ann"))
    assert st.enabled and st.backup_codes_left == 10 and st.epoch == 1
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    assert raw.hget(user.store.keys.account("ann", "mfa"), "seed") and not raw.exists(
        user.store.keys.account("ann", "enroll"))
    # The codes were never shown: the user verifies with the app and regenerates them with the password.
    user.now += 30
    assert user.request("GET", "/").status == 303  # the old session belongs to the previous epoch
    assert user.form("/mfa/verify", {"code": user.code()}).status == 303 and user.verified()
    reply = user.form("/mfa/regenerate", {"password": PASSWORD}, page="/mfa/security")
    assert reply.status == 303 and dict(reply.headers)["location"] == "/mfa/backup-codes"
    shown = backup_codes_of(user.request("GET", "/mfa/backup-codes").body.decode())
    assert len(shown) == 10 and user.store.run(user.gate.twofactor.status("ann")).backup_codes_left == 10
    print("\n2FA enabled, store failed before the codes were shown: all-or-nothing enable, codes regenerated")


@pytest.mark.parametrize("cut_at", [2, 3])
async def test_group_delete_cut_off_before_the_login_is_released_answers_badauth(redis_url: str,
                                                                                 cut_at: int) -> None:
    """Steps of a delete: the DELETE script (the group becomes a tombstone), the claim release, the purge.
    Cut at the release (2) or the purge (3): the login answers badauth (not 911, though the claim points at
    a missing group), and the retried delete finishes."""
    site = DdnsSite(redis_url, "wsgi")
    try:
        site.account("alice", hosts=["nas.example.test"])
        group, password = site.group("alice", "lan", ["nas.example.test"], login="alice-lan")
        auth = (group.login, password)
        assert await site.text("hostname=nas.example.test&myip=192.0.2.1", auth=auth) == "good 192.0.2.1\n"
        with pytest.raises(StoreUnavailable):
            _failing(redis_url, cut_at).run(site.groups.delete("alice", "lan"))
        raw = redis.Redis.from_url(redis_url, decode_responses=True)
        assert (raw.get(site.keys.login("alice-lan")) is not None) == (cut_at == 2)
        assert site.sync.run(site.groups.list("alice")) == []
        # The endpoint's cache still maps the login to the group, and a fresh instance reads the claim: both
        # answer badauth, neither 911.
        fresh = DdnsSite(redis_url, "asgi")
        for endpoint in (site, fresh):
            r = await endpoint.get("hostname=nas.example.test&myip=192.0.2.2", auth=auth)
            assert (r.status_code, r.text) == (401, "badauth\n"), (cut_at, r.text)
        await fresh.close()
        assert site.sync.run(site.groups.delete("alice", "lan")) == "alice-lan"  # the retry finishes
        assert raw.get(site.keys.login("alice-lan")) is None
        assert not raw.exists(site.keys.account("alice", "group:lan"))
        # and the name and the login are free again
        again, pw2 = site.group("alice", "lan", ["nas.example.test"], login="alice-lan")
        assert await site.text("hostname=nas.example.test&myip=192.0.2.3", auth=(again.login, pw2)) == \
            "good 192.0.2.3\n"
    finally:
        await site.close()


def test_group_create_finishes_a_delete_that_was_cut_off(redis_url: str) -> None:
    store = open_store(redis_url)
    hasher = PasswordHasher(FAST)
    store.run(Accounts(store.keys, hasher).create("dora", "dora-password-1"))
    store.run(Hosts(store.keys).add("dora", ["cam.example.test"]))
    groups = Groups(store.keys, hasher)
    store.run(groups.create("dora", "cams", ["cam.example.test"], login="dora-cams"))
    with pytest.raises(StoreUnavailable):
        _failing(redis_url, 2).run(groups.delete("dora", "cams"))  # tombstone left, login still claimed
    group, _ = store.run(groups.create("dora", "cams", ["cam.example.test"], login="dora-cams"))
    assert group.login == "dora-cams" and [g.name for g in store.run(groups.list("dora"))] == ["cams"]


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
async def test_a_claim_naming_a_missing_group_answers_badauth(redis_url: str, adapter: str) -> None:
    """A group create cut off after claiming its login leaves a claim that names no group (nobody holds a
    password for it: it is shown only after the create). Updates with that login answer badauth, not 911."""
    site = DdnsSite(redis_url, adapter)
    try:
        site.account("alice", hosts=["nas.example.test"])
        raw = redis.Redis.from_url(redis_url, decode_responses=True)
        raw.set(site.keys.login("ghost-lan"), "group:alice:lan")
        for _ in range(2):  # cold, then with whatever the endpoint cached
            r = await site.get("hostname=nas.example.test&myip=192.0.2.9", auth=("ghost-lan", "any-password-1"))
            assert (r.status_code, r.text) == (401, "badauth\n")
    finally:
        await site.close()
