"""The second factor's state: enrollment, verification, backup codes, security question, throttles.

Every method returns a store operation (see ``store.effects``); the gate runs it with ``Store.run`` (WSGI,
CLI) or ``await AsyncStore.run`` (ASGI). Each state change is one Lua script over the account's keys (one
hash tag), so it is atomic on Redis and in the memory driver alike, across all app instances.

Per account (``Keys.account(id, part)``): ``mfa`` hash (seed token, last_step, enabled_at, epoch, question,
answer), ``backup`` hash (code digest -> 1), ``enroll`` hash (gate session digest -> the seed token that
session was shown, and when), ``throttle``
hash (streak, until) + ``fails`` (attempts this hour), ``trust`` hash (trusted-browser token -> epoch:expiry).
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import backup_codes, passkeys, totp
from .crypto import SeedCipher, SeedDecryptError
from .metrics import LOCKOUTS, VERIFICATIONS
from .passwords import PasswordHasher
from .store import Keys, Op, cmd
from .store.effects import Eval, Offload, Script, batch
from .store.scripts import ADVANCE, compare_and_set

audit_log = logging.getLogger("mfa_middleware.audit")
AuditHook = Callable[[str, dict[str, Any]], None]

PENDING_TTL_MS = 15 * 60 * 1000
GRANT_TTL_MS = 10 * 60 * 1000  # how long a used backup code waits for its session (see USE_BACKUP)
HOUR_MS = 3600 * 1000
DIRECT = "direct"  # the enrollment slot of callers without a gate session (scripts, tests): not the web pages

# KEYS[1] mfa, KEYS[2] backup, KEYS[3] enroll; ARGV the session's enroll field, its value, seed token, step,
# now, digests... Enabling discards every other session's pending seed with the hash. Backup codes come with
# the first factor only: with a passkey already on (``passkeys.py``) the account keeps its codes (returns 2).
ENABLE = Script(
    "mfa_enable_session",
    """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'seed') == 1 then return 0 end
local had_passkeys = redis.call('HGET', KEYS[1], 'passkeys')
redis.call('HSET', KEYS[1], 'seed', ARGV[3], 'last_step', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('DEL', KEYS[3])
if had_passkeys then return 2 end
redis.call('HSET', KEYS[1], 'enabled_at', ARGV[5])
redis.call('DEL', KEYS[2])
for i = 6, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], '1') end
return 1
""",
)

# KEYS[1] mfa, KEYS[2] backup, KEYS[3] trust; ARGV digests. The old set dies in the same step.
REGENERATE = Script(
    "mfa_regenerate",
    """
if redis.call('HEXISTS', KEYS[1], 'seed') == 0 and not redis.call('HGET', KEYS[1], 'passkeys') then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
for i = 1, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], '1') end
return redis.call('HINCRBY', KEYS[1], 'epoch', 1)
""",
)

# KEYS[1] mfa, KEYS[2] backup, KEYS[3] enroll, KEYS[4] trust, KEYS[5..8] the passkeys (``passkeys.PARTS``).
# Passkeys go too: 2FA off means no second factor of any kind. Returns {was on, new epoch, passkey ids...}.
DISABLE = Script(
    "mfa_disable",
    """
local was = redis.call('HEXISTS', KEYS[1], 'seed')
if redis.call('HGET', KEYS[1], 'passkeys') then was = 1 end
local out = {was, 0}
for _, id in ipairs(redis.call('HKEYS', KEYS[5])) do out[#out + 1] = id end
redis.call('HDEL', KEYS[1], 'seed', 'last_step', 'enabled_at', 'passkeys')
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
out[2] = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return out
""",
)

# KEYS[1] mfa, KEYS[2] backup, KEYS[3] grant; ARGV digest, grant TTL ms. {used, remaining}: a code works
# once, even under concurrency. A used code also leaves a *grant* ("backup:EPOCH", short TTL) in the same
# step: the session write that follows is in another slot and may fail (store down, failover), and without
# the grant the code would be gone while the user is still not in. ``TwoFactor.redeem_grant`` turns it into
# the verified session on the browser's next visit of the verify pages.
USE_BACKUP = Script(
    "mfa_use_backup",
    """
if redis.call('HEXISTS', KEYS[1], 'seed') == 0 and not redis.call('HGET', KEYS[1], 'passkeys') then return {0, 0} end
local used = redis.call('HDEL', KEYS[2], ARGV[1])
if used == 1 and ARGV[2] ~= '0' then
  local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'
  redis.call('SET', KEYS[3], 'backup:' .. epoch, 'PX', ARGV[2])
end
return {used, redis.call('HLEN', KEYS[2])}
""",
)

# Throttle, charged *before* the check so parallel guesses cannot overrun the hourly cap.
# KEYS[1] throttle hash, KEYS[2] hourly counter; ARGV now_ms, max_per_hour, hour_ms.
# Returns 0 = go ahead, else the ms until the next attempt is allowed.
ATTEMPT = Script(
    "mfa_attempt",
    """
local now = tonumber(ARGV[1])
local locked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if locked > now then return locked - now end
local n = redis.call('INCR', KEYS[2])
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]); ttl = tonumber(ARGV[3]) end
if n > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[2])
  return ttl
end
return 0
""",
)

# A failed attempt: exponential back-off after `free` failures in a row, capped; the full hour once the
# hourly cap is reached. KEYS as ATTEMPT; ARGV now_ms, free, base_ms, max_ms, max_per_hour, hour_ms.
# Returns {streak, lock_ms}.
FAILURE = Script(
    "mfa_failure",
    """
local now = tonumber(ARGV[1])
local streak = redis.call('HINCRBY', KEYS[1], 'streak', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local lock = 0
local over = streak - tonumber(ARGV[2])
if over > 0 then
  lock = math.min(tonumber(ARGV[3]) * math.pow(2, math.min(over - 1, 30)), tonumber(ARGV[4]))
end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n >= tonumber(ARGV[5]) then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > lock then lock = ttl end
end
lock = math.floor(lock)
if lock > 0 then redis.call('HSET', KEYS[1], 'until', now + lock) end
return {streak, lock}
""",
)

# KEYS[1] mfa, KEYS[2] trust. Ends every session (epoch bump) and forgets trusted browsers, together.
SIGN_OUT = Script(
    "mfa_sign_out",
    """
redis.call('DEL', KEYS[2])
return redis.call('HINCRBY', KEYS[1], 'epoch', 1)
""",
)

# A refused attempt (its address is over the cap): the account's hourly charge given back, its streak untouched
# (a success's reset here would let a capped address wipe the back-off of whoever guesses from elsewhere).
REFUND = Script(
    "mfa_refund",
    """
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 0 then redis.call('DECR', KEYS[2]) end
return 1
""",
)

# A success ends the streak and gives the attempt back to the hourly budget.
SUCCESS = Script(
    "mfa_success",
    """
redis.call('HDEL', KEYS[1], 'streak', 'until')
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 0 then redis.call('DECR', KEYS[2]) end
return 1
""",
)


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 3  # in a row before back-off starts
    base_ms: int = 1000  # first back-off, doubled per further failure
    max_ms: int = 15 * 60 * 1000
    max_per_hour: int = 100  # failures per account per hour, at most
    # Failures per client address per hour, over all accounts: only a high cap, never a back-off, since many
    # users may share an address (an office, a carrier's NAT, a proxy the gate is not told about), and one
    # account's mistakes must not slow the others. The per-account limits carry the security.
    ip_max_per_hour: int = 1000
    window_ms: int = HOUR_MS  # the "hour" of the two caps above (shorter in tests; never longer in production)


@dataclass(frozen=True)
class Status:
    """What ``mfa-admin user show`` and the security page report."""

    enabled: bool
    enabled_at: float | None
    backup_codes_left: int
    locked_until: float | None
    security_question: str | None
    epoch: int
    blocked_by_address: str | None = None  # an address whose hourly cap refused this account's last attempt
    address_blocked_until: float | None = None
    totp: bool = False  # an authenticator app is set up
    passkeys: int = 0  # passkeys and security keys (``passkeys.py``); 2FA is on with either

    def as_dict(self) -> dict[str, Any]:
        return {
            "two_factor": self.enabled,
            "enabled_at": self.enabled_at,
            "backup_codes_left": self.backup_codes_left,
            "locked_until": self.locked_until,
            "security_question_set": self.security_question is not None,
            "blocked_by_address": self.blocked_by_address,
            "address_blocked_until": self.address_blocked_until,
            "totp": self.totp,
            "passkeys": self.passkeys,
        }


@dataclass(frozen=True)
class Outcome:
    """The answer to a verification: ``ok``, or why not (``wrong``, ``locked``, ``replayed``, ``off``).

    A failure that starts a back-off is still ``wrong`` (with ``retry_after`` set); ``locked`` means the
    attempt was refused unchecked."""

    ok: bool
    reason: str = ""
    retry_after: float = 0.0
    remaining: int | None = None  # backup codes left after a backup code was used


def normalize_answer(answer: str) -> str:
    """Security answers compare case-, width- and whitespace-insensitively."""
    # NFKC again after casefold (Unicode's compatibility caseless matching): casefold can undo composition
    # ("ß" + U+0301 -> "ss" + U+0301), and the result must compare equal when typed back in.
    return " ".join(unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", answer).casefold()).split())


class TwoFactor:
    def __init__(
        self,
        keys: Keys,
        cipher: SeedCipher,
        backup_hasher: backup_codes.BackupCodeHasher,
        answer_hasher: PasswordHasher,
        params: totp.TotpParams | None = None,
        throttle: ThrottlePolicy | None = None,
        audit: AuditHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.cipher = cipher
        self.backup_hasher = backup_hasher
        self.answer_hasher = answer_hasher
        self.params = params or totp.TotpParams()
        self.throttle = throttle or ThrottlePolicy()
        self.audit_hook = audit
        self.clock = clock

    # -- helpers ---------------------------------------------------------------------------------
    def _k(self, account_id: str, part: str) -> str:
        return self.keys.account(account_id, part)

    def _ip_keys(self, ip: str) -> tuple[str, str]:
        tag = "{i:" + ip.replace("{", "").replace("}", "") + "}"
        return self.keys.shared("ip", tag, "throttle"), self.keys.shared("ip", tag, "fails")

    def audit(self, event: str, account_id: str, **data: Any) -> None:
        payload = {"account": account_id, **data}
        audit_log.info("%s %s", event, " ".join(f"{k}={v}" for k, v in payload.items()))
        if self.audit_hook is not None:
            try:
                self.audit_hook(event, payload)
            except Exception:  # the audit callback must never break a login
                audit_log.exception("audit callback failed for %s", event)

    def _digests(self, account_id: str, codes: list[str]) -> list[str]:
        return [self.backup_hasher.digest(account_id, c) for c in codes]

    # -- status ----------------------------------------------------------------------------------
    def status(self, account_id: str) -> Op[Status]:
        mfa, left, throttle = yield batch([
            cmd("HMGET", self._k(account_id, "mfa"), "seed", "enabled_at", "question", "epoch", "passkeys"),
            cmd("HLEN", self._k(account_id, "backup")),
            cmd("HMGET", self._k(account_id, "throttle"), "until", "ip_blocked"),
        ])
        seed, enabled_at, question, epoch, keys = mfa
        until, ip_blocked = throttle
        now = self.clock()
        locked = float(until) / 1000 if until and float(until) / 1000 > now else None
        address, _, address_until = str(ip_blocked or "").rpartition("|")
        address_blocked = (address, float(address_until) / 1000) if address and address_until.isdigit() \
            and float(address_until) / 1000 > now else None
        return Status(
            enabled=bool(seed or keys),
            enabled_at=float(enabled_at) if enabled_at else None,
            backup_codes_left=int(left) if seed or keys else 0,
            locked_until=locked,
            security_question=question or None,
            epoch=int(epoch or 0),
            blocked_by_address=address_blocked[0] if address_blocked else None,
            address_blocked_until=address_blocked[1] if address_blocked else None,
            totp=bool(seed),
            passkeys=int(keys or 0),
        )

    # -- enrollment ------------------------------------------------------------------------------
    def _enroll_field(self, sid: str) -> str:
        # The session id is a bearer secret: only a digest of it names the field.
        return hashlib.sha256(sid.encode()).hexdigest()[:32]

    def _pending(self, account_id: str, sid: str) -> Op[tuple[str, str] | None]:
        """The seed this gate session was shown (with its stored value), while it is fresh."""
        value = yield cmd("HGET", self._k(account_id, "enroll"), self._enroll_field(sid))
        token, _, since = str(value or "").partition("|")
        if not token or not since.isdigit() or int(since) + PENDING_TTL_MS <= int(self.clock() * 1000):
            return None
        try:
            return self.cipher.decrypt(account_id, token), str(value)
        except SeedDecryptError:
            return None

    def begin_enrollment(self, account_id: str, sid: str = DIRECT) -> Op[str]:
        """The seed shown to gate session ``sid`` (a reload shows the same key; another session, even of the
        same account, gets a seed of its own: whoever reads one key cannot enroll the owner's phone)."""
        pending = yield from self._pending(account_id, sid)
        if pending is not None:
            return pending[0]
        seed = totp.new_seed()
        key = self._k(account_id, "enroll")
        value = f"{self.cipher.encrypt(account_id, seed)}|{int(self.clock() * 1000)}"
        yield batch([cmd("HSET", key, self._enroll_field(sid), value), cmd("PEXPIRE", key, PENDING_TTL_MS)])
        return seed

    def confirm_enrollment(self, account_id: str, code: str, sid: str = DIRECT) -> Op[list[str] | None]:
        """Turn 2FA on when ``code`` matches the seed session ``sid`` was shown; the ten new backup codes, or
        None. Every other pending seed of the account is discarded in the same step."""
        pending = yield from self._pending(account_id, sid)
        if pending is None:
            return None
        seed, value = pending
        step = totp.match_step(seed, code, self.clock(), None, self.params)
        if step is None:
            return None
        codes = backup_codes.generate(10)
        keys = (self._k(account_id, "mfa"), self._k(account_id, "backup"), self._k(account_id, "enroll"))
        args = (self._enroll_field(sid), value, self.cipher.encrypt(account_id, seed), step, self.clock(),
                *self._digests(account_id, codes))
        done = yield Eval(ENABLE, keys, args)
        if not done:
            return None
        self.audit("enabled", account_id, method="totp")
        return codes if done == 1 else []  # [] : 2FA was already on (passkeys), the codes are unchanged

    # -- verification ----------------------------------------------------------------------------
    def _charge(self, account_id: str, ip: str) -> Op[float]:
        now_ms = int(self.clock() * 1000)
        pol = self.throttle
        acct = (self._k(account_id, "throttle"), self._k(account_id, "fails"))
        wait_a = yield Eval(ATTEMPT, acct, (now_ms, pol.max_per_hour, pol.window_ms))
        wait_i = 0
        if ip and not wait_a:
            wait_i = yield Eval(ATTEMPT, self._ip_keys(ip), (now_ms, pol.ip_max_per_hour, pol.window_ms))
        if wait_i and not wait_a:  # give the account its charge back: the address is what is blocked
            yield Eval(REFUND, acct, ())
            # Said where an operator looks: ``user show`` (this account) and ``ip show`` (this address).
            until, ip_throttle = now_ms + int(wait_i), self._ip_keys(ip)[0]
            yield batch([cmd("HSET", acct[0], "ip_blocked", f"{ip}|{until}"), cmd("PEXPIRE", acct[0], pol.window_ms),
                         cmd("HSET", ip_throttle, "capped_until", until), cmd("PEXPIRE", ip_throttle, pol.window_ms)])
        return max(int(wait_a or 0), int(wait_i or 0)) / 1000

    def _settle(self, account_id: str, ip: str, ok: bool) -> Op[float]:
        """After the check: a success gives both charges back; a failure keeps the address's charge (its
        hourly count) and moves the account's back-off. Only the account backs off."""
        pol = self.throttle
        acct = (self._k(account_id, "throttle"), self._k(account_id, "fails"))
        lock_ms = 0
        if ok:
            yield Eval(SUCCESS, acct, ())
            if ip:
                yield Eval(SUCCESS, self._ip_keys(ip), ())
        else:
            args = (int(self.clock() * 1000), pol.free_failures, pol.base_ms, pol.max_ms, pol.max_per_hour,
                    pol.window_ms)
            _, lock = yield Eval(FAILURE, acct, args)
            lock_ms = int(lock)
        if lock_ms:
            LOCKOUTS.inc()
            self.audit("lockout", account_id, ip=ip, seconds=lock_ms / 1000)
        return lock_ms / 1000

    def check_password(self, account_id: str, ip: str, check: Op[bool]) -> Op[Outcome]:
        """Run a password re-entry ``check`` under the same throttle (before any argon2 work)."""
        wait = yield from self._charge(account_id, ip)
        if wait:
            return Outcome(False, "locked", wait)
        ok = yield from check
        lock = yield from self._settle(account_id, ip, ok)
        return Outcome(ok, "" if ok else "wrong", lock)

    def verify_code(self, account_id: str, code: str, ip: str = "") -> Op[Outcome]:
        wait = yield from self._charge(account_id, ip)
        if wait:
            VERIFICATIONS.labels("totp", "locked").inc()
            return Outcome(False, "locked", wait)
        mfa = self._k(account_id, "mfa")
        token, last = yield cmd("HMGET", mfa, "seed", "last_step")
        if not token:
            yield from self._settle(account_id, ip, True)
            return Outcome(False, "off")
        try:
            seed = self.cipher.decrypt(account_id, token)
        except SeedDecryptError:
            audit_log.error("seed of %s cannot be decrypted (key missing from MFA_ENCRYPTION_KEY?)", account_id)
            return Outcome(False, "wrong")
        step = totp.match_step(seed, code, self.clock(), None, self.params)
        replayed = step is not None and last is not None and step <= int(last)
        # The high-water mark advances atomically: of two racing submissions of one code, one wins.
        if step is not None and not replayed:
            advanced = yield Eval(ADVANCE, (mfa,), ("last_step", step))
            replayed = not advanced
        ok = step is not None and not replayed
        if replayed:
            self.audit("replayed_code", account_id, ip=ip)
        if ok and self.cipher.needs_rotation(token):  # key rotation: re-seal under the current key
            yield compare_and_set(mfa, "seed", token, self.cipher.encrypt(account_id, seed))
        lock = yield from self._settle(account_id, ip, ok)
        if ok:
            VERIFICATIONS.labels("totp", "ok").inc()
            return Outcome(True)
        VERIFICATIONS.labels("totp", "replayed" if replayed else "wrong").inc()
        return Outcome(False, "replayed" if replayed else "wrong", lock)

    def _grant_key(self, account_id: str, sid: str) -> str:
        # The session id is a bearer secret: only a digest of it names the grant.
        return self._k(account_id, "grant:" + hashlib.sha256(sid.encode()).hexdigest()[:32])

    def use_backup_code(self, account_id: str, code: str, ip: str = "", sid: str = "") -> Op[Outcome]:
        """Consume ``code``. With ``sid`` (the not-yet-verified session), the same step leaves a grant that
        ``redeem_grant`` honours should the session write after this fail: a used code is never lost."""
        wait = yield from self._charge(account_id, ip)
        if wait:
            VERIFICATIONS.labels("backup_code", "locked").inc()
            return Outcome(False, "locked", wait)
        normalized = backup_codes.normalize(code)
        used, left = 0, None
        if normalized is not None:
            digest = self.backup_hasher.digest(account_id, normalized)
            keys = (self._k(account_id, "mfa"), self._k(account_id, "backup"),
                    self._grant_key(account_id, sid or "-"))
            used, left = yield Eval(USE_BACKUP, keys, (digest, GRANT_TTL_MS if sid else 0))
        lock = yield from self._settle(account_id, ip, bool(used))
        VERIFICATIONS.labels("backup_code", "ok" if used else "wrong").inc()
        if not used:
            return Outcome(False, "wrong", lock)
        self.audit("backup_code_used", account_id, ip=ip, remaining=left)
        return Outcome(True, remaining=int(left or 0))

    def redeem_grant(self, account_id: str, sid: str, epoch: int) -> Op[str | None]:
        """The method ("backup") of a code used by session ``sid`` whose session write failed, or None.

        Not deleted here: it is usable only while the unverified session ``sid`` still exists, and the
        rotation that verifies the session deletes that record (any store step after the rotation could
        fail and cost the browser its new cookie, so none is added). It expires after GRANT_TTL_MS, and a
        new epoch (disable, regenerate, sign-out-everywhere) voids it."""
        value = yield cmd("GET", self._grant_key(account_id, sid))
        method, _, granted_epoch = str(value or "").partition(":")
        if not value or granted_epoch != str(epoch):
            return None
        return method
    # -- changes ---------------------------------------------------------------------------------
    def regenerate(self, account_id: str) -> Op[tuple[list[str], int] | None]:
        """A new set of ten codes (the old set dies in the same step) and the new session epoch."""
        codes = backup_codes.generate(10)
        keys = (self._k(account_id, "mfa"), self._k(account_id, "backup"), self._k(account_id, "trust"))
        epoch = yield Eval(REGENERATE, keys, tuple(self._digests(account_id, codes)))
        if not epoch:
            return None
        self.audit("backup_codes_regenerated", account_id)
        return codes, int(epoch)

    def disable(self, account_id: str, by: str = "user") -> Op[int]:
        """Turn 2FA off at once, passkeys included; returns the new epoch (which ends other sessions)."""
        keys = tuple(self._k(account_id, p) for p in ("mfa", "backup", "enroll", "trust", *passkeys.PARTS))
        was, epoch, *removed = yield Eval(DISABLE, keys, ())
        if was:
            self.audit("disabled", account_id, by=by)
        for cid in removed:
            self.audit("webauthn_removed", account_id, credential=str(cid)[:16], by=by)
        yield from passkeys.release(self.keys, account_id, [str(c) for c in removed])
        return int(epoch)

    def reset(self, account_id: str) -> Op[bool]:
        """Operator reset after identity was proven: 2FA off, throttle cleared. True if it was on."""
        st = yield from self.status(account_id)
        yield from self.disable(account_id, by="operator")
        yield from self.unlock(account_id)
        return st.enabled

    def unlock(self, account_id: str) -> Op[None]:
        yield cmd("DEL", self._k(account_id, "throttle"), self._k(account_id, "fails"))
        self.audit("unlocked", account_id)

    def address_status(self, ip: str) -> Op[dict[str, Any]]:
        """``mfa-admin ip show``: failures counted for one client address this hour, and its cap."""
        throttle, fails = self._ip_keys(ip)
        count, ttl, capped = yield batch([cmd("GET", fails), cmd("PTTL", fails), cmd("HGET", throttle, "capped_until")])
        now = self.clock()
        window_end = now + int(ttl) / 1000 if ttl and int(ttl) > 0 else None
        blocked = float(capped) / 1000 if capped and float(capped) / 1000 > now else None
        return {"address": ip, "failures_this_hour": int(count or 0), "blocked_until": blocked,
                "window_ends": window_end}

    def unlock_address(self, ip: str) -> Op[None]:
        yield cmd("DEL", *self._ip_keys(ip))
        self.audit("address_unlocked", "-", ip=ip)

    def sign_out_everywhere(self, account_id: str) -> Op[int]:
        # One step: trusted browsers forgotten without the epoch bump would leave the other sessions alive.
        epoch = yield Eval(SIGN_OUT, (self._k(account_id, "mfa"), self._k(account_id, "trust")), ())
        self.audit("signed_out_everywhere", account_id)
        return int(epoch)

    def set_security_question(self, account_id: str, question: str, answer: str) -> Op[None]:
        norm = normalize_answer(answer)
        digest = yield Offload(lambda: self.answer_hasher.hash(norm))
        yield cmd("HSET", self._k(account_id, "mfa"), "question", question.strip(), "answer", digest)
        self.audit("security_question_set", account_id)

    def check_answer(self, account_id: str, answer: str) -> Op[bool]:
        stored = yield cmd("HGET", self._k(account_id, "mfa"), "answer")
        norm = normalize_answer(answer)
        ok = yield Offload(lambda: bool(norm) and self.answer_hasher.verify(stored, norm))
        return bool(ok) and stored is not None

    # -- trusted browsers ------------------------------------------------------------------------
    def trust_browser(self, account_id: str, token_id: str, epoch: int, days: int) -> Op[None]:
        expiry = self.clock() + days * 86400
        yield cmd("HSET", self._k(account_id, "trust"), token_id, f"{epoch}:{expiry:.0f}")
        yield cmd("PEXPIRE", self._k(account_id, "trust"), days * 86400 * 1000)

    def is_trusted(self, account_id: str, token_id: str, epoch: int) -> Op[bool]:
        value = yield cmd("HGET", self._k(account_id, "trust"), token_id)
        if not value:
            return False
        stored_epoch, _, expiry = str(value).partition(":")
        return stored_epoch == str(epoch) and float(expiry or 0) > self.clock()

