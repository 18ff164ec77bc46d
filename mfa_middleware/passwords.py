"""argon2id password hashing with deliberate parameters.

Default: OWASP's m=19 MiB, t=2, p=1 (a fraction of argon2-cffi's defaults), chosen
because the update endpoint must verify account passwords too, and its credential cache
means each credential pays this once per cache period.
"""

from __future__ import annotations

from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .metrics import ARGON2_VERIFIES

MAX_PASSWORD_BYTES = 1024
MIN_NEW_PASSWORD_CHARS = 8


class PasswordRejected(ValueError):
    """A password that cannot be used (empty, too long, not UTF-8…); the message says why."""


@dataclass(frozen=True)
class Argon2Profile:
    time_cost: int = 2
    memory_cost: int = 19 * 1024  # KiB
    parallelism: int = 1


OWASP = Argon2Profile()
# For test suites only: the same algorithm with a tiny cost.
FAST = Argon2Profile(time_cost=1, memory_cost=256, parallelism=1)


def clean_password(password: str | bytes, *, new: bool = False) -> str:
    """Return the password as text or raise ``PasswordRejected`` with a clear reason."""
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise PasswordRejected("password is not valid UTF-8") from None
    if not isinstance(password, str) or not password:
        raise PasswordRejected("password is empty")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(f"password is longer than {MAX_PASSWORD_BYTES} bytes")
    if "\x00" in password:
        raise PasswordRejected("password contains a NUL character")
    if new and len(password) < MIN_NEW_PASSWORD_CHARS:
        raise PasswordRejected(f"password must have at least {MIN_NEW_PASSWORD_CHARS} characters")
    return password


class PasswordHasher:
    """argon2id hash/verify; ``calls`` counts verifications (metrics and tests)."""

    def __init__(self, profile: Argon2Profile = OWASP) -> None:
        self.profile = profile
        self._ph = argon2.PasswordHasher(
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost,
            parallelism=profile.parallelism,
            type=argon2.Type.ID,
        )
        # Unknown users are verified against this so that their timing matches real ones.
        self._dummy = self._ph.hash("dummy password for unknown users")
        self.calls = 0

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        self.calls += 1
        ARGON2_VERIFIES.inc()
        try:
            return self._ph.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
