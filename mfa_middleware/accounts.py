"""Accounts shared by the 2FA gate and the update endpoint: username + argon2id hash.

Operations are store effects (see ``store.effects``); run them with ``Store.run`` or
``await AsyncStore.run``. Hashing is yielded as ``Offload`` so it never blocks an event loop.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from .passwords import PasswordHasher, clean_password
from .store import Keys, Op
from .store.effects import Eval, Offload, Script, cmd

MAX_USERNAME_CHARS = 254
FORBIDDEN_USERNAME_CHARS = set(":{}/\\\"'<>")


class InvalidUsername(ValueError):
    """A username that cannot be used; the message says why."""


class AccountExists(Exception):
    """The username (or a group login of that name) is taken."""


def normalize_username(raw: str | bytes) -> str:
    """Case-insensitive, NFKC-normalised; e-mail addresses allowed.

    ``:`` is refused because HTTP Basic splits on it; braces because they are Redis
    Cluster hash-tag delimiters in our key names.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidUsername("username is not valid UTF-8") from None
    name = unicodedata.normalize("NFKC", raw).strip().casefold()
    if not name:
        raise InvalidUsername("username is empty")
    if len(name) > MAX_USERNAME_CHARS:
        raise InvalidUsername(f"username is longer than {MAX_USERNAME_CHARS} characters")
    for ch in name:
        if ch in FORBIDDEN_USERNAME_CHARS or ch.isspace() or unicodedata.category(ch)[0] == "C":
            raise InvalidUsername(f"username may not contain {ch!r}")
    return name


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    password_hash: str
    created_at: float
    password_epoch: int  # bumped on every password change: caches of the old password die

    @classmethod
    def from_fields(cls, account_id: str, fields: dict[str, str]) -> Account | None:
        if not fields.get("pw"):
            return None
        return cls(
            id=account_id,
            username=fields.get("username", account_id),
            password_hash=fields["pw"],
            created_at=float(fields.get("created", "0")),
            password_epoch=int(fields.get("pw_epoch", "0")),
        )


class PasswordChecker(Protocol):
    """Plug in a host app's own password check instead of the accounts store."""

    def __call__(self, account_id: str, password: str) -> bool | Awaitable[bool]: ...


# KEYS[1] login claim, KEYS[2] account hash. The login key lives in another slot on a
# cluster, so creation claims the login first (SET NX) and then writes the account in
# one script that refuses to overwrite an existing account.
CREATE_ACCOUNT = Script(
    "create_account",
    """
if redis.call('HEXISTS', KEYS[1], 'pw') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'username', ARGV[1], 'pw', ARGV[2], 'created', ARGV[3], 'pw_epoch', '1')
return 1
""",
)

# KEYS[1] account hash; ARGV old hash ('' = any), new hash. Bumps pw_epoch atomically.
SET_PASSWORD = Script(
    "set_password",
    """
local cur = redis.call('HGET', KEYS[1], 'pw')
if not cur then return 0 end
if ARGV[1] ~= '' and cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'pw', ARGV[2])
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'pw_epoch', 1) end
return 1
""",
)


class Accounts:
    """Account operations over one key namespace."""

    def __init__(self, keys: Keys, hasher: PasswordHasher) -> None:
        self.keys = keys
        self.hasher = hasher

    def get(self, username: str) -> Op[Account | None]:
        account_id = normalize_username(username)
        fields = yield cmd("HGETALL", self.keys.account(account_id))
        return Account.from_fields(account_id, fields)

    def create(self, username: str, password: str | bytes) -> Op[Account]:
        account_id = normalize_username(username)
        password = clean_password(password, new=True)
        pw_hash = yield Offload(lambda: self.hasher.hash(password))
        login_key, account_key = self.keys.login(account_id), self.keys.account(account_id)
        claimed = yield cmd("SET", login_key, "account", "NX")
        if not claimed:
            owner = yield cmd("GET", login_key)
            exists = yield cmd("HEXISTS", account_key, "pw")
            if owner != "account" or exists:
                raise AccountExists(f"username {account_id!r} is taken")
        created = yield Eval(CREATE_ACCOUNT, (account_key,), (username.strip(), pw_hash, time.time()))
        if not created:
            raise AccountExists(f"username {account_id!r} is taken")
        return Account(account_id, username.strip(), pw_hash, time.time(), 1)

    def set_password(self, username: str, password: str | bytes) -> Op[bool]:
        account_id = normalize_username(username)
        password = clean_password(password, new=True)
        pw_hash = yield Offload(lambda: self.hasher.hash(password))
        changed = yield Eval(SET_PASSWORD, (self.keys.account(account_id),), ("", pw_hash, "1"))
        return bool(changed)

    def authenticate(self, username: str | bytes, password: str | bytes) -> Op[Account | None]:
        """The account when the password matches, else None; constant work for unknown users."""
        try:
            account_id = normalize_username(username)
            password = clean_password(password)
        except ValueError:
            return None
        fields = yield cmd("HGETALL", self.keys.account(account_id))
        account = Account.from_fields(account_id, fields)
        stored = account.password_hash if account else None
        ok = yield Offload(lambda: self.hasher.verify(stored, password))
        if not ok or account is None:
            return None
        if self.hasher.needs_rehash(account.password_hash):
            new_hash = yield Offload(lambda: self.hasher.hash(password))
            # Same password, new parameters: no epoch bump, and lose quietly to a concurrent change.
            yield Eval(SET_PASSWORD, (self.keys.account(account_id),), (account.password_hash, new_hash, "0"))
        return account

    def delete(self, username: str) -> Op[bool]:
        account_id = normalize_username(username)
        removed = yield cmd("DEL", self.keys.account(account_id))
        yield cmd("DEL", self.keys.login(account_id))
        return bool(removed)
