"""Drivers for a real Redis (standalone, Sentinel or Cluster), blocking and async.

Scripts go by EVALSHA; a server that lost its script cache (restart, failover)
answers NOSCRIPT and the script is sent once in full, after which EVALSHA works again.
On a cluster each command goes to the node owning its keys' slot (all of a script's keys share one
hash tag); a SCAN is run on every primary, since each holds only its own slots.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rex

from .effects import Cmd, Eval, StoreResponseError, StoreUnavailable
from .url import StoreSpec, build_client

log = logging.getLogger("mfa_middleware.store")
_UNAVAILABLE = (rex.ConnectionError, rex.TimeoutError, rex.ClusterDownError, OSError)
# What redis-py lets out, instead of a ConnectionError, when a connection is closed under a command: the
# cluster client closes *every* connection when a node answers CLUSTERDOWN, while other requests are still
# using them (uvloop: RuntimeError "handler is closed"; asyncio: AttributeError on the dropped writer,
# TypeError on Python 3.12, redis/redis-py#4287); and RedisClusterException (no node reachable, slots not
# covered) is not a RedisError. The store failed all the same: fail closed, never a 500.
_LEAKED = (rex.RedisClusterException, RuntimeError, AttributeError, TypeError)


@contextmanager
def _translated() -> Iterator[None]:
    """Map redis-py's exceptions to the store's own, so callers need not know the driver."""
    try:
        yield
    except rex.NoScriptError:
        raise
    except _UNAVAILABLE as exc:  # before ResponseError: CLUSTERDOWN and MASTERDOWN are ResponseErrors too
        raise StoreUnavailable(f"store unreachable: {exc}") from exc
    except rex.ResponseError as exc:
        # NOREPLICAS: a primary configured with min-replicas-to-write that lost its replicas (cut off, or
        # an old primary after a Sentinel failover): fail closed like a store that is away.
        if any(code in str(exc) for code in ("BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS")):
            raise StoreUnavailable(str(exc)) from exc
        raise StoreResponseError(str(exc)) from exc
    except rex.RedisError as exc:
        raise StoreUnavailable(f"store error: {exc}") from exc
    except _LEAKED as exc:
        raise StoreUnavailable(f"store connection failed: {type(exc).__name__}: {exc}") from exc


# How often a Sentinel client asks the Sentinels who the primary is (one small request to one Sentinel).
PRIMARY_CHECK_INTERVAL = 0.5


class _PrimaryWatch:
    """Sentinel split brain: after a failover, pooled connections opened before the switch keep talking to
    the old primary, which still accepts writes until the Sentinels demote it (seconds later); those writes
    are lost when it re-syncs. redis-py's SentinelConnectionPool drops its idle connections (and refuses
    back the busy ones when they are released) once ``get_master_address()`` sees a new address, but it
    asks only when it opens a *new* connection, which a warm pool rarely does. So ask every
    PRIMARY_CHECK_INTERVAL: a blocking client from a daemon thread, an async client from a task started by
    the first request after the interval (never on the request's own path). Bounded: one in flight per
    client, errors ignored (a Sentinel outage must not fail requests that the primary can still serve)."""

    def __init__(self, pool: Any, interval: float = PRIMARY_CHECK_INTERVAL) -> None:
        self.pool, self.interval = pool, interval
        self.stopped = threading.Event()
        self.next_at = 0.0
        self.task: asyncio.Task[None] | None = None

    # blocking clients
    def start_thread(self) -> None:
        # The thread holds the pool weakly: a client dropped without close() does not keep it polling.
        pool, self.pool = weakref.ref(self.pool), None
        threading.Thread(target=self._loop, args=(pool, self.stopped, self.interval),
                         name="sentinel-primary-watch", daemon=True).start()

    @staticmethod
    def _loop(ref: weakref.ref[Any], stopped: threading.Event, interval: float) -> None:
        while not stopped.wait(interval):
            pool = ref()
            if pool is None:
                return
            try:
                pool.get_master_address()
            except Exception:  # no Sentinel answered: the next round asks again
                log.debug("sentinel primary check failed", exc_info=True)
            del pool

    # async clients
    def poke(self) -> None:
        now = time.monotonic()
        if now < self.next_at or (self.task is not None and not self.task.done()) or self.stopped.is_set():
            return
        self.next_at = now + self.interval
        self.task = asyncio.get_running_loop().create_task(self._check_async())

    async def _check_async(self) -> None:
        try:
            address = tuple(await self.pool.get_master_address())

            def elsewhere(connections: Any) -> list[Any]:
                return [c for c in list(connections)
                        if getattr(c, "is_connected", False) and (c.host, c.port) != address]

            # The async pool, unlike the blocking one, takes back a connection that was busy while the
            # address changed without asking whether it still points at the primary: drop such idle ones,
            for conn in elsewhere(getattr(self.pool, "_available_connections", ())):
                await conn.disconnect()
            # and have the pool drop the busy ones when they are released (else they would serve requests
            # until a later check found them idle).
            for conn in elsewhere(getattr(self.pool, "_in_use_connections", ())):
                if hasattr(conn, "mark_for_reconnect"):
                    conn.mark_for_reconnect()
                else:  # an older redis-py: look again at the next request instead
                    self.next_at = 0.0
        except Exception:  # as above: a failed check must never fail a request
            log.debug("sentinel primary check failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        if self.task is not None:
            self.task.cancel()


def _watch(client: Any, spec: StoreSpec) -> _PrimaryWatch | None:
    return _PrimaryWatch(client.connection_pool) if spec.kind == "sentinel" else None


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


def _pipeline(client: Any, steps: Sequence[Cmd | Eval], *, full: bool = False) -> Any:
    """A non-transactional pipeline of ``steps``; ``full`` sends scripts by source (EVAL), not by digest."""
    pipe = client.pipeline(transaction=False)
    for step in steps:
        if isinstance(step, Cmd):
            pipe.execute_command(*step.args)
        elif full:
            pipe.eval(*_eval_args(step))
        else:
            pipe.evalsha(*_evalsha_args(step))
    return pipe


# A batch's replies are read with raise_on_error=False: when the server lost its script cache (a restart,
# a failover, or another process's SCRIPT LOAD landing mid-batch) only the steps it refused with NOSCRIPT
# run again, by source. Re-sending the whole batch would run its other steps twice (a batch is not
# idempotent: SET NX, HINCRBY, a script that creates something).
def _missing_scripts(replies: list[Any]) -> list[int]:
    return [i for i, reply in enumerate(replies) if isinstance(reply, rex.NoScriptError)]


def _fill(replies: list[Any], positions: list[int], retried: list[Any]) -> None:
    for i, reply in zip(positions, retried, strict=True):
        replies[i] = reply


def _raise_first(replies: list[Any]) -> list[Any]:
    """The replies, or the first error among them raised (as ``pipe.execute()`` would)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class RedisDriver:
    """Blocking driver (WSGI, CLIs)."""

    def __init__(self, spec: StoreSpec, client: Any = None) -> None:
        self.client = client if client is not None else build_client(spec, redis)
        self.cluster = spec.kind == "cluster"
        self.watch = _watch(self.client, spec)
        if self.watch is not None:
            self.watch.start_thread()

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
            replies = list(_pipeline(self.client, steps).execute(raise_on_error=False))
            missing = _missing_scripts(replies)
            if missing:
                retry = _pipeline(self.client, [steps[i] for i in missing], full=True).execute(raise_on_error=False)
                _fill(replies, missing, retry)
            return _raise_first(replies)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        self.client.close()


class AsyncRedisDriver:
    """Async driver (ASGI)."""

    def __init__(self, spec: StoreSpec, client: Any = None) -> None:
        self.client = client if client is not None else build_client(spec, redis.asyncio)
        self.cluster = spec.kind == "cluster"
        self.watch = _watch(self.client, spec)

    async def execute(self, step: Cmd | Eval) -> Any:
        if self.watch is not None:
            self.watch.poke()
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
        if self.watch is not None:
            self.watch.poke()
        if self.cluster and any(isinstance(s, Eval) for s in steps):
            # redis-py's cluster pipeline refuses EVALSHA: send them side by side, still one round trip's wait.
            return list(await asyncio.gather(*(self.execute(s) for s in steps)))
        with _translated():
            replies = list(await _pipeline(self.client, steps).execute(raise_on_error=False))
            missing = _missing_scripts(replies)
            if missing:
                pipe = _pipeline(self.client, [steps[i] for i in missing], full=True)
                _fill(replies, missing, await pipe.execute(raise_on_error=False))
            return _raise_first(replies)

    async def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        await self.client.aclose()
