"""Store effects: what domain logic asks of the store, as plain data.

Domain operations are generators that *yield* effects and receive their results
(the sans-IO pattern of h11): the same generator is driven by a blocking runner for
WSGI callers and by an async runner for ASGI callers, so no logic is written twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script: the unit of atomicity on Redis and in the memory driver alike."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324


# Cmd and Eval are built for every store step (once per update on the endpoint's warm path): plain slotted
# classes, not frozen ones, whose __init__ costs three times as much. Nothing mutates or hashes them.
@dataclass(slots=True)
class Cmd:
    """One Redis command, e.g. ``Cmd(("HGETALL", key))``. Results follow redis-py (RESP2)."""

    args: tuple[Any, ...]


@dataclass(slots=True)
class Eval:
    """Run a Script atomically; every key it touches must be listed (and share a hash tag)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """Several commands sent in one round trip (pipelined, not transactional).

    The steps must be independent of each other: a driver may run a step again after the others (a script
    the server had not cached comes back NOSCRIPT and is sent again in full), so their order is not kept.
    """

    steps: tuple[Cmd | Eval, ...]


@dataclass(frozen=True, slots=True)
class Offload:
    """CPU-bound work (argon2): the async runner moves it to a worker thread."""

    fn: Callable[[], Any]


Effect = Cmd | Eval | Batch | Offload
Op = Generator[Effect, Any, T]


def cmd(*args: Any) -> Cmd:
    return Cmd(tuple(args))


def batch(steps: Sequence[Cmd | Eval]) -> Batch:
    return Batch(tuple(steps))


def pure(value: T) -> Op[T]:
    """An operation that needs no store round trip."""
    return value
    yield  # pragma: no cover - makes this a generator


class StoreError(Exception):
    """Base class of store failures."""


class StoreUnavailable(StoreError):
    """The store could not be reached in time: callers fail closed."""


class StoreResponseError(StoreError):
    """The store refused a command (wrong type, script error…)."""
