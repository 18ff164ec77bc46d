"""The embedded in-memory store: the default for ``make run`` and a product feature.

Commands run against ``MiniRedis``; Lua scripts run under lupa with ``redis.call``
bridged to the same ``MiniRedis``, so the *same* script source gives the same atomic
semantics here as on a Redis server. One lock serialises everything, which is what
makes each script atomic across threads and tasks alike.
"""

from __future__ import annotations

import threading
from typing import Any

from .effects import Cmd, Eval, Script, StoreResponseError
from .minired import MiniRedis


def _lua_runtime() -> Any:
    # Redis embeds Lua 5.1; prefer the same dialect when lupa was built with it.
    try:
        from lupa import lua51 as lupa_mod  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the lupa wheel
        import lupa as lupa_mod
    return lupa_mod.LuaRuntime(encoding="utf-8", unpack_returned_tuples=False)


class _LuaBridge:
    def __init__(self, server: MiniRedis) -> None:
        self._lua = _lua_runtime()
        self._server = server
        self._compiled: dict[str, Any] = {}
        redis_table = self._lua.eval("{}")
        redis_table["call"] = self._call
        redis_table["pcall"] = self._pcall
        redis_table["status_reply"] = lambda s: self._lua.table_from({"ok": s})
        redis_table["error_reply"] = lambda s: self._lua.table_from({"err": s})
        self._lua.globals()["redis"] = redis_table

    def _call(self, *args: Any) -> Any:
        return self._to_lua(self._server.call(list(args)))

    def _pcall(self, *args: Any) -> Any:
        try:
            return self._call(*args)
        except StoreResponseError as exc:
            return self._lua.table_from({"err": str(exc)})

    def _to_lua(self, reply: Any) -> Any:
        if reply is None:
            return False
        if reply == "OK":
            return self._lua.table_from({"ok": "OK"})
        if isinstance(reply, list):
            return self._lua.table_from([self._to_lua(x) for x in reply])
        return reply

    def run(self, script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        fn = self._compiled.get(script.sha)
        if fn is None:
            fn = self._lua.eval(f"function(KEYS, ARGV)\n{script.source}\nend")
            self._compiled[script.sha] = fn
        to_table = self._lua.table_from
        try:
            result = fn(to_table([str(k) for k in keys]), to_table([_text(a) for a in args]))
        except StoreResponseError:
            raise
        except Exception as exc:  # a Lua runtime error inside the script
            raise StoreResponseError(f"ERR script {script.name}: {exc}") from exc
        return self._from_lua(result)

    def _from_lua(self, value: Any) -> Any:
        # Redis' Lua-to-reply conversion: numbers truncate, false is nil, tables are arrays.
        if value is None or value is False:
            return None
        if value is True:
            return 1
        if isinstance(value, float):
            return int(value)
        if isinstance(value, int | str):
            return value
        if value["err"] is not None:
            raise StoreResponseError(str(value["err"]))
        if value["ok"] is not None:
            return str(value["ok"])
        out = []
        i = 1
        while value[i] is not None:
            out.append(self._from_lua(value[i]))
            i += 1
        return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


# redis-py (RESP2) reshapes some replies; the memory driver must hand back the same shapes.
def _as_bool(r: Any) -> bool:
    return bool(r)


def _pairs(r: list[str]) -> dict[str, str]:
    return dict(zip(r[0::2], r[1::2], strict=True))


_RESHAPE: dict[str, Any] = {
    "SET": lambda r: True if r == "OK" else None,
    "EXPIRE": _as_bool,
    "PEXPIRE": _as_bool,
    "PERSIST": _as_bool,
    "HEXISTS": _as_bool,
    "SISMEMBER": _as_bool,
    "HGETALL": _pairs,
    "SMEMBERS": set,
    "SCAN": lambda r: (int(r[0]), r[1]),
    "LTRIM": lambda r: r == "OK",
    "FLUSHALL": lambda r: r == "OK",
    "PING": lambda r: r == "PONG",
}


class MemoryStore:
    """State shared by every driver built on it (one per process)."""

    def __init__(self) -> None:
        self.server = MiniRedis()
        self.lock = threading.Lock()
        self.lua = _LuaBridge(self.server)

    def execute(self, step: Cmd | Eval) -> Any:
        with self.lock:
            return self._execute_locked(step)

    def _execute_locked(self, step: Cmd | Eval) -> Any:
        if isinstance(step, Eval):
            return self.lua.run(step.script, step.keys, step.args)
        reply = self.server.call(list(step.args))
        reshape = _RESHAPE.get(str(step.args[0]).upper())
        return reshape(reply) if reshape is not None else reply

    def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        with self.lock:
            return [self._execute_locked(s) for s in steps]


class MemoryDriver:
    """Blocking driver over a ``MemoryStore``."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()

    def execute(self, step: Cmd | Eval) -> Any:
        return self.store.execute(step)

    def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        return self.store.execute_batch(steps)

    def close(self) -> None:
        """Nothing to release."""


class AsyncMemoryDriver:
    """Async driver over a ``MemoryStore``: no I/O, so nothing ever awaits inside the lock."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()

    async def execute(self, step: Cmd | Eval) -> Any:
        return self.store.execute(step)

    async def execute_batch(self, steps: tuple[Cmd | Eval, ...]) -> list[Any]:
        return self.store.execute_batch(steps)

    async def close(self) -> None:
        """Nothing to release."""
