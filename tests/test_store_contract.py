"""One contract, four drivers: memory and a real redis-server, each blocking and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mfa_middleware.store import AsyncStore, Keys, MemoryStore, Op, Store, open_async_store, open_store, scripts
from mfa_middleware.store.effects import Eval, Offload, Script, StoreResponseError, batch, cmd
from mfa_middleware.store.redis_driver import AsyncRedisDriver
from mfa_middleware.store.url import parse_store_url


class Runner:
    """Runs ops on a blocking or async store with one async-looking API for the tests."""

    def __init__(self, store: Store | AsyncStore) -> None:
        self.store = store
        self.keys = store.keys

    async def run(self, op: Op[Any]) -> Any:
        if isinstance(self.store, AsyncStore):
            return await self.store.run(op)
        return self.store.run(op)

    async def concurrently(self, n: int, make: Callable[[], Op[Any]]) -> list[Any]:
        if isinstance(self.store, AsyncStore):
            return list(await asyncio.gather(*(self.store.run(make()) for _ in range(n))))
        store = self.store
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(lambda _: store.run(make()), range(n)))


# redis-async is the lean driver (plain redis://); redispy-async is redis-py's asyncio client, which the
# store uses for TLS, unix sockets, Sentinel and Cluster.
DRIVERS = ["memory-sync", "memory-async", "redis-sync", "redis-async", "redispy-async"]


@pytest.fixture(params=DRIVERS)
async def runner(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    kind, mode = request.param.split("-")
    url = request.getfixturevalue("redis_url") if kind.startswith("redis") else None
    memory = MemoryStore()
    store: Store | AsyncStore = (
        open_store(url, prefix="t", memory=memory) if mode == "sync"
        else AsyncStore(AsyncRedisDriver(parse_store_url(url)), Keys("t")) if kind == "redispy"
        else open_async_store(url, prefix="t", memory=memory)
    )
    yield Runner(store)
    if isinstance(store, AsyncStore):
        await store.close()
    else:
        store.close()


def one(*args: Any) -> Op[Any]:
    return (yield cmd(*args))


def ev(e: Eval) -> Op[Any]:
    return (yield e)


async def test_strings_and_ttl(runner: Runner) -> None:
    assert await runner.run(one("GET", "t:s")) is None
    assert await runner.run(one("SET", "t:s", "v")) is True
    assert await runner.run(one("SET", "t:s", "w", "NX")) is None
    assert await runner.run(one("GET", "t:s")) == "v"
    assert await runner.run(one("SET", "t:x", "1", "PX", 150)) is True
    assert 0 < await runner.run(one("PTTL", "t:x")) <= 150
    assert await runner.run(one("TTL", "t:s")) == -1
    assert await runner.run(one("TTL", "t:none")) == -2
    await asyncio.sleep(0.25)
    assert await runner.run(one("GET", "t:x")) is None
    assert await runner.run(one("EXISTS", "t:x", "t:s")) == 1
    assert await runner.run(one("INCRBY", "t:n", 5)) == 5
    assert await runner.run(one("INCR", "t:n")) == 6
    assert await runner.run(one("EXPIRE", "t:n", 10)) is True
    assert await runner.run(one("EXPIRE", "t:missing", 10)) is False
    assert await runner.run(one("DEL", "t:n", "t:s", "t:missing")) == 2


async def test_hashes_sets_lists(runner: Runner) -> None:
    assert await runner.run(one("HSET", "t:h", "a", "1", "b", "2")) == 2
    assert await runner.run(one("HGETALL", "t:h")) == {"a": "1", "b": "2"}
    assert await runner.run(one("HGET", "t:h", "a")) == "1"
    assert await runner.run(one("HMGET", "t:h", "a", "zz")) == ["1", None]
    assert await runner.run(one("HSETNX", "t:h", "a", "9")) == 0
    assert await runner.run(one("HINCRBY", "t:h", "c", 3)) == 3
    assert await runner.run(one("HEXISTS", "t:h", "c")) is True
    assert await runner.run(one("HDEL", "t:h", "a", "b", "c")) == 3
    assert await runner.run(one("EXISTS", "t:h")) == 0  # empty hashes vanish, as in Redis
    assert await runner.run(one("HGETALL", "t:h")) == {}
    assert await runner.run(one("SADD", "t:set", "x", "y", "x")) == 2
    assert await runner.run(one("SMEMBERS", "t:set")) == {"x", "y"}
    assert await runner.run(one("SISMEMBER", "t:set", "x")) in (True, 1)
    assert await runner.run(one("SREM", "t:set", "x", "q")) == 1
    assert await runner.run(one("SCARD", "t:set")) == 1
    for i in range(5):
        await runner.run(one("LPUSH", "t:l", str(i)))
    assert await runner.run(one("LTRIM", "t:l", 0, 2)) is True
    assert await runner.run(one("LRANGE", "t:l", 0, -1)) == ["4", "3", "2"]
    assert await runner.run(one("LINDEX", "t:l", 0)) == "4"
    assert await runner.run(one("LINDEX", "t:l", -1)) == "2"
    assert await runner.run(one("LINDEX", "t:l", 7)) is None
    await runner.run(one("RPUSH", "t:l", "4", "3"))
    assert await runner.run(one("LREM", "t:l", 1, "3")) == 1
    assert await runner.run(one("LRANGE", "t:l", 0, -1)) == ["4", "2", "4", "3"]
    assert await runner.run(one("LREM", "t:l", -1, "4")) == 1
    assert await runner.run(one("LREM", "t:l", 0, "missing")) == 0
    assert await runner.run(one("LRANGE", "t:l", 0, -1)) == ["4", "2", "3"]
    with pytest.raises(StoreResponseError):
        await runner.run(one("HGET", "t:l", "x"))  # WRONGTYPE


async def test_batch_and_offload(runner: Runner) -> None:
    def op() -> Op[Any]:
        results = yield batch([cmd("SET", "t:a", "1"), cmd("INCR", "t:a"), scripts.count("t:c", 2, 1000)])
        doubled = yield Offload(lambda: results[1] * 2)
        return results, doubled

    results, doubled = await runner.run(op())
    assert results[0] is True and results[1] == 2 and results[2][0] == 2 and doubled == 4


async def test_batch_meeting_an_empty_script_cache_runs_each_step_once(runner: Runner) -> None:
    """A server that lost its script cache (restart, failover, or another process's SCRIPT LOAD landing in the
    middle of a batch) refuses EVALSHA with NOSCRIPT: only those steps run again, never the whole batch."""
    unique = str(time.time_ns())  # in the source too: a digest no server has cached
    fresh = Script("fresh-" + unique, f"-- {unique}\nreturn redis.call('INCR', KEYS[1])")

    def op() -> Op[Any]:
        return (yield batch([cmd("INCR", "t:once"), Eval(fresh, ("t:script",)), cmd("INCR", "t:once")]))

    assert await runner.run(op()) == [1, 1, 2]
    assert await runner.run(one("GET", "t:once")) == "2"
    assert await runner.run(one("GET", "t:script")) == "1"
    # and the script is cached now: the next batch takes the EVALSHA path
    assert await runner.run(op()) == [3, 2, 4]


async def test_script_errors_are_store_errors(runner: Runner) -> None:
    broken = Script("broken", "return redis.call('NOSUCHCOMMAND')")
    with pytest.raises(StoreResponseError):
        await runner.run(ev(Eval(broken, ())))


async def test_script_reply_conversion(runner: Runner) -> None:
    s = Script("shapes", "return {1, 'two', false, 3.9, {4}}")
    assert await runner.run(ev(Eval(s, ()))) == [1, "two", None, 3, [4]]
    assert await runner.run(ev(Eval(Script("nil", "return nil"), ()))) is None
    assert await runner.run(ev(Eval(Script("st", "return redis.status_reply('FINE')"), ()))) == "FINE"


async def test_count_window_expires(runner: Runner) -> None:
    n, ttl = await runner.run(ev(scripts.count("t:w", 1, 200)))
    assert n == 1 and 0 < ttl <= 200
    n, _ = await runner.run(ev(scripts.count("t:w", 1, 200)))
    assert n == 2
    await asyncio.sleep(0.3)
    n, _ = await runner.run(ev(scripts.count("t:w", 1, 200)))
    assert n == 1


async def test_compare_and_set(runner: Runner) -> None:
    assert await runner.run(ev(scripts.compare_and_set("t:h", "f", None, "a"))) == 1
    assert await runner.run(ev(scripts.compare_and_set("t:h", "f", None, "b"))) == 0
    assert await runner.run(ev(scripts.compare_and_set("t:h", "f", "a", "b"))) == 1
    assert await runner.run(one("HGET", "t:h", "f")) == "b"


async def test_advance_is_monotonic(runner: Runner) -> None:
    assert await runner.run(ev(scripts.advance("t:h", "step", 10))) == 1
    assert await runner.run(ev(scripts.advance("t:h", "step", 10))) == 0
    assert await runner.run(ev(scripts.advance("t:h", "step", 9))) == 0
    assert await runner.run(ev(scripts.advance("t:h", "step", 11))) == 1


# -- exactly-once under 50 concurrent callers ---------------------------------------
async def test_consume_once_under_concurrency(runner: Runner) -> None:
    await runner.run(one("HSET", "t:codes", "c1", "payload"))
    results = await runner.concurrently(50, lambda: ev(scripts.consume("t:codes", "c1")))
    assert results.count("payload") == 1 and results.count(None) == 49


async def test_compare_and_set_under_concurrency(runner: Runner) -> None:
    results = await runner.concurrently(50, lambda: ev(scripts.compare_and_set("t:h", "owner", None, "me")))
    assert sum(results) == 1


async def test_advance_under_concurrency(runner: Runner) -> None:
    results = await runner.concurrently(50, lambda: ev(scripts.advance("t:h", "step", 42)))
    assert sum(results) == 1


async def test_count_under_concurrency(runner: Runner) -> None:
    results = await runner.concurrently(50, lambda: ev(scripts.count("t:ctr", 1, 60_000)))
    assert sorted(r[0] for r in results) == list(range(1, 51))


async def test_set_nx_under_concurrency(runner: Runner) -> None:
    results = await runner.concurrently(50, lambda: one("SET", "t:claim", "x", "NX"))
    assert results.count(True) == 1


# -- key prefixes -------------------------------------------------------------------
async def test_key_layout_and_prefix_isolation(runner: Runner) -> None:
    a, b = Keys("one"), Keys("two")
    assert a.account("alice") == "one:{a:alice}:account"
    assert a.account("alice", "x").split("}")[0] == a.account("alice").split("}")[0]  # one hash tag
    await runner.run(one("SET", a.shared("k"), "A"))
    await runner.run(one("SET", b.shared("k"), "B"))
    assert await runner.run(one("GET", a.shared("k"))) == "A"
    _, found = await runner.run(one("SCAN", 0, "MATCH", a.pattern(), "COUNT", 1000))
    assert found == [a.shared("k")]


def test_memory_store_is_shared_between_sync_and_async() -> None:
    memory = MemoryStore()
    sync = open_store(None, memory=memory)
    sync.run(one("SET", "k", "v"))
    assert asyncio.run(open_async_store(None, memory=memory).run(one("GET", "k"))) == "v"


def test_memory_ttl_sweep_frees_memory() -> None:
    memory = MemoryStore()
    store = open_store(None, memory=memory)
    for i in range(200):
        store.run(one("SET", f"k{i}", "v", "PX", 1))
    time.sleep(0.01)
    for _ in range(400):
        store.run(one("PING"))
    assert len(memory.server.data) < 200


# -- passkeys (WebAuthn): the same steps on every driver ----------------------------
def _passkeys(runner: Runner, clock: Callable[[], float] = time.time) -> Any:
    from mfa_middleware.backup_codes import BackupCodeHasher
    from mfa_middleware.crypto import SeedCipher
    from mfa_middleware.passkeys import Passkeys, RelyingParty
    from mfa_middleware.passwords import FAST, PasswordHasher
    from mfa_middleware.twofactor import ThrottlePolicy, TwoFactor

    tf = TwoFactor(runner.keys, SeedCipher(["contract-encryption-key-0123"]), BackupCodeHasher(b"k" * 32),
                   PasswordHasher(FAST), throttle=ThrottlePolicy(free_failures=1000), clock=clock)
    return Passkeys(runner.keys, tf, RelyingParty(None, None, "preferred", "t"), b"u" * 32, clock)


def _attempt(op: Op[Any]) -> Op[Any]:
    """``op``'s result, or the PasskeyError it raised (as a value: concurrent callers are counted)."""
    from mfa_middleware.passkeys import PasskeyError

    try:
        return (yield from op)
    except PasskeyError as exc:
        return exc


async def _register(runner: Runner, pk: Any, account: str, auth: Any, sid: str = "s1") -> Any:
    options = await runner.run(pk.registration_options(account, sid, "localhost", account, "key"))
    return await runner.run(_attempt(pk.register(account, sid, "localhost", ["http://localhost"],
                                                 auth.create(options))))


async def test_passkey_steps(runner: Runner) -> None:
    from mfa_middleware.passkeys import Added, PasskeyError
    from tests.soft_authenticator import SoftAuthenticator

    now = [time.time()]
    pk = _passkeys(runner, lambda: now[0])
    auth = SoftAuthenticator()
    added = await _register(runner, pk, "alice", auth)
    assert isinstance(added, Added) and added.turned_on and len(added.codes) == 10
    assert [p.name for p in await runner.run(pk.list("alice"))] == ["key"]
    status = await runner.run(pk.twofactor.status("alice"))
    assert status.enabled and status.passkeys == 1 and not status.totp and status.backup_codes_left == 10

    async def login(sid: str = "s2", **lie: Any) -> Any:
        options = await runner.run(pk.authentication_options("alice", sid, "localhost"))
        return await runner.run(_attempt(pk.authenticate("alice", sid, "localhost", ["http://localhost"],
                                                         auth.get(options, **lie))))

    assert await login() == auth.id
    assert isinstance(await login(sign_count=1), PasskeyError)  # the counter went back
    options = await runner.run(pk.authentication_options("alice", "s2", "localhost"))
    now[0] += 301  # past the challenge's 5 minutes
    late = await runner.run(_attempt(pk.authenticate("alice", "s2", "localhost", ["http://localhost"],
                                                     auth.get(options))))
    assert isinstance(late, PasskeyError) and late.code == "challenge"
    assert await login() == auth.id
    assert await runner.run(pk.rename("alice", auth.id, "blue")) is True
    assert await runner.run(pk.rename("alice", "nope", "blue")) is False
    assert await runner.run(pk.remove("alice", auth.id)) == (2, added.epoch + 1)  # the last factor: 2FA off
    status = await runner.run(pk.twofactor.status("alice"))
    assert not status.enabled and status.passkeys == 0 and status.backup_codes_left == 0


async def test_one_assertion_once_under_concurrency(runner: Runner) -> None:
    from tests.soft_authenticator import SoftAuthenticator

    pk, auth = _passkeys(runner), SoftAuthenticator()
    await _register(runner, pk, "alice", auth)
    options = await runner.run(pk.authentication_options("alice", "s2", "localhost"))
    answer = auth.get(options)
    results = await runner.concurrently(50, lambda: _attempt(pk.authenticate(
        "alice", "s2", "localhost", ["http://localhost"], answer)))
    assert results.count(auth.id) == 1


async def test_a_credential_id_goes_to_one_account_under_concurrency(runner: Runner) -> None:
    from mfa_middleware.passkeys import Added
    from tests.soft_authenticator import SoftAuthenticator

    pk = _passkeys(runner)
    shared = SoftAuthenticator().credential_id
    accounts = [f"user{i}" for i in range(10)]
    pending = []
    for account in accounts:
        auth = SoftAuthenticator(credential_id=shared)
        options = await runner.run(pk.registration_options(account, "s", "localhost", account, "key"))
        pending.append((account, auth.create(options)))
    answers = iter(pending)
    results = await runner.concurrently(10, lambda: (lambda a: _attempt(pk.register(
        a[0], "s", "localhost", ["http://localhost"], a[1])))(next(answers)))
    assert sum(isinstance(r, Added) for r in results) == 1
    # Disabling 2FA frees the id: another account may register it then.
    holders = [a for a in accounts if await runner.run(pk.list(a))]
    assert len(holders) == 1
    await runner.run(pk.twofactor.disable(holders[0]))
    assert isinstance(await _register(runner, pk, "newcomer", SoftAuthenticator(credential_id=shared)), Added)


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def replicated_url(request: pytest.FixtureRequest) -> Any:
    from tests.servers import RedisCluster, RedisSentinelSetup

    server: Any = RedisCluster().start() if request.param == "cluster" else RedisSentinelSetup().start()
    try:
        yield server.url
    finally:
        server.cleanup()


async def test_passkey_steps_on_cluster_and_sentinel(replicated_url: str) -> None:
    """The passkey scripts keep to one slot each (the account's hash tag; a credential id's owner alone in
    its own), so Redis Cluster runs them; Sentinel's primary the same."""
    for store in (open_store(replicated_url, prefix="pk0"), open_async_store(replicated_url, prefix="pk1")):
        runner = Runner(store)
        try:
            await test_passkey_steps(runner)
            await test_one_assertion_once_under_concurrency(runner)
            await test_a_credential_id_goes_to_one_account_under_concurrency(runner)
        finally:
            await store.close() if isinstance(store, AsyncStore) else store.close()
