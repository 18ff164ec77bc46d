"""One store for everything the gate and the update endpoint keep.

Domain code builds operations (generators yielding effects, see ``effects``);
``Store.run`` drives them with a blocking driver, ``AsyncStore.run`` with an async one.
"""

from __future__ import annotations

from typing import TypeVar

from .effects import Op, StoreError, StoreResponseError, StoreUnavailable, cmd, pure
from .fast_driver import FastAsyncRedisDriver
from .keys import Keys
from .memory import AsyncMemoryDriver, MemoryDriver, MemoryStore
from .redis_driver import AsyncRedisDriver, RedisDriver
from .runner import AsyncDriver, SyncDriver, run_async, run_sync
from .url import StoreSpec, StoreURLError, parse_store_url

T = TypeVar("T")

__all__ = [
    "AsyncStore", "Keys", "MemoryStore", "Op", "Store", "StoreError", "StoreResponseError",
    "StoreSpec", "StoreURLError", "StoreUnavailable", "cmd", "open_async_store", "open_store",
    "parse_store_url", "pure",
]


class Store:
    """Blocking facade: ``store.run(op)``."""

    def __init__(self, driver: SyncDriver, keys: Keys | None = None, *, kind: str = "redis") -> None:
        self.driver = driver
        self.keys = keys or Keys()
        self.kind = kind

    def run(self, op: Op[T]) -> T:
        return run_sync(self.driver, op)

    def close(self) -> None:
        self.driver.close()


class AsyncStore:
    """Async facade: ``await store.run(op)``."""

    def __init__(self, driver: AsyncDriver, keys: Keys | None = None, *, kind: str = "redis") -> None:
        self.driver = driver
        self.keys = keys or Keys()
        self.kind = kind

    async def run(self, op: Op[T]) -> T:
        return await run_async(self.driver, op)

    async def close(self) -> None:
        await self.driver.close()


def open_store(url: str | None, prefix: str = "mfa", memory: MemoryStore | None = None) -> Store:
    """A blocking store for ``url`` (``None``/empty: in-memory, shared via ``memory``)."""
    spec = parse_store_url(url)
    if spec.kind == "memory":
        return Store(MemoryDriver(memory), Keys(prefix), kind="memory")
    return Store(RedisDriver(spec), Keys(prefix), kind=spec.kind)


def open_async_store(url: str | None, prefix: str = "mfa", memory: MemoryStore | None = None) -> AsyncStore:
    spec = parse_store_url(url)
    if spec.kind == "memory":
        return AsyncStore(AsyncMemoryDriver(memory), Keys(prefix), kind="memory")
    if spec.kind == "redis" and spec.url.startswith("redis://"):
        # Plain standalone Redis: the lean pipelined driver (the update endpoint's hot path, fast_driver.py).
        return AsyncStore(FastAsyncRedisDriver(spec), Keys(prefix), kind=spec.kind)
    return AsyncStore(AsyncRedisDriver(spec), Keys(prefix), kind=spec.kind)


