"""Who is this Basic login (an account or a group), and the slow way to prove it.

The fast way lives in the update script: a keyed verifier, HMAC(server key, login, password), cached in
the account's slot with the password epoch (accounts) or credential version (groups) it was proven under
and an expiry. argon2id runs only when that cache misses, and only after the login and the client IP
passed their failure throttles, so random passwords cannot burn the CPU. A router whose verifier is
cached keeps working while someone hammers its login with wrong passwords: the throttle guards hashing,
not the cache.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ddns_update.groups import group_name
from mfa_middleware.accounts import Accounts, InvalidUsername, normalize_username
from mfa_middleware.passwords import PasswordHasher, PasswordRejected, clean_password
from mfa_middleware.store import Keys, Op, cmd
from mfa_middleware.store.effects import Eval, Offload, batch
from mfa_middleware.store.scripts import count

from .scripts import STORE_VERIFIER

CACHE_LIMIT = 100_000  # logins remembered per process (login -> account, group)
MAX_REMEMBERED_LOGIN = 256  # longer raw logins are normalized every time, never remembered


@dataclass(frozen=True)
class ThrottlePolicy:
    per_login: int = 10  # failed password checks per login per window
    per_ip: int = 50  # per client address per window
    window_ms: int = 15 * 60 * 1000
    cache_ttl_ms: int = 6 * 3600 * 1000  # how long a proven credential skips argon2id


@dataclass(frozen=True, slots=True)
class Login:
    name: str  # normalized login
    account_id: str
    group: str | None = None  # None: the account's own username and password

    @property
    def kind(self) -> str:
        return "g" if self.group else "a"


class Credentials:
    def __init__(self, keys: Keys, accounts: Accounts, hasher: PasswordHasher, server_key: bytes,
                 policy: ThrottlePolicy | None = None) -> None:
        self.keys = keys
        self.accounts = accounts
        self.hasher = hasher
        self.server_key = server_key
        self.policy = policy or ThrottlePolicy()
        # Both caches hold strings only, never objects the garbage collector tracks: at 100,000 accounts a
        # process remembers 100,000 entries, and tracked ones (tuples, Login objects) would pile up in the
        # young generation for every collection to walk, pausing requests (``tests/test_update_caches.py``).
        # The script re-checks the credential inside the account's slot, so a stale entry here can only
        # cause a miss (then ``forget`` and resolve again), never a wrong grant.
        self._claims: dict[str, str] = {}  # normalized login -> its claim ("account" or "group:ID:NAME")
        self._names: dict[str, str] = {}  # raw Basic login -> normalized name, "" when it cannot be a login
        self._key_id = hashlib.sha256(b"key id\x00" + server_key).hexdigest()[:8]
        # HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once, copied per verifier:
        # the same value as hmac.new(server_key, message, sha256), at a third of the cost.
        block_key = (hashlib.sha256(server_key).digest() if len(server_key) > 64 else server_key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block_key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block_key))

    def verifier(self, login: str, password: str) -> str:
        """``KEYID:HMAC``; the key id tells a verifier made under another server key from a wrong password."""
        message = login.encode() + b"\x00" + password.encode("utf-8", "surrogateescape")
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(message)
        outer.update(inner.digest())
        return self._key_id + ":" + outer.hexdigest()

    def group_key(self, login: Login) -> str:
        return self.keys.account(login.account_id, "group:" + login.group) if login.group else \
            self.keys.account(login.account_id)

    def resolve(self, raw_login: str) -> Op[Login | None]:
        try:
            name = normalize_username(raw_login)
        except InvalidUsername:
            return None
        claim = self._claims.get(name)
        if claim is not None:
            return _from_claim(name, claim)
        claim = yield cmd("GET", self.keys.login(name))
        login = _from_claim(name, claim)
        if login is not None and claim is not None:
            if len(self._claims) >= CACHE_LIMIT:
                self._claims.clear()
            self._claims[name] = claim
        return login

    def guess(self, raw_login: str) -> Login | None:
        """The login without a round trip: the cached one, else the likeliest, an account's own username.

        Safe because the update script checks the guess in the account's slot: an account hash exists only
        under a claimed username (``Accounts.create`` claims first, ``delete`` releases last), so a wrong
        guess (a group login, an unknown name) answers ``stale`` and the caller resolves the claim.
        None when the name cannot be a login at all.
        """
        guessed = self.quick_guess(raw_login)
        return None if guessed is None else Login(guessed[0], guessed[1], guessed[2] or None)

    def quick_guess(self, raw_login: str) -> tuple[str, str, str] | None:
        """``guess`` as (name, account id, group; "" for an account's own login), without making a ``Login``."""
        name = self._name(raw_login)
        if not name:
            return None
        claim = self._claims.get(name)
        if claim is None or claim == "account":
            return name, name, ""
        login = _from_claim(name, claim)
        return (name, login.account_id, login.group or "") if login is not None else None

    def _name(self, raw_login: str) -> str:
        """The normalized name, remembered; "" when ``raw_login`` cannot be a login."""
        name = self._names.get(raw_login)
        if name is None:
            try:
                name = normalize_username(raw_login)
            except InvalidUsername:
                name = ""
            if len(raw_login) <= MAX_REMEMBERED_LOGIN:  # a hostile client cannot fill memory with long names
                if len(self._names) >= CACHE_LIMIT:
                    self._names.clear()
                self._names[raw_login] = name
        return name

    def forget(self, name: str) -> None:
        self._claims.pop(name, None)

    def _throttle_keys(self, name: str, ip: str | None) -> list[str]:
        keys = [self.keys.shared("ddns", "fail", "{l:" + _untagged(name) + "}")]
        if ip:
            keys.append(self.keys.shared("ddns", "fail", "{i:" + _untagged(ip) + "}"))
        return keys

    def charge(self, name: str, ip: str | None) -> Op[bool]:
        """Count this attempt as a failure *before* hashing; False when the login or the address is over its
        limit. Checking first and counting after the hash would let a burst of parallel guesses all pass the
        check; charging first is exact under any concurrency.
        """
        keys = self._throttle_keys(name, ip)
        counts = yield batch([count(k, 1, self.policy.window_ms) for k in keys])
        limits = (self.policy.per_login, self.policy.per_ip)
        return all(int(n) <= limit for (n, _), limit in zip(counts, limits, strict=False))

    def failed(self, name: str, ip: str | None) -> Op[None]:
        yield batch([count(k, 1, self.policy.window_ms) for k in self._throttle_keys(name, ip)])

    def _refund(self, name: str, ip: str | None) -> Op[None]:
        yield batch([count(k, -1, self.policy.window_ms) for k in self._throttle_keys(name, ip)])

    def prove(self, raw_login: str, login: Login | None, password: str, ip: str | None) -> Op[bool]:
        """The slow path: throttle, one argon2id verify, then cache the verifier. False when refused."""
        name = login.name if login else raw_login.strip().casefold()
        if not (yield from self.charge(name, ip)):
            return False
        epoch = yield from self._verify(login, password)
        if epoch is None:
            return False  # the charge stands as the failure
        yield from self._refund(name, ip)
        assert login is not None
        yield self.remember(login, password, epoch)
        return True

    def remember(self, login: Login, password: str, epoch: str) -> Eval:
        """The step that caches a proven credential's verifier (refused if ``epoch`` is no longer current)."""
        expires = int(time.time() * 1000) + self.policy.cache_ttl_ms
        value = f"{self.verifier(login.name, password)}|{epoch}|{expires}"
        keys = (self.keys.account(login.account_id), self.keys.account(login.account_id, "cred"),
                self.group_key(login))
        return Eval(STORE_VERIFIER, keys, (login.name, login.kind, epoch, value))

    def _verify(self, login: Login | None, password: str) -> Op[str | None]:
        """The epoch the password was proven under, or None (unknown logins cost a dummy verify)."""
        try:
            password = clean_password(password)
        except PasswordRejected:
            return None
        if login is None:
            yield Offload(lambda: self.hasher.verify(None, password))
            return None
        if login.group is None:
            account = yield from self.accounts.authenticate(login.name, password)
            return str(account.password_epoch) if account is not None else None
        stored, ver = yield cmd("HMGET", self.group_key(login), "pw", "ver")
        ok = yield Offload(lambda: self.hasher.verify(stored, password))
        return str(ver) if ok and ver else None


def _from_claim(name: str, claim: str | None) -> Login | None:
    if claim == "account":
        return Login(name, name)
    if claim and claim.startswith("group:"):
        _, account_id, group = claim.split(":", 2)
        try:
            return Login(name, account_id, group_name(group))
        except ValueError:
            return None
    return None


def _untagged(text: str) -> str:
    """Braces would change the key's Redis Cluster hash tag; an unknown login may contain them."""
    return text.replace("{", "").replace("}", "")[:300]
