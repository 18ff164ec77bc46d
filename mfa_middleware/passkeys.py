"""Passkeys and security keys (WebAuthn) as a second factor: the relying party's settings and the store steps
behind the passkey pages.

py_webauthn does every check of what the browser sends (CBOR, COSE, client data, origin, RP id hash, flags,
signature); this module keeps the state. Each change is one Lua script over the account's keys (hash tag
``{a:ID}``), so it is atomic on Redis (standalone, Sentinel, Cluster) and in the memory driver alike.

Per account (``Keys.account(id, part)``): ``wa:cred`` hash (credential id, base64url -> JSON: public key, RP id,
when added, device type, backed up, transports), ``wa:name`` (id -> name), ``wa:count`` (id -> sign count),
``wa:used`` (id -> when last used, ms); the ``mfa`` hash's ``passkeys`` field counts them, so the gate reads
"2FA on" (a seed or a passkey) in the one HMGET it already makes. ``wa:ch:<purpose>:<session digest>``: the
gate session's pending challenge, for 5 minutes, its value ``sha256 of the challenge|expiry ms|payload`` (neither
the challenge nor the session id is stored in the clear). Outside the account's slot,
``wa:{c:<sha256 of credential id>}`` names the one account a credential id belongs to (``account|ms``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from . import backup_codes
from .i18n import N_
from .metrics import VERIFICATIONS
from .store import Keys, Op, cmd
from .store.effects import Eval, Script, batch

if TYPE_CHECKING:
    from .twofactor import TwoFactor

CHALLENGE_TTL_MS = 5 * 60 * 1000
MAX_PASSKEYS = 20  # per account: a bound on what one account can make the store keep
MAX_NAME = 64
CLAIM_GRACE_MS = 5 * 60 * 1000  # a claim younger than this is honoured even before its account holds the id
PARTS = ("wa:cred", "wa:name", "wa:count", "wa:used")
REGISTER, AUTHENTICATE = "reg", "auth"

# KEYS[1] the session's pending challenge for this purpose, KEYS[2] wa:cred, KEYS[3] wa:count; ARGV the
# SHA-256 of the challenge the answer signed, credential id ('' when none is asked for), now (ms, the gate's
# clock: the key's own PX only cleans up). Exactly one request takes a challenge: the first to run this with
# it. 0 when there is none (used, expired, never given to this session, or since replaced by a newer one; a
# wrong one leaves the pending one alone); else {payload, credential JSON or '', sign count}.
CONSUME = Script(
    "mfa_webauthn_consume",
    """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local digest, expires, payload = string.match(v, '^(%x+)|(%d+)|(.*)$')
if digest ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(expires) <= tonumber(ARGV[3]) then return 0 end
if ARGV[2] == '' then return {payload, '', '0'} end
return {payload, redis.call('HGET', KEYS[2], ARGV[2]) or '', redis.call('HGET', KEYS[3], ARGV[2]) or '0'}
""",
)

# After the signature checked out: the sign counter must move forward (both 0: an authenticator that keeps
# none), checked and recorded in one step, so two assertions racing with one counter value cannot both pass.
# KEYS wa:cred, wa:count, wa:used; ARGV id, new count, now ms. 1 ok, 0 counter went back, -1 removed meanwhile.
USE = Script(
    "mfa_webauthn_use",
    """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if (new > 0 or old > 0) and new <= old then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1
""",
)

# KEYS mfa, wa:cred, wa:name, wa:count, backup; ARGV id, credential JSON, name, sign count, now ms, max,
# backup-code digests... When this passkey turns 2FA on (no seed, no passkey before), the same step issues the
# backup codes and moves the epoch, as enabling TOTP does. {-1, 0} id already here, {-2, 0} too many,
# {1, epoch} added and 2FA turned on, {0, epoch} added.
ADD = Script(
    "mfa_webauthn_add",
    """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {-1, 0} end
local n = redis.call('HLEN', KEYS[2])
if n >= tonumber(ARGV[6]) then return {-2, 0} end
local was_on = redis.call('HEXISTS', KEYS[1], 'seed') == 1 or n > 0
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[1], 'passkeys', n + 1)
if was_on then return {0, tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')} end
redis.call('DEL', KEYS[5])
for i = 7, #ARGV do redis.call('HSET', KEYS[5], ARGV[i], '1') end
redis.call('HSET', KEYS[1], 'enabled_at', tonumber(ARGV[5]) / 1000)
return {1, redis.call('HINCRBY', KEYS[1], 'epoch', 1)}
""",
)

# KEYS mfa, wa:cred, wa:name, wa:count, wa:used, backup, enroll, trust; ARGV id. Removing the last factor
# turns 2FA off exactly as disabling does (codes, trusted browsers and the epoch go with it).
# {0, epoch} no such passkey, {1, epoch} removed, {2, epoch} removed and 2FA is now off.
REMOVE = Script(
    "mfa_webauthn_remove",
    """
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return {0, epoch} end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
local n = redis.call('HLEN', KEYS[2])
if n > 0 then
  redis.call('HSET', KEYS[1], 'passkeys', n)
  return {1, epoch}
end
redis.call('HDEL', KEYS[1], 'passkeys')
if redis.call('HEXISTS', KEYS[1], 'seed') == 1 then return {1, epoch} end
redis.call('HDEL', KEYS[1], 'enabled_at')
redis.call('DEL', KEYS[6], KEYS[7], KEYS[8])
return {2, redis.call('HINCRBY', KEYS[1], 'epoch', 1)}
""",
)

# KEYS wa:cred, wa:name; ARGV id, name. A rename never brings back a passkey removed meanwhile.
RENAME = Script(
    "mfa_webauthn_rename",
    """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
""",
)

# KEYS[1] the credential id's owner; ARGV account, now ms, the stale value to replace ('' for none).
# 'ok' when this account holds the claim now, else the other account's claim.
CLAIM = Script(
    "mfa_webauthn_claim",
    """
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[3] and string.match(v, '^(.*)|') ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2])
return 'ok'
""",
)


class PasskeyError(Exception):
    """A WebAuthn step refused: ``code`` for the JSON answer, ``message`` for people, ``status`` for HTTP."""

    def __init__(self, code: str, message: str, status: int = 400, retry_after: float = 0.0,
                 params: dict[str, object] | None = None) -> None:
        # ``message`` is English with ``%(name)s`` fields from ``params``: pages translate ``template`` first.
        self.template, self.params = message, params or {}
        message = message % self.params if params else message
        super().__init__(message)
        self.code, self.message, self.status, self.retry_after = code, message, status, retry_after


@dataclass(frozen=True)
class Passkey:
    id: str  # base64url credential id
    name: str
    added: float
    last_used: float | None
    synced: bool  # a multi-device credential (a synced passkey), as the authenticator said at registration
    rp_id: str


@dataclass(frozen=True)
class Added:
    passkey: Passkey
    turned_on: bool  # this passkey turned 2FA on: ``codes`` are the new backup codes
    epoch: int
    codes: list[str]


_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?::[0-9]{1,5})?$")


def _is_localhost(hostname: str) -> bool:
    return hostname == "localhost" or hostname.endswith(".localhost")


def _valid_rp_id(rp_id: str) -> bool:
    """A domain (browsers refuse IP addresses as RP ids)."""
    if not rp_id or ":" in rp_id or not _HOST.match(rp_id):
        return False
    try:
        ipaddress.ip_address(rp_id)
    except ValueError:
        return True
    return False


def _within(hostname: str, rp_id: str) -> bool:
    return hostname == rp_id or hostname.endswith("." + rp_id)


class RelyingParty:
    """Who the passkeys are for: the RP id and the origins a ceremony may come from.

    Configured (``webauthn_rp_id`` / ``webauthn_origins``, what a site behind a proxy should do): checked here,
    at start-up, so a mismatch refuses to start rather than failing every ceremony. Left out: the request's
    own host (over HTTPS, or plain HTTP on ``localhost`` as in the demo), which is safe since the browser puts
    the page's real origin in what it signs and each passkey is kept with the RP id it was made for.
    """

    def __init__(self, rp_id: str | None, origins: Sequence[str] | None, user_verification: str,
                 name: str) -> None:
        if user_verification not in ("preferred", "required"):
            raise ValueError("webauthn_user_verification must be 'preferred' or 'required'")
        self.user_verification = user_verification
        self.name = name
        self.origins = tuple(o.rstrip("/").lower() for o in (origins or ()))
        hostnames = []
        for origin in self.origins:
            parts = urlsplit(origin)
            secure = parts.scheme == "https" or (parts.scheme == "http" and _is_localhost(parts.hostname or ""))
            if not secure or not parts.hostname or parts.path or parts.query:
                raise ValueError(f"webauthn_origins: {origin!r} is not an https:// origin (or http://localhost)")
            hostnames.append(parts.hostname)
        self.rp_id = (rp_id or (hostnames[0] if hostnames else "")).lower() or None
        if self.rp_id is not None and not _valid_rp_id(self.rp_id):
            raise ValueError(f"webauthn_rp_id {self.rp_id!r} is not a domain name")
        for origin, hostname in zip(self.origins, hostnames, strict=True):
            if self.rp_id and not _within(hostname, self.rp_id):
                raise ValueError(f"webauthn_rp_id {self.rp_id!r} does not match webauthn_origins {origin!r}")

    @property
    def uv_required(self) -> bool:
        return self.user_verification == "required"

    def resolve(self, host: str, https: bool) -> tuple[str, tuple[str, ...]]:
        """(RP id, origins) for a request to ``host`` (its Host header); PasskeyError when passkeys cannot be
        used at that address."""
        if self.origins:
            assert self.rp_id is not None
            return self.rp_id, self.origins
        host = host.strip().lower()
        hostname = host.rsplit(":", 1)[0] if _HOST.match(host) else ""
        if not _valid_rp_id(hostname) or (self.rp_id and not _within(hostname, self.rp_id)):
            raise PasskeyError("passkeys_unavailable", N_("Passkeys cannot be used at this address."))
        if not https and not _is_localhost(hostname):
            raise PasskeyError("passkeys_unavailable", N_("Passkeys need a secure (HTTPS) connection."))
        return self.rp_id or hostname, (("https://" if https else "http://") + host,)


def owner_key(keys: Keys, credential_id: str) -> str:
    """Where the one account a credential id belongs to is kept (a slot of its own, not the account's)."""
    return keys.shared("wa", "{c:" + hashlib.sha256(credential_id.encode()).hexdigest()[:40] + "}")


def release(keys: Keys, account_id: str, cids: Sequence[str]) -> Op[None]:
    """Forget that these credential ids are this account's, after the account's own step removed them. A
    separate step (each id is in its own slot); should it fail, ``Passkeys._claim`` takes the stale claim over."""
    if not cids:
        return
    owned = yield batch([cmd("GET", owner_key(keys, c)) for c in cids])
    mine = [c for c, v in zip(cids, owned, strict=True) if v and str(v).rpartition("|")[0] == account_id]
    if mine:
        yield batch([cmd("DEL", owner_key(keys, c)) for c in mine])


def _session_digest(sid: str) -> str:
    # The session id is a bearer secret: only a digest of it is kept (as for pending seeds).
    return hashlib.sha256(sid.encode()).hexdigest()[:32]


def _digest(challenge: bytes) -> str:
    # Only a digest of a challenge is stored: whoever reads the store learns nothing to answer with.
    return hashlib.sha256(challenge).hexdigest()


def _challenge_of(client_data_json: bytes) -> bytes:
    return parse_client_data_json(client_data_json).challenge


class Passkeys:
    def __init__(self, keys: Keys, twofactor: TwoFactor, rp: RelyingParty, user_key: bytes,
                 clock: Callable[[], float]) -> None:
        self.keys, self.twofactor, self.rp, self.user_key, self.clock = keys, twofactor, rp, user_key, clock

    # -- keys --------------------------------------------------------------------------------------
    def _k(self, account_id: str, part: str) -> str:
        return self.keys.account(account_id, part)

    def _parts(self, account_id: str) -> tuple[str, ...]:
        return tuple(self._k(account_id, p) for p in PARTS)

    def _challenge_key(self, account_id: str, purpose: str, sid: str) -> str:
        # One pending challenge per gate session and purpose (a new one replaces it): what a session can make
        # the store keep is bounded, and a challenge can only be answered in the session it was given to.
        return self._k(account_id, f"wa:ch:{purpose}:{_session_digest(sid)}")

    def user_handle(self, account_id: str) -> bytes:
        # Stable per account, and neither the account id nor anything else a person would recognise (the spec
        # asks for no personal data in it); derived, so nothing has to be stored.
        return hmac.new(self.user_key, account_id.encode(), hashlib.sha256).digest()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- reading -----------------------------------------------------------------------------------
    def list(self, account_id: str) -> Op[list[Passkey]]:
        creds, names, _counts, used = yield batch([cmd("HGETALL", k) for k in self._parts(account_id)])
        out = []
        for cid, raw in (creds or {}).items():
            data = json.loads(raw)
            last = (used or {}).get(cid)
            out.append(Passkey(cid, (names or {}).get(cid, ""), float(data["added"]) / 1000,
                               int(last) / 1000 if last else None, bool(data.get("synced")), data["rp"]))
        return sorted(out, key=lambda p: (p.added, p.id))

    # -- challenges --------------------------------------------------------------------------------
    def _new_challenge(self, account_id: str, purpose: str, sid: str, payload: str) -> Op[bytes]:
        challenge = secrets.token_bytes(32)
        value = f"{_digest(challenge)}|{self._now_ms() + CHALLENGE_TTL_MS}|{payload}"
        yield cmd("SET", self._challenge_key(account_id, purpose, sid), value, "PX", CHALLENGE_TTL_MS)
        return challenge

    def _consume(self, account_id: str, purpose: str, sid: str, challenge: bytes,
                 credential_id: str = "") -> Op[tuple[str, str, int] | None]:
        keys = (self._challenge_key(account_id, purpose, sid), self._k(account_id, "wa:cred"),
                self._k(account_id, "wa:count"))
        found = yield Eval(CONSUME, keys, (_digest(challenge), credential_id, self._now_ms()))
        if not found:
            return None
        payload, cred, count = found
        return str(payload), str(cred or ""), int(count or 0)

    # -- registration ------------------------------------------------------------------------------
    def registration_options(self, account_id: str, sid: str, rp_id: str, user_name: str,
                             name: str) -> Op[dict[str, Any]]:
        existing = yield from self.list(account_id)
        if len(existing) >= MAX_PASSKEYS:
            raise PasskeyError("too_many", N_("An account can have %(num)d passkeys at most."), 409,
                               params={"num": MAX_PASSKEYS})
        challenge = yield from self._new_challenge(account_id, REGISTER, sid, name)
        options = generate_registration_options(
            rp_id=rp_id, rp_name=self.rp.name, user_name=user_name, user_id=self.user_handle(account_id),
            user_display_name=user_name, challenge=challenge, timeout=CHALLENGE_TTL_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement(self.rp.user_verification)),
            # The browser refuses an authenticator that already holds one of these: no second copy.
            exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.id)) for p in existing],
        )
        return dict(json.loads(options_to_json(options)))

    def register(self, account_id: str, sid: str, rp_id: str, origins: Sequence[str], response: str) -> Op[Added]:
        try:
            credential = parse_registration_credential_json(response)
            challenge = _challenge_of(credential.response.client_data_json)
        except Exception as exc:  # py_webauthn's parsers let more than WebAuthnException through
            raise PasskeyError("bad_request", N_("That is not a passkey registration.")) from exc
        taken = yield from self._consume(account_id, REGISTER, sid, challenge)
        if taken is None:
            raise PasskeyError("challenge", N_("The request expired or was already used. Please try again."))
        name = taken[0]
        try:
            verified = verify_registration_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=rp_id,
                expected_origin=list(origins), require_user_verification=self.rp.uv_required)
        except Exception as exc:  # WebAuthnException, and cbor2/cryptography errors on malformed data
            raise PasskeyError("refused", N_("The passkey was not accepted: %(reason)s"),
                               params={"reason": str(exc)}) from exc
        cid = bytes_to_base64url(verified.credential_id)
        now = self._now_ms()
        claimed = yield from self._claim(account_id, cid, now)
        if not claimed:
            raise PasskeyError("taken", N_("This passkey is already registered to another account."), 409)
        transports = [t.value for t in (credential.response.transports or [])
                      if isinstance(t, AuthenticatorTransport)]
        data = json.dumps({"pk": bytes_to_base64url(verified.credential_public_key), "rp": rp_id, "added": now,
                           "synced": verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
                           "backed_up": verified.credential_backed_up, "transports": transports,
                           "aaguid": verified.aaguid}, separators=(",", ":"))
        codes = backup_codes.generate(10)
        digests = [self.twofactor.backup_hasher.digest(account_id, c) for c in codes]
        keys = (self._k(account_id, "mfa"), *self._parts(account_id)[:3], self._k(account_id, "backup"))
        state, epoch = yield Eval(ADD, keys, (cid, data, name, verified.sign_count, now, MAX_PASSKEYS, *digests))
        if int(state) == -1:  # already this account's: its claim stays
            raise PasskeyError("taken", N_("This passkey is already registered to your account."), 409)
        if int(state) < 0:
            yield from self._release(account_id, [cid])
            raise PasskeyError("too_many", N_("An account can have %(num)d passkeys at most."), 409,
                               params={"num": MAX_PASSKEYS})
        self.twofactor.audit("webauthn_added", account_id, credential=cid[:16], name=name)
        if int(state) == 1:
            self.twofactor.audit("enabled", account_id, method="webauthn")
        passkey = Passkey(cid, name, now / 1000, None, json.loads(data)["synced"], rp_id)
        return Added(passkey, int(state) == 1, int(epoch), codes if int(state) == 1 else [])

    def _claim(self, account_id: str, cid: str, now: int) -> Op[bool]:
        """Make ``cid`` this account's, unless another account holds it. A claim left behind (its account
        lost the credential while the index step failed) is taken over once it is past the grace period."""
        key = owner_key(self.keys, cid)
        got = yield Eval(CLAIM, (key,), (account_id, now, ""))
        if got == "ok":
            return True
        owner, _, since = str(got).rpartition("|")
        if since.isdigit() and now - int(since) > CLAIM_GRACE_MS:
            holds = yield cmd("HEXISTS", self._k(owner, "wa:cred"), cid)
            if not holds:
                got = yield Eval(CLAIM, (key,), (account_id, now, str(got)))
                return bool(got == "ok")
        return False

    def _release(self, account_id: str, cids: Sequence[str]) -> Op[None]:
        yield from release(self.keys, account_id, cids)

    # -- authentication ----------------------------------------------------------------------------
    def authentication_options(self, account_id: str, sid: str, rp_id: str) -> Op[dict[str, Any]]:
        existing = [p for p in (yield from self.list(account_id)) if p.rp_id == rp_id]
        if not existing:
            raise PasskeyError("no_passkey", N_("This account has no passkey for this site."), 404)
        challenge = yield from self._new_challenge(account_id, AUTHENTICATE, sid, "")
        options = generate_authentication_options(
            rp_id=rp_id, challenge=challenge, timeout=CHALLENGE_TTL_MS,
            allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.id)) for p in existing],
            user_verification=UserVerificationRequirement(self.rp.user_verification))
        return dict(json.loads(options_to_json(options)))

    def authenticate(self, account_id: str, sid: str, rp_id: str, origins: Sequence[str], response: str,
                     ip: str = "") -> Op[str]:
        """Check an assertion; the credential id used. Failures count against the same throttle as wrong
        TOTP codes (charged before anything is looked at)."""
        try:
            credential = parse_authentication_credential_json(response)
            challenge = _challenge_of(credential.response.client_data_json)
            cid = bytes_to_base64url(credential.raw_id)
        except Exception as exc:  # py_webauthn's parsers let more than WebAuthnException through
            raise PasskeyError("bad_request", N_("That is not a passkey answer.")) from exc
        refusal: list[PasskeyError] = []

        def check() -> Op[bool]:
            try:
                yield from self._check_assertion(account_id, sid, rp_id, origins, credential, challenge, cid, ip)
            except PasskeyError as exc:
                refusal.append(exc)
                return False
            return True

        outcome = yield from self.twofactor.check_password(account_id, ip, check())
        if outcome.reason == "locked":
            VERIFICATIONS.labels("webauthn", "locked").inc()
            wait = max(1, round(outcome.retry_after))
            raise PasskeyError("locked", "Too many attempts. Try again in %(num)d seconds.", 429,
                               outcome.retry_after, params={"num": wait})
        if not outcome.ok:
            VERIFICATIONS.labels("webauthn", "wrong").inc()
            refused = refusal[0] if refusal else PasskeyError("refused", N_("The passkey was not accepted."), 401)
            refused.retry_after = outcome.retry_after
            raise refused
        VERIFICATIONS.labels("webauthn", "ok").inc()
        self.twofactor.audit("webauthn_used", account_id, credential=cid[:16], ip=ip)
        return cid

    def _check_assertion(self, account_id: str, sid: str, rp_id: str, origins: Sequence[str], credential: Any,
                         challenge: bytes, cid: str, ip: str) -> Op[None]:
        taken = yield from self._consume(account_id, AUTHENTICATE, sid, challenge, cid)
        if taken is None:
            raise PasskeyError("challenge", N_("The request expired or was already used. Please try again."), 401)
        _, raw, _count = taken
        if not raw:
            raise PasskeyError("refused", N_("That passkey is not registered to this account."), 401)
        data = json.loads(raw)
        if data["rp"] != rp_id:
            raise PasskeyError("refused", N_("That passkey was made for another site."), 401)
        try:
            verified = verify_authentication_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=rp_id,
                expected_origin=list(origins), credential_public_key=base64url_to_bytes(data["pk"]),
                # The counter is checked (and moved) atomically by USE below, not here against a copy.
                credential_current_sign_count=0, require_user_verification=self.rp.uv_required)
        except Exception as exc:  # WebAuthnException, and cbor2/cryptography errors on malformed data
            raise PasskeyError("refused", N_("The passkey was not accepted: %(reason)s"), 401,
                               params={"reason": str(exc)}) from exc
        keys = (self._k(account_id, "wa:cred"), self._k(account_id, "wa:count"), self._k(account_id, "wa:used"))
        used = yield Eval(USE, keys, (cid, verified.new_sign_count, self._now_ms()))
        if int(used) == 0:
            self.twofactor.audit("webauthn_clone_suspected", account_id, credential=cid[:16], ip=ip,
                                 sign_count=verified.new_sign_count)
            raise PasskeyError("refused", N_("This passkey's counter went back: it may have been copied. "
                                             "Use another way to sign in and remove it."), 401)
        if int(used) < 0:
            raise PasskeyError("refused", N_("That passkey is not registered to this account."), 401)

    # -- changes -----------------------------------------------------------------------------------
    def rename(self, account_id: str, cid: str, name: str) -> Op[bool]:
        done = yield Eval(RENAME, self._parts(account_id)[:2], (cid, name))
        return bool(done)

    def remove(self, account_id: str, cid: str) -> Op[tuple[int, int]]:
        """(0 none, 1 removed, 2 removed and 2FA is now off; the epoch)."""
        keys = (self._k(account_id, "mfa"), *self._parts(account_id),
                *(self._k(account_id, p) for p in ("backup", "enroll", "trust")))
        state, epoch = yield Eval(REMOVE, keys, (cid,))
        if int(state):
            yield from self._release(account_id, [cid])
            self.twofactor.audit("webauthn_removed", account_id, credential=cid[:16])
            if int(state) == 2:
                self.twofactor.audit("disabled", account_id, by="user", method="webauthn")
        return int(state), int(epoch)


def clean_name(name: str) -> str:
    """A passkey's name as shown: printable, one line, at most MAX_NAME characters."""
    text = " ".join("".join(ch for ch in name if ch.isprintable()).split())
    return text[:MAX_NAME]
