"""Single-use backup codes: generation, normalization of what people type, and keyed hashing.

Codes use Crockford's base32 alphabet (lower-case): it leaves out i, l, o and u, so the letters people
confuse with digits can be mapped back safely (i/l -> 1, o -> 0) instead of being rejected.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

from .i18n import ascii_digits

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
LENGTH = 24  # 24 symbols x 5 bits = 120 bits, above the 112 bits that make a keyed fast hash enough
GROUP = 4
ENTROPY_BITS = LENGTH * math.log2(len(ALPHABET))

_CONFUSIONS = str.maketrans({"i": "1", "l": "1", "o": "0"})
# Hyphen-minus plus the dashes word processors and password managers substitute for it.
_SEPARATORS = str.maketrans("", "", " \t\r\n-\u2010\u2011\u2012\u2013\u2014\u2212")
_ALPHABET_SET = frozenset(ALPHABET)
_DOMAIN = b"mfa-ddns/backup-code/v1\x00"
_MIN_KEY_BYTES = 16


def generate(n: int = 10) -> list[str]:
    """``n`` distinct fresh codes, formatted for display (``xxxx-xxxx-...``)."""
    codes: set[str] = set()
    while len(codes) < n:  # a collision at 120 bits is practically impossible; this just guarantees it
        codes.add("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))
    return [format_code(code) for code in codes]


def format_code(code: str) -> str:
    """A normalized code in groups of four joined by hyphens, easier to read and copy by hand."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def normalize(user_input: str) -> str | None:
    """The canonical form of a typed code (no separators, lower-case), or None if it cannot be a code."""
    code = ascii_digits(user_input).translate(_SEPARATORS)  # Arabic-Indic and Persian digits count too
    if not code.isascii():  # also keeps str.lower() from expanding odd Unicode characters
        return None
    code = code.lower().translate(_CONFUSIONS)
    if len(code) != LENGTH or not _ALPHABET_SET.issuperset(code):
        return None
    return code


class BackupCodeHasher:
    """Keyed hashes of backup codes, as stored.

    With >= 112 bits of entropy per code a stolen hash cannot be brute-forced even with a fast hash, so an
    HMAC (keyed, so a store dump alone is useless) replaces argon2id and keeps verification cheap.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"backup-code key must be at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    def digest(self, account_id: str, code: str) -> str:
        """Hex HMAC-SHA256 of the code bound to its account; raises ValueError if ``code`` is not a code.

        Binding the account means a hash copied to another account's set does not work there.
        """
        normalized = normalize(code)
        if normalized is None:
            raise ValueError("not a backup code; call normalize() first and refuse None")
        account = account_id.encode("utf-8")
        # Length-prefix the account id so no (account, code) pair can collide with another.
        message = _DOMAIN + len(account).to_bytes(4, "big") + account + normalized.encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
