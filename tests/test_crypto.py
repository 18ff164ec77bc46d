"""Key derivation, seed encryption (tamper, account binding, rotation) and comparison."""

from __future__ import annotations

import base64

import pytest

from mfa_middleware.crypto import SeedCipher, SeedDecryptError, constant_time_equals, derive_key

OLD = "old-secret-key-0123456789"
NEW = "new-secret-key-9876543210"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_derive_key_is_32_bytes_deterministic_and_per_purpose() -> None:
    key = derive_key(OLD, "cookie-signing")
    assert len(key) == 32
    assert derive_key(OLD, "cookie-signing") == key
    assert derive_key(OLD, "backup-codes") != key
    assert derive_key(NEW, "cookie-signing") != key


@pytest.mark.parametrize("material", ["", "x" * 15])
def test_derive_key_refuses_short_secrets(material: str) -> None:
    with pytest.raises(ValueError, match="too short"):
        derive_key(material, "cookie-signing")


def test_short_encryption_key_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        SeedCipher(["short"])
    with pytest.raises(ValueError):
        SeedCipher([])


def test_round_trip_and_token_format() -> None:
    cipher = SeedCipher([OLD])
    token = cipher.encrypt("alice", SEED)
    version, key_id, _body = token.split(".")
    assert version == "v1" and len(key_id) == 8
    assert SEED not in token
    assert cipher.decrypt("alice", token) == SEED
    assert cipher.encrypt("alice", SEED) != token  # fresh nonce each time
    assert not cipher.needs_rotation(token)


def _flip(token: str, index: int) -> str:
    head, body = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 1
    return f"{head}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


@pytest.mark.parametrize("index", [0, 12, -1])  # nonce, ciphertext, tag
def test_tampering_is_detected(index: int) -> None:
    cipher = SeedCipher([OLD])
    with pytest.raises(SeedDecryptError):
        cipher.decrypt("alice", _flip(cipher.encrypt("alice", SEED), index))


@pytest.mark.parametrize("token", ["", "garbage", "v1.zzzzzzzz.abc", "v2.00000000.AAAA", "v1.00000000.AAAA"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(SeedDecryptError):
        SeedCipher([OLD]).decrypt("alice", token)


def test_relabelled_key_id_is_refused() -> None:
    cipher = SeedCipher([NEW, OLD])
    token = SeedCipher([OLD]).encrypt("alice", SEED)
    _, _, body = token.split(".")
    new_id = cipher.encrypt("alice", SEED).split(".")[1]
    with pytest.raises(SeedDecryptError):
        cipher.decrypt("alice", f"v1.{new_id}.{body}")


def test_wrong_account_is_refused() -> None:
    cipher = SeedCipher([OLD])
    with pytest.raises(SeedDecryptError):
        cipher.decrypt("mallory", cipher.encrypt("alice", SEED))


def test_rotation() -> None:
    old_token = SeedCipher([OLD]).encrypt("alice", SEED)
    rotated = SeedCipher([NEW, OLD])
    assert rotated.decrypt("alice", old_token) == SEED
    assert rotated.needs_rotation(old_token)
    new_token = rotated.encrypt("alice", rotated.decrypt("alice", old_token))
    assert not rotated.needs_rotation(new_token)
    assert SeedCipher([NEW]).decrypt("alice", new_token) == SEED
    with pytest.raises(SeedDecryptError, match="not configured"):
        SeedCipher([NEW]).decrypt("alice", old_token)


def test_comma_separated_string_is_accepted() -> None:
    token = SeedCipher([OLD]).encrypt("alice", SEED)
    cipher = SeedCipher(f" {NEW} , {OLD} ,")
    assert cipher.decrypt("alice", token) == SEED
    assert cipher.needs_rotation(token)
    assert cipher.needs_rotation("garbage")


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert constant_time_equals("abc", b"abc")
    assert constant_time_equals("é", "é".encode())
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals(b"abc", "abcd")
