"""Who is this Basic login (an account or a group), and the slow way to prove it.

The fast way lives in the update script: a keyed verifier, HMAC(server key, login, password), cached in
the account's slot with the password epoch (accounts) or credential version (groups) it was proven under
and an expiry. The cache only ever says yes: a password that does not match it goes the slow way, one
argon2id verify, which decides; so a wrong password costs the same whether the login is cached, cold or
unknown, and the answer's timing does not tell them apart.

The failure throttle comes before every comparison, cached or slow, and a throttled request answers
``badauth`` without comparing anything. Limits per window (``ThrottlePolicy``):

- per login and client address (``per_login_ip``): what one address may try against one login;
- per login from addresses that have not proven it (``per_login``): the cap that carries the security
  whatever the number of addresses. (A client address is an IPv4 address, or an IPv6 address's /64:
  ``service._throttled_as``.) An address proved a login when the right password came from it under
  the current password (remembered ``known_ms``, the newest ``known_max`` per login): the owner's router
  there is held only to its own per-address limit, so it keeps updating while guesses from elsewhere are
  refused;
- per client address across logins (``per_ip``): stuffing one address's list across many logins, and the
  argon2 work one address can cause. Its counter lives outside any account's slot, so the update script
  cannot read it: it is checked (a second step) only when the address has not proven the login, which is
  every guess and a router's first update after its address changed.

Login and per-login-address counters (``{a:ID}:cred_fails``) and the addresses that proved each login (in the
credential cache, ``{a:ID}:cred``) live in the account's slot, read by the update script in the same round trip.
Unknown logins have no slot: their name and the address are counted in shared keys, before the dummy verify
that makes them cost what a known login costs.
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
    per_login: int = 10  # failed password checks per login per window, from addresses that have not proven it
    per_login_ip: int = 10  # per login and client address per window
    per_ip: int = 50  # per client address per window, over all logins
    window_ms: int = 15 * 60 * 1000
    cache_ttl_ms: int = 6 * 3600 * 1000  # how long a proven credential skips argon2id
    known_ms: int = 30 * 24 * 3600 * 1000  # how long an address that proved a login stays known for it
    known_max: int = 8  # known addresses kept per login (the newest)


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

    def _name_key(self, name: str) -> str:
        return self.keys.shared("ddns", "fail", "{l:" + _untagged(name) + "}")

    def _address_key(self, ip: str) -> str:
        return self.keys.shared("ddns", "fail", "{i:" + _untagged(ip) + "}")

    def charge_address(self, ip: str | None) -> Op[bool]:
        """Count an attempt from ``ip`` *before* comparing; False when the address is over ``per_ip``.
        Charging first, not checking first and counting after, is exact under any concurrency: parallel
        guesses cannot all pass a check that is only counted after the hash."""
        if not ip:
            return True
        n, _ = yield count(self._address_key(ip), 1, self.policy.window_ms)
        return int(n) <= self.policy.per_ip

    def refund_address(self, ip: str | None) -> Op[None]:
        if ip:
            yield count(self._address_key(ip), -1, self.policy.window_ms)

    def refuse(self, name: str, ip: str | None, address_counted: bool = False) -> Op[None]:
        """A known login's throttled request: the claim read and the counts an unknown login's refusal makes
        (``prove_unknown``), so that a refusal's timing does not tell a known login from an unknown one."""
        yield cmd("GET", self.keys.login(name))
        keys = [self._name_key(name), *([self._address_key(ip)] if ip and not address_counted else [])]
        yield batch([count(k, 1, self.policy.window_ms) for k in keys])

    def prove_unknown(self, raw_login: str, password: str, ip: str | None) -> Op[None]:
        """A login no account or group holds: counted per name and address, then what a known login's wrong
        password costs (an account read, one argon2id verify) unless either is over its limit."""
        name = _untagged(raw_login.strip().casefold())
        keys = [self._name_key(name), *([self._address_key(ip)] if ip else [])]
        counts = yield batch([count(k, 1, self.policy.window_ms) for k in keys])
        limits = (self.policy.per_login, self.policy.per_ip)
        if all(int(n) <= limit for (n, _), limit in zip(counts, limits, strict=False)):
            yield cmd("HGETALL", self.keys.account(name))  # absent: the read a known login's verify makes
            yield from self.verify(None, password)

    def remember(self, login: Login, password: str, epoch: str, client: str = "", charged: bool = False) -> Eval:
        """The step that caches a proven credential's verifier (refused if ``epoch`` is no longer current),
        takes back the failure the update script counted before the slow verify (``charged``: against the
        login's cap too) and remembers ``client`` as an address that proved the login."""
        now_ms = int(time.time() * 1000)
        value = f"{self.verifier(login.name, password)}|{epoch}|{now_ms + self.policy.cache_ttl_ms}"
        acct = login.account_id
        keys = (self.keys.account(acct), self.keys.account(acct, "cred"), self.group_key(login),
                self.keys.account(acct, "cred_fails"))
        return Eval(STORE_VERIFIER, keys, (login.name, login.kind, epoch, value, client, "1" if charged else "0",
                                           str(now_ms // 1000), str(self.policy.known_ms), str(self.policy.known_max)))

    def verify(self, login: Login | None, password: str) -> Op[str | None]:
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
