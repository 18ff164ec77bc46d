"""What each instance knows locally about an account's 2FA state, for at most ``ttl`` seconds.

Disable, regenerate and "sign out everywhere" bump the account's session epoch in the store; a
session ticket issued under an older epoch is dead. Instances keep the epoch (and whether 2FA is on)
for ``ttl`` (default 1 s) so that a verified request needs no store round trip, and every instance
learns a revocation within ``ttl``: an entry is never used once it is ``ttl`` old.

Single-flight refresh: once an entry is ``refresh_at`` (80 %) of ``ttl`` old, the *first* request to
see it is told to ask the store (``get`` returns None to it, which sends it down the gate's slow path,
whose answer ``put``s a fresh entry); every other request keeps using the still-valid entry meanwhile.
Without this, every request in flight when the entry expired would take the slow path at once: a herd
of store lookups per account per ``ttl``, as many as there are concurrent connections.
If the refresh has not landed by the time the entry is ``ttl`` old (a slow store), the entry is simply
expired: the bound on revocation never stretches.

``entries`` is readable by the gate's fast lane (``Gate.passing``), which remembers *which* entry object it
checked a session against: ``put`` always stores a new tuple and ``forget`` and eviction remove it, so
"still the same object, and younger than ``soft_ttl``" means nothing about the account has been learned,
changed or dropped since. The gate reads ``entries`` through the cache on every request (nothing holds on
to the dict), so eviction may replace it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class EpochCache:
    def __init__(self, ttl: float = 1.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic, refresh_at: float = 0.8) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.soft_ttl = ttl * refresh_at
        # account -> ((epoch, enabled), when learned). Plain tuples of numbers, which the garbage collector
        # stops tracking once it has seen them: an instance may hold 100,000 entries, and tracked ones (an
        # object per entry) would be walked by every full collection of the host app. ``get`` hands out the
        # inner tuple itself, so a lookup makes nothing. Read-only outside this class (see the module notes).
        self.entries: dict[str, tuple[tuple[int, bool], float]] = {}
        self._claims: dict[str, float] = {}  # account -> when its refresh was last handed out
        self._lock = threading.Lock()  # WSGI servers call from many threads

    def get(self, account: str) -> tuple[int, bool] | None:
        entry = self.entries.get(account)
        if entry is None:
            return None
        age = self.clock() - entry[1]
        if age > self.soft_ttl:
            if age > self.ttl:
                return None
            with self._lock:
                # One refresh per entry at a time; one whose caller never came back (an error, a
                # cancelled request) is handed out again after a tenth of the ttl.
                now = self.clock()
                if now - self._claims.get(account, float("-inf")) > self.ttl / 10:
                    self._claims[account] = now
                    return None
        return entry[0]

    def put(self, account: str, epoch: int, enabled: bool) -> None:
        with self._lock:
            if len(self.entries) >= self.max_entries:
                self._evict()
            self.entries[account] = ((epoch, enabled), self.clock())
            self._claims.pop(account, None)

    def forget(self, account: str) -> None:
        with self._lock:
            self.entries.pop(account, None)
            self._claims.pop(account, None)

    def _evict(self) -> None:
        now = self.clock()
        fresh = {a: e for a, e in self.entries.items() if now - e[1] <= self.ttl}
        # Everything fresh may still be too much: then start over (a cold second, not unbounded memory).
        self.entries = fresh if len(fresh) < self.max_entries else {}
        self._claims = {a: t for a, t in self._claims.items() if a in self.entries}
