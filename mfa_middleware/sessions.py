"""Server-side gate sessions: a record in the store, found by a random id in a signed cookie.

The cookie carries only the id (256 bits from ``secrets``) signed with itsdangerous, so a tampered or
foreign cookie is refused before any store lookup. The record holds who the session belongs to (bound to
the host app's identity), the account's session epoch when it was made (a bumped epoch ends it: disable,
regenerate, sign out everywhere), when it passed the second factor, and its CSRF token. The idle timeout is
the record's TTL, renewed on use; the absolute timeout is checked against its creation time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from itsdangerous import BadSignature, URLSafeTimedSerializer

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

    def fields(self) -> dict[str, str]:
        return {
            "account": self.account, "epoch": str(self.epoch), "created": repr(self.created),
            "csrf": self.csrf, "verified_at": repr(self.verified_at) if self.verified_at else "",
            "method": self.method, "codes": self.codes,
        }


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
        self.signer = URLSafeTimedSerializer(signing_key, salt="mfa-session")
        self.trust_signer = URLSafeTimedSerializer(signing_key, salt="mfa-trust")

    def _key(self, sid: str) -> str:
        return self.keys.shared("session", sid)

    # -- cookies -------------------------------------------------------------------------------
    def dumps(self, sid: str) -> str:
        return str(self.signer.dumps(sid))

    def loads(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            sid = self.signer.loads(value, max_age=self.absolute_timeout)
        except BadSignature:  # includes SignatureExpired
            return None
        return sid if isinstance(sid, str) and len(sid) >= 32 else None

    def dumps_trust(self, account: str, token_id: str) -> str:
        return str(self.trust_signer.dumps([account, token_id]))

    def loads_trust(self, value: str | None, max_age: int) -> tuple[str, str] | None:
        if not value:
            return None
        try:
            data = self.trust_signer.loads(value, max_age=max_age)
        except BadSignature:
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
        )

    def _save(self, s: GateSession) -> Op[None]:
        key = self._key(s.sid)
        yield batch([cmd("DEL", key), cmd("HSET", key, *_flat(s.fields())),
                     cmd("PEXPIRE", key, self.idle_timeout * 1000)])

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

    def touch(self, sid: str) -> Op[None]:
        yield cmd("PEXPIRE", self._key(sid), self.idle_timeout * 1000)

    def delete(self, sid: str) -> Op[None]:
        yield cmd("DEL", self._key(sid))


def _flat(fields: dict[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in fields.items():
        out += [k, v]
    return out
