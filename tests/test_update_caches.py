"""The update endpoint's per-process caches at many accounts: nothing left for the garbage collector.

At 100,000 accounts a process remembers an entry per account (the login's normalized name, a group's
claim). Tracked objects (tuples, ``Login`` instances) would pile up in the young generation for every
collection to walk, pausing requests and stretching p99 latency at many hosts (``bench/scale.py``). The
caches hold strings only; this checks that no tracked object is kept over a thousand never-seen accounts,
and that the key names the update step builds per request are the ones the rest of the code uses.
"""

from __future__ import annotations

import base64
import gc

from bench.load_hosts import AGENT, PASSWORD, Loader, Plan, account_name, host_name, settings
from ddns_update.app import build_service
from ddns_update.credentials import Login
from ddns_update.hosts import history_prefix, hosts_key, interface_ids_key
from ddns_update.service import UpdateFacts, UpdateService
from mfa_middleware.store import Keys, open_store

ACCOUNTS = 1200
WARM = 100  # accounts served before counting: connection pool, parser caches, first-call imports


def _facts(i: int, group_login: str | None = None) -> UpdateFacts:
    login = group_login or account_name(i)
    auth = "Basic " + base64.b64encode(f"{login}:{PASSWORD}".encode()).decode()
    return UpdateFacts(f"hostname={host_name(i, 0)}&myip=203.0.113.9", auth, AGENT, "127.0.0.1")


def test_serving_new_accounts_leaves_no_tracked_objects_behind(redis_url: str) -> None:
    loader = Loader(Plan(redis_url, ACCOUNTS, 1, dual_stack=False))
    loader.create_accounts(0, ACCOUNTS)
    loader.add_hosts(0, ACCOUNTS)
    store = open_store(redis_url)
    service = build_service(settings(redis_url), store.keys)
    for i in range(WARM):
        assert store.run(service.update(_facts(i))).lines[0].startswith("good")
    gc.collect()
    gc.disable()  # nothing is collected (or untracked) meanwhile: every tracked object made and kept shows
    try:
        before = {id(o) for o in gc.get_objects()}
        for i in range(WARM, ACCOUNTS):
            assert store.run(service.update(_facts(i))).lines[0].startswith("good"), i
        kept = [o for o in gc.get_objects() if id(o) not in before]
    finally:
        gc.enable()
    # Before the fix: ~5 per new account (5,500 here: Login objects, tuples of names and key names).
    assert len(kept) < 20, f"{len(kept)} tracked objects kept after {ACCOUNTS - WARM} new accounts' updates: " \
        + ", ".join(sorted({type(o).__name__ for o in kept}))

def test_update_step_key_names_are_the_canonical_ones() -> None:
    keys = Keys("pfx")
    service = UpdateService(keys, build_service(settings("redis://unused"), keys).credentials)
    for login in (Login("alice", "alice"), Login("bob.router", "bob", "router")):
        step_keys, prefix = service._account_keys(login.account_id, login.group or "")
        k = keys.account
        assert step_keys == (k(login.account_id), hosts_key(keys, login.account_id), k(login.account_id, "cred"),
                             service.credentials.group_key(login), k(login.account_id, "abuse"),
                             k(login.account_id, "nochg"), k(login.account_id, "faults"),
                             *service.credentials.remember(login, "pw", "1").keys[3:],
                             interface_ids_key(keys, login.account_id))
        assert prefix == history_prefix(keys, login.account_id)


def test_the_quick_lanes_encoded_logins_leave_no_tracked_objects_behind() -> None:
    """``UpdateService._update_command`` keeps nothing per login (pieces per id length only)."""
    service = build_service(settings("redis://unused"), Keys())
    headers = {"user-agent": AGENT}

    def quick(i: int) -> None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{account_name(i)}:{PASSWORD}".encode()).decode()
        step = service.quick(f"hostname={host_name(i, 0)}".encode(), headers, "127.0.0.1", packed=True)
        assert step is not None and isinstance(step.step, bytes)

    for i in range(WARM):
        quick(i)
    gc.collect()
    gc.disable()
    try:
        before = {id(o) for o in gc.get_objects()}
        for i in range(WARM, ACCOUNTS):
            quick(i)
        kept = [o for o in gc.get_objects() if id(o) not in before]
    finally:
        gc.enable()
    assert list(service._pieces) == [len(account_name(0))]
    assert len(kept) < 20, f"{len(kept)} tracked objects kept: " + ", ".join(sorted({type(o).__name__ for o in kept}))
