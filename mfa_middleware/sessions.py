"""Gate sessions: a record in the store, and a signed *ticket* in the cookie.

The cookie is a ticket signed with HMAC-SHA256 (itsdangerous ``Signer``): the session id (256 bits from
``secrets``), the account it belongs to, the account's session epoch when it was issued, when it was
created, when it passed the second factor, and when it was last seen. A tampered or foreign cookie is
refused before any store lookup, and a request from a verified session can be let through with no store
round trip at all (``Gate.quick``): the ticket says who and when, and a per-account epoch cached for at
most a second says whether disable, regenerate or "sign out everywhere" ended it.

The record (found by the id) holds what must stay server-side: the CSRF token and backup codes waiting to
be shown once. The idle timeout is checked against the ticket's last-seen time, which is re-issued at
most once a minute; the absolute timeout against its creation time (and is the record's TTL).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer

from . import csrf
from .crypto import derive_key
from .store import Keys, Op, cmd
from .store.effects import batch

SESSION_COOKIE = "mfa_session"
TRUST_COOKIE = "mfa_trust"


def cookie_name(base: str, https: bool) -> str:
    """``__Host-`` prefixed over HTTPS: the browser then insists on Secure, Path=/ and no Domain."""
    return f"__Host-{base}" if https else base


@dataclass(frozen=True)
class GateSession:
    sid: str
    account: str
    epoch: int
    created: float
    csrf: str
    verified_at: float | None = None
    method: str = ""
    codes: str = ""  # encrypted backup codes waiting to be shown once
    reauth_at: float | None = None  # when the password was last re-entered (step-up without 2FA)
    noticed: str = ""  # "1" once this session was told it must set up 2FA soon (``grace``)

    def fields(self) -> dict[str, str]:
        return {
            "account": self.account, "epoch": str(self.epoch), "created": repr(self.created),
            "csrf": self.csrf, "verified_at": repr(self.verified_at) if self.verified_at else "",
            "method": self.method, "codes": self.codes,
            "reauth_at": repr(self.reauth_at) if self.reauth_at else "", "noticed": self.noticed,
        }


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the session cookie proves without asking the store."""

    sid: str
    account: str
    epoch: int
    created: int
    verified_at: int  # 0 = not yet
    seen: int
    method: str


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


class Sessions:
    def __init__(
        self,
        keys: Keys,
        secret_key: str,
        *,
        idle_timeout: int = 30 * 60,
        absolute_timeout: int = 12 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.clock = clock
        signing_key = derive_key(secret_key, "gate-session-cookie").hex()
        self.signer = Signer(signing_key, salt="mfa-session-ticket", digest_method=hashlib.sha256)
        self.trust_signer = URLSafeTimedSerializer(signing_key, salt="mfa-trust")
        # Re-issue the ticket (to move its last-seen time) at most this often: idle-timeout precision.
        self.refresh_after = max(1, min(60, idle_timeout // 4))
        # Cookies whose signature already checked out, by their exact text: a browser sends the same
        # cookie many times, and the HMAC is most of the gate's per-request cost. Only verified strings
        # get in, so the cache cannot be used to forge anything; timeouts are still checked every time.
        self._verified: dict[str, Ticket] = {}
        self.max_verified = 50_000

    def _key(self, sid: str) -> str:
        return self.keys.shared("session", sid)

    # -- cookies -------------------------------------------------------------------------------
    def dumps(self, session: GateSession, seen: float | None = None) -> str:
        fields = ("t1", session.sid, _b64(session.account), str(session.epoch), str(int(session.created)),
                  str(int(session.verified_at or 0)), str(int(self.clock() if seen is None else seen)),
                  session.method)
        return self.signer.sign("|".join(fields)).decode()

    def loads(self, value: str | None) -> Ticket | None:
        """The ticket when the signature holds and neither timeout has passed; else None."""
        ticket = self.signed(value)
        if ticket is None:
            return None
        now = self.clock()
        if now >= ticket.created + self.absolute_timeout or now >= ticket.seen + self.idle_timeout:
            return None
        return ticket

    def signed(self, value: str | None) -> Ticket | None:
        """The ticket when the signature holds, timeouts *not* checked (``loads`` and ``Gate.quick`` do)."""
        if not value or len(value) > 1024:
            return None
        ticket = self._verified.get(value)
        if ticket is None:
            ticket = self._unsign(value)
            if ticket is None:
                return None
            if len(self._verified) >= self.max_verified:
                self._verified.clear()
            self._verified[value] = ticket
        return ticket

    def _unsign(self, value: str) -> Ticket | None:
        try:
            parts = self.signer.unsign(value).decode().split("|")
            if len(parts) != 8 or parts[0] != "t1" or len(parts[1]) < 32:
                return None
            return Ticket(parts[1], _unb64(parts[2]), int(parts[3]), int(parts[4]), int(parts[5]), int(parts[6]),
                          parts[7])
        except (BadSignature, ValueError, UnicodeError):
            return None

    def stale(self, ticket: Ticket) -> bool:
        """Time to re-issue the cookie so that its last-seen time keeps up with an active user."""
        return self.clock() - ticket.seen >= self.refresh_after

    def dumps_trust(self, account: str, token_id: str) -> str:
        return str(self.trust_signer.dumps([account, token_id]))

    def loads_trust(self, value: str | None, max_age: int) -> tuple[str, str] | None:
        if not value:
            return None
        try:
            data = self.trust_signer.loads(value, max_age=max_age)
        except (BadSignature, UnicodeError):  # UnicodeError: a lone surrogate cannot even be checked
            return None
        if isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data):
            return data[0], data[1]
        return None

    # -- records -------------------------------------------------------------------------------
    def load(self, sid: str) -> Op[GateSession | None]:
        f = yield cmd("HGETALL", self._key(sid))
        if not f or "account" not in f:
            return None
        created = float(f.get("created") or 0)
        if created + self.absolute_timeout <= self.clock():
            yield cmd("DEL", self._key(sid))
            return None
        return GateSession(
            sid=sid, account=f["account"], epoch=int(f.get("epoch") or 0), created=created,
            csrf=f.get("csrf", ""), verified_at=float(f["verified_at"]) if f.get("verified_at") else None,
            method=f.get("method", ""), codes=f.get("codes", ""),
            reauth_at=float(f["reauth_at"]) if f.get("reauth_at") else None, noticed=f.get("noticed", ""),
        )

    def _save(self, s: GateSession) -> Op[None]:
        key = self._key(s.sid)
        ttl_ms = int((s.created + self.absolute_timeout - self.clock()) * 1000)
        yield batch([cmd("DEL", key), cmd("HSET", key, *_flat(s.fields())), cmd("PEXPIRE", key, max(ttl_ms, 1))])

    def create(self, account: str, epoch: int) -> Op[GateSession]:
        s = GateSession(secrets.token_urlsafe(32), account, epoch, self.clock(), csrf.new_token())
        yield from self._save(s)
        return s

    def rotate(self, old: GateSession, **changes: object) -> Op[GateSession]:
        """The same session under a new id (and CSRF token): done whenever privilege changes."""
        new = replace(old, sid=secrets.token_urlsafe(32), csrf=csrf.new_token(), **changes)  # type: ignore[arg-type]
        yield from self._save(new)
        yield cmd("DEL", self._key(old.sid))
        return new

    def update(self, s: GateSession, **changes: object) -> Op[GateSession]:
        new = replace(s, **changes)  # type: ignore[arg-type]
        yield from self._save(new)
        return new

    def delete(self, sid: str) -> Op[None]:
        yield cmd("DEL", self._key(sid))


def _flat(fields: dict[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in fields.items():
        out += [k, v]
    return out
