"""A lean async driver for a standalone Redis (``redis://``): one pipelined connection per event loop.

Why: on the update endpoint's warm path the store round trip *is* the request, and redis-py's asyncio
client spent about half of the request's CPU around it (a pool checkout, a ``wait_for`` timer per read,
argument encoding in Python). Here every coroutine writes its command to one shared connection and waits
on a future; Redis answers in order, so replies are matched to a FIFO of futures (concurrent requests
pipeline for free). Commands are packed and replies parsed by hiredis (C). One timer per connection, not
per command, enforces ``socket_timeout``: when the oldest reply is late the connection is dropped and
every waiter fails with ``StoreUnavailable`` (callers fail closed), and the next command reconnects.

Replies get redis-py's own RESP2 response callbacks, so results have the exact shapes the blocking
driver returns (``HGETALL`` → dict, ``SET NX`` → True/None, …). TLS, unix sockets, Sentinel and Cluster
keep using redis-py (``redis_driver.AsyncRedisDriver``).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import hiredis
import redis.asyncio
from redis.connection import parse_url

from .effects import Cmd, Eval, Script, StoreResponseError, StoreUnavailable
from .url import StoreSpec

_UNAVAILABLE_ERRORS = ("BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS")  # as redis_driver: fail closed


def _response_callbacks() -> dict[str, Callable[..., Any]]:
    client = redis.asyncio.Redis(protocol=2, decode_responses=True)  # never connects: only its table
    return {str(k).upper(): v for k, v in client.response_callbacks.items()}


_CALLBACKS = _response_callbacks()


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        # asyncio.get_running_loop() makes a getpid() system call each time (it checks for a fork): the hot
        # path uses the loop it was made on, and ``current`` to tell whether that loop is the caller's.
        self.loop = loop
        self.thread = threading.get_ident()
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiters: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        self.lost: Exception | None = None
        self.outbox: list[bytes] = []
        self.queued = 0  # commands in ``outbox``

    def current(self) -> bool:
        """Whether the running loop is this connection's: it is running, in this thread (a thread runs one
        loop at a time, so it is the caller's)."""
        return self.thread == threading.get_ident() and self.loop.is_running()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an ``asyncio.Transport`` instance: uvloop's TCPTransport
        # implements the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(StoreUnavailable(f"store protocol error: {exc}"))
                return
            if reply is False:
                return
            future, _ = self.waiters.popleft()
            if not future.done():  # a cancelled caller's reply is read and dropped
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(StoreUnavailable(f"store connection lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self.lost = self.lost or error
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.waiters:
            future, _ = self.waiters.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, payload: bytes, count: int) -> list[asyncio.Future[Any]]:
        """Queue ``payload`` (``count`` packed commands); one future per reply, in order."""
        if self.lost is not None or self.transport is None:
            raise self.lost or StoreUnavailable("store connection closed")
        loop = self.loop
        futures = [loop.create_future() for _ in range(count)]
        now = time.monotonic()
        self.waiters.extend((f, now) for f in futures)
        self._queue(loop, payload, count)
        return futures

    def send_one(self, payload: bytes) -> asyncio.Future[Any]:
        """``send`` for one command."""
        if self.lost is not None or self.transport is None:
            raise self.lost or StoreUnavailable("store connection closed")
        loop = self.loop
        future = loop.create_future()
        self.waiters.append((future, time.monotonic()))
        self._queue(loop, payload, 1)
        return future

    def _queue(self, loop: asyncio.AbstractEventLoop, payload: bytes, count: int) -> None:
        # When Redis has nothing of ours to work on, the command leaves at once: waiting for the end of the
        # loop iteration would leave Redis idle while this process parses the rest of its batch, and then
        # leave this process idle while Redis works through it all. While replies are outstanding, commands
        # coalesce: everything queued in this loop iteration leaves in one write (one syscall, one read for
        # Redis). ``bench.update_endpoint`` shows the difference in how busy the server's core is.
        self.outbox.append(payload)
        self.queued += count
        if self.queued == len(self.waiters):
            self._flush()
        elif len(self.outbox) == 1:
            loop.call_soon(self._flush)
        if self.timer is None:
            self.timer = loop.call_later(self.timeout, self._check)

    def _flush(self) -> None:
        if not self.outbox:
            return
        payload, self.outbox, self.queued = b"".join(self.outbox), [], 0
        if self.transport is not None and self.lost is None:
            self.transport.write(payload)

    def _check(self) -> None:
        self.timer = None
        if not self.waiters:
            return
        late = self.waiters[0][1] + self.timeout - time.monotonic()
        if late <= 0:
            self._fail(StoreUnavailable(f"store did not answer within {self.timeout}s"))
        else:
            self.timer = self.loop.call_later(late, self._check)


class FastAsyncRedisDriver:
    """Async driver for ``redis://host:port/db`` (see the module docstring)."""

    def __init__(self, spec: StoreSpec) -> None:
        params = parse_url(spec.url)  # type: ignore[no-untyped-call]
        self.host: str = params.get("host", "localhost")
        self.port: int = int(params.get("port", 6379))
        self.db: int = int(params.get("db", 0))
        self.username: str | None = params.get("username")
        self.password: str | None = params.get("password")
        self.timeout = float(spec.options.get("socket_timeout") or 1.0)
        self.connect_timeout = float(spec.options.get("socket_connect_timeout") or 1.0)
        self._conn: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is not None and conn.lost is None and conn.loop is loop:
            return conn
        if self._connecting is None or self._loop is not loop:
            self._connecting, self._loop = asyncio.Lock(), loop
        async with self._connecting:
            conn = self._conn
            if conn is not None and conn.lost is None and conn.loop is loop:
                return conn
            # None yet, lost, or opened by a loop that has stopped (its transport went with it): a new one.
            self._conn = await self._connect(loop)
            return self._conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop, self.timeout), self.host, self.port),
                self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"store unreachable: {exc}") from exc
        hello: list[tuple[Any, ...]] = []
        if self.password is not None:
            hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        if hello:
            replies = await asyncio.gather(*conn.send(b"".join(hiredis.pack_command(c) for c in hello), len(hello)))
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    conn._fail(StoreUnavailable(f"store refused the connection: {reply}"))
                    raise StoreUnavailable(f"store refused the connection: {reply}")
        return conn

    async def execute(self, step: Cmd | Eval) -> Any:
        # execute_batch for one step, without its lists (the update endpoint's one round trip)
        conn = self._conn
        if conn is None or conn.lost is not None or not conn.current():
            conn = await self._connection()
        command = _evalsha(step) if isinstance(step, Eval) else step.args
        reply = await conn.send_one(hiredis.pack_command(command))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await conn.send_one(hiredis.pack_command(_eval(step)))
        return _result(command, reply)

    async def execute_packed(self, script: Script, command: bytes) -> Any:
        """``execute`` for an ``EVALSHA`` of ``script`` already encoded (``resp.evalsha``): its reply, as the
        script returned it. A server that lost its script cache is given the script (``SCRIPT LOAD``), and
        the command is sent again."""
        conn = self._conn
        if conn is None or conn.lost is not None or not conn.current():
            conn = await self._connection()
        reply = await conn.send_one(command)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            load: tuple[Any, ...] = ("SCRIPT", "LOAD", script.source)
            loaded = await conn.send_one(hiredis.pack_command(load))
            _result(("EVAL",), loaded)  # raises the server's error, if it refused the script
            reply = await conn.send_one(command)
        return _result(("EVALSHA",), reply)

    async def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        if not steps:
            return []
        conn = await self._connection()
        commands = [_evalsha(s) if isinstance(s, Eval) else s.args for s in steps]
        replies = await _send(conn, commands)
        missing = [i for i, r in enumerate(replies) if isinstance(r, hiredis.ReplyError) and
                   str(r).startswith("NOSCRIPT")]
        if missing:  # the server lost its script cache (restart, failover): send those scripts in full
            retry = [_eval(steps[i]) for i in missing]
            for i, reply in zip(missing, await _send(conn, retry), strict=True):
                replies[i] = reply
        return [_result(c, r) for c, r in zip(commands, replies, strict=True)]

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None


async def _send(conn: _Connection, commands: list[tuple[Any, ...]]) -> list[Any]:
    payload = b"".join(hiredis.pack_command(c) for c in commands)
    futures = conn.send(payload, len(commands))
    if len(futures) == 1:
        return [await futures[0]]
    return list(await asyncio.gather(*futures))


def _evalsha(step: Eval) -> tuple[Any, ...]:
    return ("EVALSHA", step.script.sha, len(step.keys), *step.keys, *step.args)


def _eval(step: Cmd | Eval) -> tuple[Any, ...]:
    assert isinstance(step, Eval)
    return ("EVAL", step.script.source, len(step.keys), *step.keys, *step.args)


def _result(command: tuple[Any, ...], reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        text = str(reply)
        if text.startswith(_UNAVAILABLE_ERRORS):
            raise StoreUnavailable(text)
        raise StoreResponseError(text)
    name = command[0]
    if name == "EVALSHA" or name == "EVAL":  # scripts: the reply as the script returned it
        return reply
    callback = _CALLBACKS.get(name) if name in _CALLBACKS else _CALLBACKS.get(str(name).upper())
    return callback(reply) if callback is not None else reply
