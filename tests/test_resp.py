"""Script calls encoded ahead (``store.resp``) are the bytes hiredis makes of the whole command, and the lean
driver runs them against a real Redis: its reply, its errors, and a server that lost its script cache."""

from __future__ import annotations

from typing import Any

import hiredis
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from mfa_middleware.store import StoreResponseError, open_async_store
from mfa_middleware.store.effects import Script
from mfa_middleware.store.fast_driver import FastAsyncRedisDriver
from mfa_middleware.store.resp import evalsha, evalsha_head

ECHO = Script("resp_echo", "redis.call('SET', KEYS[1], ARGV[1]); return {KEYS[1], unpack(ARGV)}")
FAILS = Script("resp_fails", "return redis.error_reply('ERR made to fail')")

argument = st.one_of(st.text(max_size=40), st.integers(-10**12, 10**12),
                     st.text(alphabet="abc\r\n$*\x00\u00e9\u4e2d\U0001f600", max_size=12))


@given(st.lists(st.text(max_size=20), max_size=8), st.lists(argument, max_size=12),
       st.lists(argument, max_size=12))
def test_the_encoded_call_is_the_whole_command_packed(keys: list[str], head_args: list[object],
                                                      call_args: list[object]) -> None:
    head = evalsha_head(ECHO, tuple(keys), tuple(head_args))
    whole: tuple[Any, ...] = ("EVALSHA", ECHO.sha, len(keys), *keys, *head_args, *call_args)
    assert evalsha(head, 3 + len(keys) + len(head_args), tuple(call_args)) == hiredis.pack_command(whole)


def _echo_command(key: str, *args: str) -> bytes:
    return evalsha(evalsha_head(ECHO, (key,), args[:1]), 5, args[1:])


async def test_the_driver_sends_it_and_reloads_a_lost_script(redis_url: str) -> None:
    store = open_async_store(redis_url)
    driver = store.driver
    assert isinstance(driver, FastAsyncRedisDriver)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.script_flush()
        # Not loaded: NOSCRIPT, then SCRIPT LOAD, then the command again (run once: SET took effect once).
        assert await driver.execute_packed(ECHO, _echo_command("resp:k", "v\u00e9", "2", "")) == \
            ["resp:k", "v\u00e9", "2", ""]
        assert client.get("resp:k") == "v\u00e9" and client.script_exists(ECHO.sha) == [True]
        assert await driver.execute_packed(ECHO, _echo_command("resp:k", "w")) == ["resp:k", "w"]
        client.script_flush()  # a restart or failover loses the cache
        assert await driver.execute_packed(ECHO, _echo_command("resp:k", "x")) == ["resp:k", "x"]
        with pytest.raises(StoreResponseError, match="made to fail"):
            await driver.execute_packed(FAILS, evalsha(evalsha_head(FAILS, (), ()), 3, ()))
        # Replies still match their commands after an error.
        assert await driver.execute_packed(ECHO, _echo_command("resp:k", "z")) == ["resp:k", "z"]
        assert client.get("resp:k") == "z"
    finally:
        client.close()
        await store.close()
