"""A small in-process Redis: the data model and command semantics the project uses.

Replies are RESP-shaped (int, str, None, list, ``OK``) so that Lua scripts (run by
lupa, see ``memory.py``) see exactly what they would see on a real server. Keys
expire lazily on access and in small sweeps, as Redis does.
"""

from __future__ import annotations

import fnmatch
import random
import time
from collections.abc import Callable
from typing import Any

from .effects import StoreResponseError

Reply = Any
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StoreResponseError("ERR value is not an integer or out of range") from None


class MiniRedis:
    """Not thread-safe by itself: ``MemoryDriver`` serialises every call with a lock."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.expires: dict[str, int] = {}
        self._commands: dict[str, Callable[[list[str]], Reply]] = {
            name[4:].upper(): getattr(self, name) for name in dir(self) if name.startswith("cmd_")
        }

    def call(self, args: list[Any]) -> Reply:
        if not args:
            raise StoreResponseError("ERR empty command")
        name = str(args[0]).upper()
        handler = self._commands.get(name)
        if handler is None:
            raise StoreResponseError(f"ERR unknown command '{name}'")
        self._sweep()
        return handler([_arg(a) for a in args[1:]])

    # -- keyspace -------------------------------------------------------------
    def _alive(self, key: str) -> bool:
        deadline = self.expires.get(key)
        if deadline is not None and deadline <= _now_ms():
            self.data.pop(key, None)
            self.expires.pop(key, None)
        return key in self.data

    def _sweep(self) -> None:
        # Redis' active expiry: sample a few keys with a TTL each call.
        if self.expires and random.random() < 0.05:
            for key in random.sample(list(self.expires), min(20, len(self.expires))):
                self._alive(key)

    def _get(self, key: str, kind: type) -> Any:
        if not self._alive(key):
            return None
        value = self.data[key]
        if not isinstance(value, kind):
            raise StoreResponseError(WRONGTYPE)
        return value

    def _get_or_new(self, key: str, kind: type) -> Any:
        value = self._get(key, kind)
        if value is None:
            value = kind()
            self.data[key] = value
        return value

    def _drop_if_empty(self, key: str) -> None:
        if key in self.data and not self.data[key]:
            self._delete(key)

    def _delete(self, key: str) -> int:
        alive = self._alive(key)
        self.data.pop(key, None)
        self.expires.pop(key, None)
        return int(alive)

    def cmd_del(self, a: list[str]) -> int:
        return sum(self._delete(k) for k in a)

    cmd_unlink = cmd_del

    def cmd_exists(self, a: list[str]) -> int:
        return sum(int(self._alive(k)) for k in a)

    def cmd_type(self, a: list[str]) -> str:
        if not self._alive(a[0]):
            return "none"
        names: dict[type, str] = {str: "string", dict: "hash", set: "set", list: "list"}
        return names[type(self.data[a[0]])]

    def cmd_pexpire(self, a: list[str]) -> int:
        if not self._alive(a[0]):
            return 0
        self.expires[a[0]] = _now_ms() + _int(a[1])
        return 1

    def cmd_expire(self, a: list[str]) -> int:
        return self.cmd_pexpire([a[0], str(_int(a[1]) * 1000)])

    def cmd_persist(self, a: list[str]) -> int:
        return int(self._alive(a[0]) and self.expires.pop(a[0], None) is not None)

    def cmd_pttl(self, a: list[str]) -> int:
        if not self._alive(a[0]):
            return -2
        deadline = self.expires.get(a[0])
        return -1 if deadline is None else max(0, deadline - _now_ms())

    def cmd_ttl(self, a: list[str]) -> int:
        ms = self.cmd_pttl(a)
        return ms if ms < 0 else (ms + 500) // 1000

    def cmd_scan(self, a: list[str]) -> list[Any]:
        opts = _options(a[1:])
        pattern = opts.get("MATCH", "*")
        keys = [k for k in list(self.data) if self._alive(k) and fnmatch.fnmatchcase(k, pattern)]
        return ["0", sorted(keys)]

    def cmd_dbsize(self, a: list[str]) -> int:
        return sum(1 for k in list(self.data) if self._alive(k))

    def cmd_flushall(self, a: list[str]) -> str:
        self.data.clear()
        self.expires.clear()
        return "OK"

    def cmd_ping(self, a: list[str]) -> str:
        return "PONG"

    # -- strings --------------------------------------------------------------
    def cmd_get(self, a: list[str]) -> str | None:
        return self._get(a[0], str)  # type: ignore[no-any-return]

    def cmd_set(self, a: list[str]) -> str | None:
        key, value, opts = a[0], a[1], _options(a[2:])
        exists = self._alive(key)
        if ("NX" in opts and exists) or ("XX" in opts and not exists):
            return None
        ttl = _int(opts["PX"]) if "PX" in opts else _int(opts["EX"]) * 1000 if "EX" in opts else None
        keep = "KEEPTTL" in opts
        self.data[key] = value
        if ttl is not None:
            self.expires[key] = _now_ms() + ttl
        elif not keep:
            self.expires.pop(key, None)
        return "OK"

    def cmd_incrby(self, a: list[str]) -> int:
        current = self._get(a[0], str)
        value = _int(current if current is not None else 0) + _int(a[1])
        self.data[a[0]] = str(value)
        return value

    def cmd_incr(self, a: list[str]) -> int:
        return self.cmd_incrby([a[0], "1"])

    def cmd_decr(self, a: list[str]) -> int:
        return self.cmd_incrby([a[0], "-1"])

    def cmd_mget(self, a: list[str]) -> list[str | None]:
        return [v if isinstance(v := self._get_any(k), str) else None for k in a]

    def _get_any(self, key: str) -> Any:
        return self.data[key] if self._alive(key) else None

    # -- hashes ---------------------------------------------------------------
    def cmd_hset(self, a: list[str]) -> int:
        if len(a) < 3 or len(a) % 2 == 0:
            raise StoreResponseError("ERR wrong number of arguments for 'hset' command")
        h = self._get_or_new(a[0], dict)
        added = 0
        for i in range(1, len(a), 2):
            added += a[i] not in h
            h[a[i]] = a[i + 1]
        return added

    def cmd_hsetnx(self, a: list[str]) -> int:
        h = self._get_or_new(a[0], dict)
        if a[1] in h:
            return 0
        h[a[1]] = a[2]
        return 1

    def cmd_hget(self, a: list[str]) -> str | None:
        h = self._get(a[0], dict)
        return None if h is None else h.get(a[1])

    def cmd_hmget(self, a: list[str]) -> list[str | None]:
        h = self._get(a[0], dict) or {}
        return [h.get(f) for f in a[1:]]

    def cmd_hgetall(self, a: list[str]) -> list[str]:
        h = self._get(a[0], dict) or {}
        return [x for pair in h.items() for x in pair]

    def cmd_hdel(self, a: list[str]) -> int:
        h = self._get(a[0], dict)
        if h is None:
            return 0
        removed = sum(1 for f in a[1:] if h.pop(f, None) is not None)
        self._drop_if_empty(a[0])
        return removed

    def cmd_hexists(self, a: list[str]) -> int:
        h = self._get(a[0], dict)
        return int(h is not None and a[1] in h)

    def cmd_hlen(self, a: list[str]) -> int:
        return len(self._get(a[0], dict) or {})

    def cmd_hkeys(self, a: list[str]) -> list[str]:
        return list(self._get(a[0], dict) or {})

    def cmd_hincrby(self, a: list[str]) -> int:
        h = self._get_or_new(a[0], dict)
        value = _int(h.get(a[1], 0)) + _int(a[2])
        h[a[1]] = str(value)
        return value

    # -- sets -----------------------------------------------------------------
    def cmd_sadd(self, a: list[str]) -> int:
        s = self._get_or_new(a[0], set)
        before = len(s)
        s.update(a[1:])
        return len(s) - before

    def cmd_srem(self, a: list[str]) -> int:
        s = self._get(a[0], set)
        if s is None:
            return 0
        before = len(s)
        s.difference_update(a[1:])
        self._drop_if_empty(a[0])
        return before - len(s)

    def cmd_smembers(self, a: list[str]) -> list[str]:
        return sorted(self._get(a[0], set) or ())

    def cmd_sismember(self, a: list[str]) -> int:
        return int(a[1] in (self._get(a[0], set) or ()))

    def cmd_scard(self, a: list[str]) -> int:
        return len(self._get(a[0], set) or ())

    # -- lists ----------------------------------------------------------------
    def cmd_lpush(self, a: list[str]) -> int:
        lst = self._get_or_new(a[0], list)
        for v in a[1:]:
            lst.insert(0, v)
        return len(lst)

    def cmd_rpush(self, a: list[str]) -> int:
        lst = self._get_or_new(a[0], list)
        lst.extend(a[1:])
        return len(lst)

    def cmd_lrange(self, a: list[str]) -> list[str]:
        lst = self._get(a[0], list) or []
        start, stop = _span(len(lst), _int(a[1]), _int(a[2]))
        return list(lst[start:stop])

    def cmd_ltrim(self, a: list[str]) -> str:
        lst = self._get(a[0], list)
        if lst is not None:
            start, stop = _span(len(lst), _int(a[1]), _int(a[2]))
            lst[:] = lst[start:stop]
            self._drop_if_empty(a[0])
        return "OK"

    def cmd_llen(self, a: list[str]) -> int:
        return len(self._get(a[0], list) or [])

    def cmd_lindex(self, a: list[str]) -> str | None:
        lst = self._get(a[0], list) or []
        i = _int(a[1])
        return lst[i] if -len(lst) <= i < len(lst) else None

    def cmd_lrem(self, a: list[str]) -> int:
        lst = self._get(a[0], list)
        if lst is None:
            return 0
        count, value = _int(a[1]), a[2]
        positions = [i for i, v in enumerate(lst) if v == value]
        if count < 0:
            positions.reverse()
        chosen = positions[: abs(count)] if count else positions
        for i in sorted(chosen, reverse=True):
            del lst[i]
        self._drop_if_empty(a[0])
        return len(chosen)


def _arg(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _options(args: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i].upper()
        if word in ("PX", "EX", "MATCH", "COUNT", "TYPE"):
            if i + 1 >= len(args):
                raise StoreResponseError("ERR syntax error")
            opts[word] = args[i + 1]
            i += 2
        else:
            opts[word] = ""
            i += 1
    return opts


def _span(length: int, start: int, stop: int) -> tuple[int, int]:
    if start < 0:
        start = max(0, length + start)
    stop = length + stop if stop < 0 else stop
    return start, max(start, stop + 1)
