"""What each instance knows locally about an account's 2FA state, for at most ``ttl`` seconds.

Disable, regenerate and "sign out everywhere" bump the account's session epoch in the store; a
session ticket issued under an older epoch is dead. Instances keep the epoch (and whether 2FA is on)
for ``ttl`` (default 1 s) so that a verified request needs no store round trip, and every instance
learns a revocation within ``ttl``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class EpochCache:
    def __init__(self, ttl: float = 1.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[int, bool, float]] = {}
        self._lock = threading.Lock()  # WSGI servers call from many threads

    def get(self, account: str) -> tuple[int, bool] | None:
        entry = self._entries.get(account)
        if entry is None or self.clock() - entry[2] > self.ttl:
            return None
        return entry[0], entry[1]

    def put(self, account: str, epoch: int, enabled: bool) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[account] = (epoch, enabled, self.clock())

    def forget(self, account: str) -> None:
        with self._lock:
            self._entries.pop(account, None)

    def _evict(self) -> None:
        now = self.clock()
        fresh = {a: e for a, e in self._entries.items() if now - e[2] <= self.ttl}
        # Everything fresh may still be too much: then start over (a cold second, not unbounded memory).
        self._entries = fresh if len(fresh) < self.max_entries else {}
