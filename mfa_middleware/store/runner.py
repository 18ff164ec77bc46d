"""Drive an effect generator against a driver: one blocking runner, one async runner."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import anyio.to_thread

from .effects import Batch, Cmd, Effect, Eval, Offload, Op

T = TypeVar("T")


class SyncDriver(Protocol):
    def execute(self, step: Cmd | Eval) -> Any: ...
    def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]: ...
    def close(self) -> None: ...


class AsyncDriver(Protocol):
    async def execute(self, step: Cmd | Eval) -> Any: ...
    async def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]: ...
    async def close(self) -> None: ...


def run_sync(driver: SyncDriver, op: Op[T]) -> T:
    result: Any = None
    failed: BaseException | None = None
    while True:
        try:
            effect: Effect = op.send(result) if failed is None else op.throw(failed)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        failed = None
        if isinstance(effect, Offload):
            # The host app's code (a password checker, a policy hook) may fail or be async: its error goes to
            # the step that asked, which decides (a store error, by contrast, ends the whole operation).
            try:
                result = effect.fn()
                if inspect.isawaitable(result):
                    result = asyncio.run(_wait(result))
            except Exception as exc:
                failed = exc
        elif isinstance(effect, Batch):
            result = driver.execute_batch(effect.steps)
        else:
            result = driver.execute(effect)


async def run_async(driver: AsyncDriver, op: Op[T]) -> T:
    result: Any = None
    failed: BaseException | None = None
    while True:
        try:
            effect: Effect = op.send(result) if failed is None else op.throw(failed)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        failed = None
        if isinstance(effect, Offload):
            try:
                result = await _offload(effect)
            except Exception as exc:
                failed = exc
        elif isinstance(effect, Batch):
            result = await driver.execute_batch(effect.steps)
        else:
            result = await driver.execute(effect)


async def _offload(effect: Offload) -> Any:
    """A coroutine function is awaited here; anything else runs on a worker thread (it may block)."""
    if inspect.iscoroutinefunction(effect.fn):
        return await effect.fn()
    result = await anyio.to_thread.run_sync(effect.fn)
    if inspect.isawaitable(result):  # a plain function that returned an awaitable (a lambda around an async call)
        result = await result
    return result


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
