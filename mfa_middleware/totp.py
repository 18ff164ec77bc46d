"""Time-based one-time passwords (RFC 6238), pure and I/O-free.

The store records which step an account last used (atomically, elsewhere); this module only computes codes
and tells which step a submitted code belongs to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

from .i18n import ascii_digits

Digest = Literal["sha1", "sha256", "sha512"]

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_SEED_BYTES = 20  # 160 bits: RFC 4226's recommended length and the ASVS minimum.
_SEPARATORS = str.maketrans("", "", " -\t")


@dataclass(frozen=True)
class TotpParams:
    """How codes are made. The defaults are the only combination every authenticator app honours."""

    digest: Digest = "sha1"
    digits: int = 6
    period: int = 30
    drift: int = 1  # steps accepted on each side of "now", for clock skew and slow typists
    issuer: str = "mfa-ddns"  # the name the authenticator app shows next to the account

    def __post_init__(self) -> None:
        if self.digest not in _DIGESTS:
            raise ValueError(f"digest must be one of {sorted(_DIGESTS)}, not {self.digest!r}")
        if self.digits not in (6, 8):
            raise ValueError(f"digits must be 6 or 8, not {self.digits!r}")
        if self.period <= 0:
            raise ValueError("period must be a positive number of seconds")
        if self.drift < 0:
            raise ValueError("drift must be zero or more steps")


def new_seed() -> str:
    """A fresh 160-bit seed as unpadded base32, the form authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(_SEED_BYTES)).decode("ascii").rstrip("=")


def group_key(seed: str) -> str:
    """The seed in groups of four, for people typing it in by hand."""
    return " ".join(seed[i : i + 4] for i in range(0, len(seed), 4))


def provisioning_uri(seed: str, account_name: str, params: TotpParams) -> str:
    """The otpauth:// URI an authenticator app scans.

    The issuer appears both in the label and as a parameter (Google's key-URI format); settings are only
    spelled out when non-default because some apps choke on parameters they do not expect.
    """
    label = f"{quote(params.issuer, safe='')}:{quote(account_name, safe='')}"
    query: dict[str, str | int] = {"secret": seed, "issuer": params.issuer}
    if params.digest != "sha1":
        query["algorithm"] = params.digest.upper()
    if params.digits != 6:
        query["digits"] = params.digits
    if params.period != 30:
        query["period"] = params.period
    # quote (not quote_plus): apps show a literal "+" for spaces otherwise.
    return f"otpauth://totp/{label}?{urlencode(query, quote_via=quote, safe='')}"


def current_step(now: float, params: TotpParams) -> int:
    """The RFC 6238 time step T for a Unix time."""
    return int(now // params.period)


def code_at(seed: str, step: int, params: TotpParams) -> str:
    """The code for one time step (RFC 4226 dynamic truncation)."""
    mac = hmac.new(_decode_seed(seed), struct.pack(">Q", step), _DIGESTS[params.digest]).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**params.digits).zfill(params.digits)


def match_step(seed: str, code: str, now: float, last_step: int | None, params: TotpParams) -> int | None:
    """The step a submitted code belongs to, or None.

    Only steps after ``last_step`` count, so a code that was already used (or an older one) is refused:
    the caller records the returned step atomically with the check that it is still newer.
    """
    typed = normalize_code(code, params.digits)
    if typed is None:
        return None
    now_step = current_step(now, params)
    for step in range(now_step - params.drift, now_step + params.drift + 1):
        if step < 0 or (last_step is not None and step <= last_step):
            continue
        # Constant-time so response timing does not reveal how many leading digits were right.
        if hmac.compare_digest(code_at(seed, step, params), typed):
            return step
    return None


def normalize_code(code: str, digits: int) -> str | None:
    """The code without the spaces or hyphens people type, or None unless it is exactly ``digits`` digits.

    Arabic-Indic and Persian digits (an Arabic or Persian keyboard) count as the digits they are; other
    Unicode digits (full-width…) that ``str.isdigit`` would accept are refused by the ASCII check.
    """
    typed = ascii_digits(code).translate(_SEPARATORS)
    if len(typed) != digits or not (typed.isascii() and typed.isdigit()):
        return None
    return typed


def _decode_seed(seed: str) -> bytes:
    # Users and apps drop the "=" padding and may change case or add spaces; restore before decoding.
    cleaned = seed.replace(" ", "").upper().rstrip("=")
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
