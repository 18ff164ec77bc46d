"""Drivers for a real Redis (standalone, Sentinel or Cluster), blocking and async.

Scripts go by EVALSHA; a server that lost its script cache (restart, failover)
answers NOSCRIPT and the script is sent once in full, after which EVALSHA works again.
On a cluster each command goes to the node owning its keys' slot (all of a script's keys share one
hash tag); a SCAN is run on every primary, since each holds only its own slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rex

from .effects import Cmd, Eval, StoreResponseError, StoreUnavailable
from .url import StoreSpec, build_client

_UNAVAILABLE = (rex.ConnectionError, rex.TimeoutError, rex.ClusterDownError, OSError)


@contextmanager
def _translated() -> Iterator[None]:
    """Map redis-py's exceptions to the store's own, so callers need not know the driver."""
    try:
        yield
    except rex.NoScriptError:
        raise
    except rex.ResponseError as exc:
        if "BUSY" in str(exc) or "LOADING" in str(exc) or "MASTERDOWN" in str(exc):
            raise StoreUnavailable(str(exc)) from exc
        raise StoreResponseError(str(exc)) from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"store unreachable: {exc}") from exc
    except rex.RedisError as exc:
        raise StoreUnavailable(f"store error: {exc}") from exc


def _evalsha_args(step: Eval) -> tuple[Any, ...]:
    return (step.script.sha, len(step.keys), *step.keys, *step.args)


def _eval_args(step: Eval) -> tuple[Any, ...]:
    return (step.script.source, len(step.keys), *step.keys, *step.args)


def _scan_args(step: Cmd) -> dict[str, Any] | None:
    """``SCAN cursor MATCH p COUNT n`` as scan_iter arguments; None when ``step`` is not a SCAN."""
    if not step.args or str(step.args[0]).upper() != "SCAN":
        return None
    opts = {str(k).upper(): v for k, v in zip(step.args[2::2], step.args[3::2], strict=False)}
    return {"match": opts.get("MATCH"), "count": int(opts["COUNT"]) if "COUNT" in opts else None}


def _queue(pipe: Any, step: Cmd | Eval) -> None:
    if isinstance(step, Eval):
        pipe.evalsha(*_evalsha_args(step))
    else:
        pipe.execute_command(*step.args)


class RedisDriver:
    """Blocking driver (WSGI, CLIs)."""

    def __init__(self, spec: StoreSpec, client: Any = None) -> None:
        self.client = client if client is not None else build_client(spec, redis)
        self.cluster = spec.kind == "cluster"

    def execute(self, step: Cmd | Eval) -> Any:
        with _translated():
            if isinstance(step, Cmd):
                scan = _scan_args(step) if self.cluster else None
                if scan is not None:  # one SCAN would see one node: walk every primary, answer in one go
                    return 0, list(self.client.scan_iter(**scan, target_nodes=self.client.PRIMARIES))
                return self.client.execute_command(*step.args)
            try:
                return self.client.evalsha(*_evalsha_args(step))
            except rex.NoScriptError:
                return self.client.eval(*_eval_args(step))

    def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        if self.cluster and any(isinstance(s, Eval) for s in steps):
            # redis-py's cluster pipeline refuses EVALSHA: one command each (a batch is not a transaction).
            return [self.execute(s) for s in steps]
        with _translated():
            for attempt in range(2):
                pipe = self.client.pipeline(transaction=False)
                for step in steps:
                    _queue(pipe, step)
                try:
                    return list(pipe.execute())
                except rex.NoScriptError:
                    if attempt:
                        raise
                    for script in {s.script for s in steps if isinstance(s, Eval)}:
                        self.client.script_load(script.source)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.client.close()


class AsyncRedisDriver:
    """Async driver (ASGI)."""

    def __init__(self, spec: StoreSpec, client: Any = None) -> None:
        self.client = client if client is not None else build_client(spec, redis.asyncio)
        self.cluster = spec.kind == "cluster"

    async def execute(self, step: Cmd | Eval) -> Any:
        with _translated():
            if isinstance(step, Cmd):
                scan = _scan_args(step) if self.cluster else None
                if scan is not None:
                    nodes = self.client.PRIMARIES
                    return 0, [k async for k in self.client.scan_iter(**scan, target_nodes=nodes)]
                return await self.client.execute_command(*step.args)
            try:
                return await self.client.evalsha(*_evalsha_args(step))
            except rex.NoScriptError:
                return await self.client.eval(*_eval_args(step))

    async def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        if self.cluster and any(isinstance(s, Eval) for s in steps):
            # redis-py's cluster pipeline refuses EVALSHA: send them side by side, still one round trip's wait.
            return list(await asyncio.gather(*(self.execute(s) for s in steps)))
        with _translated():
            for attempt in range(2):
                pipe = self.client.pipeline(transaction=False)
                for step in steps:
                    _queue(pipe, step)
                try:
                    return list(await pipe.execute())
                except rex.NoScriptError:
                    if attempt:
                        raise
                    for script in {s.script for s in steps if isinstance(s, Eval)}:
                        await self.client.script_load(script.source)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self.client.aclose()
