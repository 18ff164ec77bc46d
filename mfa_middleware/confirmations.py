"""The gate's fast lane: ``Gate.handle``'s answer for a Cookie header, remembered for at most ``ttl`` seconds.

There is one decision, made by ``Gate.handle`` against the store (the session record, the account's epoch and
2FA state). When it lets a signed-in request through and sets no cookie, the answer is remembered here under
the request's exact Cookie header, and the same browser's next requests get it back without a store round
trip. Nothing is decided here: an entry is only ever ``handle``'s own answer, and it stops being used when

- ``ttl`` (the gate's ``revocation_ttl``, 1 s by default) has passed since the store confirmed it: how every
  instance learns a logout, a timeout, disable, regenerate, sign-out-everywhere or an operator reset made
  elsewhere;
- the ticket in the cookie falls due (idle or absolute timeout, or the minute after which ``handle`` re-issues
  it, which it does only after reading the record);
- this instance changes the account or ends one of its sessions (``forget``: at once, not within ``ttl``).

Single-flight refresh: once an entry is ``refresh_at`` of ``ttl`` old, the first request to see it is sent to
``handle`` (whose answer replaces the entry) while the others keep using it until ``ttl``; without this every
request in flight at expiry would ask the store at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

Key = str | bytes
MAX_KEY = 4096  # longer Cookie headers are never remembered: every request asks the store
MAX_ENTRIES = 10_000  # a full memo is emptied (a cold second for some browsers, not unbounded memory)

# An entry is a list so that ``forget`` can end it where it is (both the memo and the account's index hold
# it): [identity, https, refresh at, expires at (monotonic), ticket due (gate clock), facts, claimed at].
_SOFT, _HARD, _CLAIMED = 2, 3, 6


class Confirmations:
    def __init__(self, ttl: float, clock: Callable[[], float], monotonic: Callable[[], float] = time.monotonic,
                 refresh_at: float = 0.8, special: tuple[str, ...] = ()) -> None:
        self.ttl = ttl
        self.clock = clock  # the gate's clock, which the ticket's deadlines are in
        self.monotonic = monotonic
        self.refresh_at = refresh_at
        self.special = special  # path prefixes with a rule of their own: never answered from here (``Gate``)
        self.entries: dict[Key, list[Any]] = {}
        self._by_account: dict[str, dict[Key, list[Any]]] = {}
        self._lock = threading.Lock()

    def get(self, path: str, identity: str, key: Key, https: bool) -> dict[str, Any] | None:
        """The remembered facts for a request to an ordinary ``path`` (a fresh copy: the app may change them),
        or None to ask ``handle``. Every signed-in request comes here first (``Gate.passing`` is this method),
        so the entry's fields are read by position: [identity, https, refresh at, expires at, ticket due,
        facts, claimed at]."""
        if path.startswith(self.special):
            return None
        e = self.entries.get(key)
        if e is None or e[0] != identity or e[1] is not https:
            return None
        now = self.monotonic()
        if now >= e[2] and (now >= e[3] or self._claim(e, now)):
            return None
        if self.clock() >= e[4]:
            return None
        facts: dict[str, Any] = e[5].copy()
        return facts

    def _claim(self, e: list[Any], now: float) -> bool:
        with self._lock:
            # One refresh per entry at a time; one whose request never came back is handed out again.
            if now - e[_CLAIMED] > self.ttl / 10:
                e[_CLAIMED] = now
                return True
            return False

    def put(self, path: str, key: Key, identity: str, https: bool, facts: dict[str, Any], due: float) -> None:
        """Remember ``handle``'s answer for a request to ``path``: only an ordinary page's answer is the
        browser's answer everywhere, so one on a path with a rule of its own is not kept."""
        if path.startswith(self.special) or len(key) > MAX_KEY or self.ttl <= 0:
            return
        now = self.monotonic()
        entry = [identity, https, now + self.ttl * self.refresh_at, now + self.ttl, due, dict(facts), -math.inf]
        with self._lock:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.clear()
                self._by_account.clear()
            self.entries[key] = entry
            self._by_account.setdefault(identity, {})[key] = entry

    def forget(self, account: str) -> None:
        """This instance changed ``account`` or ended one of its sessions: none of its answers hold."""
        with self._lock:
            for e in self._by_account.pop(account, {}).values():
                e[_SOFT] = e[_HARD] = -math.inf
