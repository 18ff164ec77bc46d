"""The lean async driver (plain redis://) against real redis-servers: auth, database number, bad password,
a hung server (timeout drops the connection, the next command reconnects), a restarted server."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import redis
import uvloop

from mfa_middleware.store import Op, StoreUnavailable, cmd, open_async_store
from mfa_middleware.store.fast_driver import FastAsyncRedisDriver
from tests.servers import RedisServer


def set_then_get(key: str, value: str) -> Op[Any]:
    yield cmd("SET", key, value)
    return (yield cmd("GET", key))


async def test_password_and_database_number() -> None:
    server = RedisServer("--requirepass", "s3cret").start()
    try:
        for url, db in ((f"redis://:s3cret@127.0.0.1:{server.port}/3", 3),
                        (f"redis://default:s3cret@127.0.0.1:{server.port}/2", 2)):
            store = open_async_store(url)
            assert isinstance(store.driver, FastAsyncRedisDriver)
            assert await store.run(set_then_get("k", f"db{db}")) == f"db{db}"
            await store.close()
            assert redis.Redis(port=server.port, password="s3cret", db=db).get("k") == f"db{db}".encode()
        wrong = open_async_store(f"redis://:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(StoreUnavailable):
            await wrong.run(set_then_get("k", "v"))
        await wrong.close()
    finally:
        server.cleanup()


async def test_hung_server_times_out_then_recovers() -> None:
    server = RedisServer().start()
    try:
        store = open_async_store(server.url + "?socket_timeout=0.5")
        assert await store.run(set_then_get("k", "1")) == "1"
        server.signal(signal.SIGSTOP)
        started = time.monotonic()
        results = await asyncio.gather(*(store.run(set_then_get(f"k{i}", "x")) for i in range(20)),
                                       return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results)
        assert time.monotonic() - started < 2.0  # bounded by the timeout, not piled up
        server.signal(signal.SIGCONT)
        assert await store.run(set_then_get("k", "2")) == "2"  # a new connection
        await store.close()
    finally:
        server.cleanup()


async def test_restarted_server() -> None:
    server = RedisServer().start()
    try:
        store = open_async_store(server.url)
        assert await store.run(set_then_get("k", "1")) == "1"
        server.kill()
        with pytest.raises(StoreUnavailable):
            await store.run(set_then_get("k", "2"))
        server.start()
        for _ in range(50):  # the first command after the restart may still find the dead connection
            try:
                assert await store.run(set_then_get("k", "3")) == "3"
                break
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("never reconnected")
        await store.close()
    finally:
        server.cleanup()


def test_on_uvloop() -> None:
    """uvicorn picks uvloop when it is installed (uvicorn[standard]); its transports are not asyncio.Transport
    subclasses, and the driver once refused them (every update answered 911)."""
    server = RedisServer().start()

    async def scenario() -> list[str]:
        store = open_async_store(server.url)
        assert isinstance(store.driver, FastAsyncRedisDriver)
        try:
            # concurrent callers share the one pipelined connection
            return list(await asyncio.gather(*(store.run(set_then_get(f"k{i}", str(i))) for i in range(50))))
        finally:
            await store.close()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert runner.get_loop().__class__.__module__.startswith("uvloop")
            assert runner.run(scenario()) == [str(i) for i in range(50)]
    finally:
        server.cleanup()


async def test_writes_at_once_when_idle_and_coalesces_while_busy() -> None:
    """A command to an idle connection leaves at once (Redis starts while we parse the next request); while
    replies are outstanding, commands queue and leave together at the end of the loop iteration."""
    import hiredis

    server = RedisServer().start()
    try:
        store = open_async_store(server.url)
        driver = store.driver
        assert isinstance(driver, FastAsyncRedisDriver)
        assert await store.run(set_then_get("k", "1")) == "1"  # connected
        conn = driver._conn
        assert conn is not None
        first = conn.send_one(hiredis.pack_command(("INCR", "n")))
        assert conn.outbox == []  # written already
        second = conn.send_one(hiredis.pack_command(("INCR", "n")))
        third = conn.send_one(hiredis.pack_command(("INCR", "n")))
        assert len(conn.outbox) == 2  # the first is in flight: these wait for one write
        assert [await first, await second, await third] == [1, 2, 3]
        assert conn.outbox == []
        await store.close()
    finally:
        server.cleanup()


def test_one_driver_from_loop_after_loop() -> None:
    """The connection belongs to the loop that opened it; a later loop (asyncio.run again, a test runner's
    next loop) gets its own. (One loop at a time: an AsyncStore is not shared by loops running at once.)"""
    server = RedisServer().start()
    store = open_async_store(server.url)
    driver = store.driver
    assert isinstance(driver, FastAsyncRedisDriver)
    try:
        assert asyncio.run(store.run(set_then_get("a", "1"))) == "1"
        first = driver._conn
        assert first is not None and not first.current()  # its loop has stopped
        assert asyncio.run(store.run(set_then_get("a", "2"))) == "2"
        assert driver._conn is not first
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert runner.run(store.run(set_then_get("a", "3"))) == "3"
            assert runner.run(store.run(set_then_get("a", "4"))) == "4"  # the same connection, still current
    finally:
        server.cleanup()


async def test_a_cancelled_caller_does_not_shift_the_replies() -> None:
    """Replies are matched to callers in order; a caller cancelled while its command is in flight leaves its
    reply to be read and dropped, so the next caller gets its own."""
    server = RedisServer().start()
    try:
        store = open_async_store(server.url)
        await store.run(set_then_get("k", "0"))
        slow = asyncio.ensure_future(store.run(set_then_get("slow", "mine")))
        await asyncio.sleep(0)  # its SET is written
        slow.cancel()
        results = await asyncio.gather(*(store.run(set_then_get(f"k{i}", str(i))) for i in range(20)))
        assert results == [str(i) for i in range(20)]
        assert slow.cancelled()
        await store.close()
    finally:
        server.cleanup()
