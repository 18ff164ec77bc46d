"""Sub-account groups: a named subset of an account's hosts with its own update login.

Keys: ``{a:ID}:groups`` hash (group name -> login), ``{a:ID}:group:NAME`` hash (login, argon2id ``pw``,
credential version ``ver``, comma-separated ``hosts``, ``created``; only ``login`` while a delete is under way:
a tombstone, see ``DELETE``). The login is claimed in the same
namespace as account usernames (``Keys.login``, value ``group:ACCOUNT:NAME``), so a group login can never
equal a username: the 2FA gate's login, which only knows accounts, refuses it, and the update endpoint
knows which kind of credential it holds. Rotate and delete drop the cached verifier in the same step.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ddns_update.hosts import canonical_host
from mfa_middleware.accounts import normalize_username
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import Keys, Op, cmd
from mfa_middleware.store.effects import Eval, Offload, Script, batch

GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Short and unambiguous when read aloud or typed into a router: no 0/o, 1/l/i.
LOGIN_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
LOGIN_CHARS = 10
PASSWORD_BYTES = 18  # 144 bits, URL-safe text: survives ddclient and inadyn configuration files


class GroupRefused(Exception):
    """A group operation that cannot be done; the message says why (in English, for logs and the CLI);
    ``reason`` and ``params`` let a page say it in the user's language."""

    def __init__(self, message: str, reason: str = "", **params: str) -> None:
        super().__init__(message)
        self.reason, self.params = reason, params


class BadGroupName(ValueError):
    """Not a group name; ``raw`` is what was given."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class Group:
    account_id: str
    name: str
    login: str
    hosts: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"account": self.account_id, "group": self.name, "username": self.login, "hosts": list(self.hosts)}


def group_name(raw: str) -> str:
    name = raw.strip().lower()
    if not GROUP_NAME.fullmatch(name):
        raise BadGroupName(f"group name {raw!r}: use 1-63 of a-z, 0-9, '-' and '_' (no dots, so it is never a host)",
                           raw)
    return name


def claim_value(account_id: str, name: str) -> str:
    return f"group:{account_id}:{name}"


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _new_login() -> str:
    return "g" + "".join(secrets.choice(LOGIN_ALPHABET) for _ in range(LOGIN_CHARS - 1))


# KEYS 1 account, 2 hosts, 3 groups index, 4 group; ARGV name, login, pw hash, now, hosts...
CREATE = Script(
    "ddns_group_create",
    """
if redis.call('HEXISTS', KEYS[1], 'pw') == 0 then return 'noaccount' end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'exists' end
local hosts = {}
for i = 5, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then return 'nohost:' .. ARGV[i] end
  hosts[#hosts + 1] = ARGV[i]
end
redis.call('HSET', KEYS[4], 'login', ARGV[2], 'pw', ARGV[3], 'ver', '1', 'hosts', table.concat(hosts, ','),
  'created', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 'ok'
""",
)

# KEYS 1 hosts, 2 group; ARGV number of hosts to add, hosts to add..., hosts to remove...
SET_HOSTS = Script(
    "ddns_group_hosts",
    """
local list = redis.call('HGET', KEYS[2], 'hosts')
if not list then return 'nogroup' end
local n = tonumber(ARGV[1])
local drop = {}
for i = n + 2, #ARGV do drop[ARGV[i]] = true end
local kept, seen = {}, {}
for h in string.gmatch(list, '[^,]+') do
  if not drop[h] and not seen[h] then kept[#kept + 1] = h; seen[h] = true end
end
for i = 2, n + 1 do
  local h = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], h) == 0 then return 'nohost:' .. h end
  if not seen[h] then kept[#kept + 1] = h; seen[h] = true end
end
redis.call('HSET', KEYS[2], 'hosts', table.concat(kept, ','))
return 'ok:' .. table.concat(kept, ',')
""",
)

# KEYS 1 group, 2 credential cache; ARGV new hash. The old password fails from this step on.
ROTATE = Script(
    "ddns_group_rotate",
    """
local login = redis.call('HGET', KEYS[1], 'login')
if not login or redis.call('HEXISTS', KEYS[1], 'ver') == 0 then return false end
redis.call('HSET', KEYS[1], 'pw', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HDEL', KEYS[2], login)
return login
""",
)

# KEYS 1 groups index, 2 group, 3 credential cache (the verifier and the addresses that proved the login: a
# login made again later starts with none), 4 abuse flags, 5 fault counters; ARGV name.
# Leaves a tombstone (the group hash with only its login): the login claim is in another slot and is
# released in a later step, and a claim pointing at a *missing* group made the update endpoint re-resolve
# until it gave up with 911. A claim pointing at a tombstone answers badauth (scripts.UPDATE); PURGE
# removes the tombstone once the claim is gone. Run again on a tombstone (a retried delete), it goes on.
DELETE = Script(
    "ddns_group_delete",
    """
local login = redis.call('HGET', KEYS[2], 'login')
if not login then return false end
redis.call('HDEL', KEYS[2], 'pw', 'ver', 'hosts', 'created')
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], login)
redis.call('HDEL', KEYS[4], login)
redis.call('HDEL', KEYS[5], login)
redis.call('HDEL', KEYS[3], login .. '\\tseen')
return login
""",
)

# KEYS 1 group; ARGV login. Removes a tombstone (see DELETE), never a live group.
PURGE = Script(
    "ddns_group_purge",
    """
if redis.call('HEXISTS', KEYS[1], 'ver') == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'login') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
""",
)

# KEYS 1 login claim; ARGV value. Deletes the claim only when it is still ours.
RELEASE_LOGIN = Script(
    "ddns_release_login",
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
)


class Groups:
    def __init__(self, keys: Keys, hasher: PasswordHasher) -> None:
        self.keys = keys
        self.hasher = hasher

    def _k(self, account_id: str, part: str) -> str:
        return self.keys.account(account_id, part)

    def create(self, account_id: str, name: str, hosts: Iterable[str],
               login: str | None = None) -> Op[tuple[Group, str]]:
        """The new group and its password (shown once, stored only as an argon2id hash)."""
        name = group_name(name)
        host_list = list(dict.fromkeys(canonical_host(h) for h in hosts))
        claim = claim_value(account_id, name)
        old_login, ver = yield cmd("HMGET", self._k(account_id, "group:" + name), "login", "ver")
        if old_login and not ver:  # a delete of a group of this name was cut off: finish it first
            yield from self._release(account_id, name, old_login)
        if login is not None:
            login = normalize_username(login)
            if "," in login or "#" in login:
                raise ValueError("a group login may not contain ',' or '#'")
            # A claim already ours means an earlier create of this very group was interrupted after the claim
            # (store down): the retry goes on; the CREATE script refuses if the group exists after all.
            if (not (yield cmd("SET", self.keys.login(login), claim, "NX"))
                    and (yield cmd("GET", self.keys.login(login))) != claim):
                raise GroupRefused(f"login {login!r} is taken", "taken", login=login)
        else:
            for _ in range(10):
                login = _new_login()
                if (yield cmd("SET", self.keys.login(login), claim, "NX")):
                    break
            else:  # pragma: no cover - 31^9 logins
                raise GroupRefused("could not find a free login; try again")
        password = new_password()
        pw_hash = yield Offload(lambda: self.hasher.hash(password))
        keys = (self.keys.account(account_id), self._k(account_id, "hosts"), self._k(account_id, "groups"),
                self._k(account_id, "group:" + name))
        outcome = yield Eval(CREATE, keys, (name, login, pw_hash, int(time.time()), *host_list))
        if outcome != "ok":
            yield Eval(RELEASE_LOGIN, (self.keys.login(login),), (claim,))
            raise _refused(outcome, account_id, name)
        return Group(account_id, name, login, tuple(host_list)), password

    def set_hosts(self, account_id: str, name: str, add: Iterable[str] = (),
                  remove: Iterable[str] = ()) -> Op[Group]:
        name = group_name(name)
        adding = [canonical_host(h) for h in add]
        removing = [canonical_host(h) for h in remove]
        keys = (self._k(account_id, "hosts"), self._k(account_id, "group:" + name))
        outcome = yield Eval(SET_HOSTS, keys, (len(adding), *adding, *removing))
        if not outcome.startswith("ok:"):
            raise _refused(outcome, account_id, name)
        login = yield cmd("HGET", self._k(account_id, "group:" + name), "login")
        return Group(account_id, name, login or "", tuple(h for h in outcome[3:].split(",") if h))

    def rotate(self, account_id: str, name: str) -> Op[tuple[str, str]]:
        """(login, new password): the old password fails from the moment this returns."""
        name = group_name(name)
        password = new_password()
        pw_hash = yield Offload(lambda: self.hasher.hash(password))
        login = yield Eval(ROTATE, (self._k(account_id, "group:" + name), self._k(account_id, "cred")), (pw_hash,))
        if not login:
            raise _refused("nogroup", account_id, name)
        return login, password

    def delete(self, account_id: str, name: str) -> Op[str]:
        name = group_name(name)
        keys = (self._k(account_id, "groups"), self._k(account_id, "group:" + name), self._k(account_id, "cred"),
                self._k(account_id, "abuse"), self._k(account_id, "faults"))
        login = yield Eval(DELETE, keys, (name,))
        if not login:
            raise _refused("nogroup", account_id, name)
        yield from self._release(account_id, name, login)
        return str(login)

    def _release(self, account_id: str, name: str, login: str) -> Op[None]:
        """The last steps of a delete: release the login claim (if still this group's), then the tombstone."""
        yield Eval(RELEASE_LOGIN, (self.keys.login(login),), (claim_value(account_id, name),))
        yield Eval(PURGE, (self._k(account_id, "group:" + name),), (login,))

    def list(self, account_id: str) -> Op[list[Group]]:
        index: dict[str, str] = yield cmd("HGETALL", self._k(account_id, "groups"))
        names = sorted(index)
        if not names:
            return []
        rows = yield batch([cmd("HMGET", self._k(account_id, "group:" + n), "login", "hosts") for n in names])
        return [Group(account_id, n, login or "", tuple(h for h in (hosts or "").split(",") if h))
                for n, (login, hosts) in zip(names, rows, strict=True)]


def _refused(outcome: str, account_id: str, name: str) -> GroupRefused:
    reason, _, host = outcome.partition(":")
    return GroupRefused(_explain(outcome, account_id, name), reason, name=name, host=host)


def _explain(outcome: str, account_id: str, name: str) -> str:
    if outcome == "noaccount":
        return f"no account {account_id!r}"
    if outcome == "exists":
        return f"account {account_id} already has a group {name!r}"
    if outcome == "nogroup":
        return f"account {account_id} has no group {name!r}"
    if outcome.startswith("nohost:"):
        return f"host {outcome[7:]} is not one of account {account_id}'s hosts"
    return f"refused: {outcome}"
