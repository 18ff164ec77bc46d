"""The per-instance epoch cache (``mfa_middleware.revocation``): single-flight refresh within the bound."""

from __future__ import annotations

import gc

from mfa_middleware.revocation import EpochCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_request_refreshes_while_the_others_keep_the_entry() -> None:
    clock = Clock()
    cache = EpochCache(ttl=1.0, clock=clock)
    assert cache.get("a") is None
    cache.put("a", 3, True)
    clock.now += 0.5
    assert [cache.get("a") for _ in range(5)] == [(3, True)] * 5
    clock.now += 0.35  # past 80 % of the ttl: the first caller is sent to the store, nobody else
    assert cache.get("a") is None
    assert [cache.get("a") for _ in range(50)] == [(3, True)] * 50
    clock.now += 0.11  # that refresh never landed: after a tenth of the ttl another caller gets it
    assert cache.get("a") is None
    assert cache.get("a") == (3, True)
    cache.put("a", 4, True)  # the refresh lands: a new, fresh entry
    assert [cache.get("a") for _ in range(5)] == [(4, True)] * 5


def test_an_entry_is_never_used_past_the_ttl() -> None:
    """The revocation bound: stale-while-refresh never stretches it, however many callers are waiting."""
    clock = Clock()
    cache = EpochCache(ttl=1.0, clock=clock)
    cache.put("a", 1, True)
    clock.now += 0.9
    assert cache.get("a") is None  # the refresh handed out
    clock.now += 0.11
    assert [cache.get("a") for _ in range(10)] == [None] * 10
    cache.forget("a")
    assert cache.get("a") is None


def test_entries_leave_nothing_for_the_garbage_collector() -> None:
    """An instance may remember 100,000 accounts; entries the collector keeps tracking would be walked by
    every full collection of the host app. Once seen by one collection, none of them is tracked."""
    cache = EpochCache(ttl=1.0, clock=Clock())
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    for i in range(1000):
        cache.put(f"account-{i}", i, i % 2 == 0)
        assert cache.get(f"account-{i}") == (i, i % 2 == 0)
    gc.collect()
    gc.collect()
    kept = [o for o in gc.get_objects() if id(o) not in before and o is not before]
    assert len(kept) < 20, f"{len(kept)} tracked objects kept by 1,000 entries"


def test_eviction_keeps_the_fresh_entries_and_their_claims_only() -> None:
    clock = Clock()
    cache = EpochCache(ttl=1.0, clock=clock, max_entries=3)
    cache.put("old", 1, True)
    clock.now += 0.9
    assert cache.get("old") is None  # its refresh is handed out (a claim)
    cache.put("a", 2, True)
    cache.put("b", 3, True)
    clock.now += 0.2  # "old" is past the ttl, "a" and "b" are not
    cache.put("c", 4, False)  # full: evicts what expired
    assert [cache.get(k) for k in ("old", "a", "b", "c")] == [None, (2, True), (3, True), (4, False)]
    assert "old" not in cache._claims
