"""Drive an effect generator against a driver: one blocking runner, one async runner."""

from __future__ import annotations

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
    while True:
        try:
            effect: Effect = op.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(effect, Offload):
            result = effect.fn()
        elif isinstance(effect, Batch):
            result = driver.execute_batch(effect.steps)
        else:
            result = driver.execute(effect)


async def run_async(driver: AsyncDriver, op: Op[T]) -> T:
    result: Any = None
    while True:
        try:
            effect: Effect = op.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(effect, Offload):
            result = await anyio.to_thread.run_sync(effect.fn)
        elif isinstance(effect, Batch):
            result = await driver.execute_batch(effect.steps)
        else:
            result = await driver.execute(effect)
