"""Key derivation, TOTP-seed encryption at rest, and constant-time comparison."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_CHARS = 16
_HKDF_SALT = b"mfa-ddns/hkdf/v1"  # a fixed, application-specific salt: keys differ from other apps' uses
_SEED_PURPOSE = "totp-seed-encryption"
_VERSION = "v1"
_NONCE_BYTES = 12  # 96 bits: the nonce size GCM is designed for
_TOKEN = re.compile(r"v1\.([0-9a-f]{8})\.([A-Za-z0-9_-]+)")


class SeedDecryptError(ValueError):
    """A stored seed token could not be decrypted: tampered, another account's, or an unknown key."""


def derive_key(material: str, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose`` from an operator-supplied secret.

    HKDF lets a single configured secret yield independent keys (cookie signing, backup-code HMAC, ...), so
    a leak of one derived key reveals neither the secret nor its siblings.
    """
    if len(material) < MIN_SECRET_CHARS:
        raise ValueError(
            f"secret key is too short ({len(material)} characters); use at least {MIN_SECRET_CHARS}, "
            "e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if not purpose:
        raise ValueError("derive_key needs a non-empty purpose")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose.encode("utf-8"))
    return hkdf.derive(material.encode("utf-8"))


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Equality whose timing does not reveal where the inputs first differ."""
    return hmac.compare_digest(_as_bytes(a), _as_bytes(b))


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@dataclass(frozen=True)
class _Key:
    key_id: str
    aead: AESGCM


def _make_key(material: str) -> _Key:
    key = derive_key(material, _SEED_PURPOSE)
    # The id comes from a separate derivation so publishing it in every token says nothing about the key.
    key_id = derive_key(material, _SEED_PURPOSE + "/key-id")[:4].hex()
    return _Key(key_id, AESGCM(key))


class SeedCipher:
    """AES-GCM encryption of TOTP seeds, with key rotation.

    ``keys`` is the ``MFA_ENCRYPTION_KEY`` list (a comma-separated string is accepted too): the first key
    encrypts, every key decrypts, so an operator rotates by putting a new key first and re-encrypting the
    tokens for which ``needs_rotation`` is true.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        materials = keys.split(",") if isinstance(keys, str) else list(keys)
        cleaned = [m.strip() for m in materials if m.strip()]
        if not cleaned:
            raise ValueError("no encryption key given (MFA_ENCRYPTION_KEY is empty)")
        self._keys = [_make_key(m) for m in cleaned]

    def encrypt(self, account_id: str, seed: str) -> str:
        """A text token ``v1.<keyid>.<base64url(nonce + ciphertext)>`` bound to ``account_id``."""
        key = self._keys[0]
        # Random nonces: at 96 bits, reuse under one key stays negligible for far more seeds than we store.
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, seed.encode("utf-8"), _associated_data(key.key_id, account_id))
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{_VERSION}.{key.key_id}.{body}"

    def decrypt(self, account_id: str, token: str) -> str:
        """The seed in ``token``; raises SeedDecryptError if it was altered, is another account's, or its
        key is no longer configured."""
        key_id, blob = _parse(token)
        candidates = [k for k in self._keys if k.key_id == key_id]
        if not candidates:
            raise SeedDecryptError(f"seed was encrypted with a key that is not configured (key id {key_id})")
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        for key in candidates:  # more than one only if two keys share a 32-bit id
            try:
                plain = key.aead.decrypt(nonce, sealed, _associated_data(key_id, account_id))
            except InvalidTag:
                continue
            return plain.decode("utf-8")
        raise SeedDecryptError("seed token failed authentication (tampered, or another account's)")

    def needs_rotation(self, token: str) -> bool:
        """True when ``token`` was not made with the current (first) key, including unreadable tokens."""
        try:
            key_id, _ = _parse(token)
        except SeedDecryptError:
            return True
        return key_id != self._keys[0].key_id


def _associated_data(key_id: str, account_id: str) -> bytes:
    # The header is authenticated too, so a token cannot be relabelled; the account id binds the seed to
    # its account, so copying one account's token onto another fails.
    return f"{_VERSION}.{key_id}.".encode("ascii") + account_id.encode("utf-8")


def _parse(token: str) -> tuple[str, bytes]:
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise SeedDecryptError("not a seed token (expected v1.<keyid>.<data>)")
    body = match.group(2)
    try:
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SeedDecryptError("seed token data is not valid base64") from exc
    if len(blob) < _NONCE_BYTES + 16:  # nonce + GCM tag at least
        raise SeedDecryptError("seed token is truncated")
    return match.group(1), blob
