"""The per-instance epoch cache (``mfa_middleware.revocation``): single-flight refresh within the bound."""

from __future__ import annotations

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
