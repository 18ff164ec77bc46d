"""Who must use 2FA (``policy``), how long a newly required user may wait (``grace``), and which routes want a
recent second factor (``step_up``).

``policy`` is "optional", "required", or a callable ``policy(identity)`` answering one of those (sync or
async; a blocking one runs off the event loop). Its answer is asked at most once per identity per
``revocation_ttl`` on each instance, so a change in the host app (a user made staff) reaches every instance
within that bound, and a verified request (answered by ``Gate.passing``) never calls into the host app.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .store import Op
from .store.effects import Offload

log = logging.getLogger("mfa_middleware")
POLICIES = ("optional", "required")
PolicyFn = Callable[[str], "str | Awaitable[str]"]
_MAX_CACHED = 100_000


class Policy:
    def __init__(self, policy: str | PolicyFn, ttl: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        if isinstance(policy, str):
            if policy not in POLICIES:
                raise ValueError("policy must be 'optional', 'required' or a callable")
        elif not callable(policy):
            raise ValueError("policy must be 'optional', 'required' or a callable")
        self.rule = policy
        self.ttl = ttl
        self.monotonic = monotonic
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def everyone(self) -> str | None:
        """The one answer for everybody, or None when it depends on the user."""
        return self.rule if isinstance(self.rule, str) else None

    def for_identity(self, identity: str) -> Op[str]:
        rule = self.rule
        if isinstance(rule, str):
            return rule
        now = self.monotonic()
        hit = self._cache.get(identity)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            answer = yield Offload(functools.partial(rule, identity))
        except Exception:  # the host app's hook failed: fail closed, as for a store outage
            log.exception("2FA policy callable failed for %r; treating the user as required", identity)
            answer = "required"
        if answer not in POLICIES:
            log.error("2FA policy callable answered %r for %r; treating the user as required", answer, identity)
            answer = "required"
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[identity] = (str(answer), now + self.ttl)
        return str(answer)


class StepUp:
    """``step_up={"/billing/": 300}``: path prefixes and the most seconds since this session last proved a
    second factor (or, without 2FA, the password)."""

    def __init__(self, routes: Mapping[str, int] | None) -> None:
        items = sorted((routes or {}).items(), key=lambda kv: -len(kv[0]))  # the longest prefix decides
        for prefix, age in items:
            if not prefix.startswith("/") or not isinstance(age, int) or age <= 0:
                raise ValueError(f"step_up: {prefix!r} must start with '/' and map to a positive number of seconds")
        self.routes = tuple(items)
        self.prefixes = tuple(p for p, _ in items)

    def max_age(self, path: str) -> int | None:
        for prefix, age in self.routes:
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                return age
        return None


def fresh(facts: Mapping[str, Any], max_age: int, now: float) -> bool:
    """Did this session prove itself within ``max_age`` seconds? The second factor when 2FA is on, else the
    password re-entered on the gate's confirm page. A trusted browser proved nothing just now: it only skips the
    prompt at sign-in, never a step-up."""
    if facts.get("enabled"):
        proved = facts.get("verified_at") if facts.get("method") != "trusted" else None
    else:
        proved = facts.get("reauth_at")
    return proved is not None and bool(proved) and now - float(proved) <= max_age
