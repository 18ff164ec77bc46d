"""Backup codes: entropy, format, normalization and keyed hashing."""

from __future__ import annotations

import math
import re

import pytest

from mfa_middleware import backup_codes
from mfa_middleware.backup_codes import BackupCodeHasher

KEY = b"k" * 32


def test_ten_distinct_codes_by_default() -> None:
    codes = backup_codes.generate()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert len(backup_codes.generate(3)) == 3


def test_entropy_is_at_least_112_bits() -> None:
    code = backup_codes.normalize(backup_codes.generate(1)[0])
    assert code is not None
    bits = len(code) * math.log2(len(set(backup_codes.ALPHABET)))
    assert bits >= 112
    assert bits == backup_codes.ENTROPY_BITS


def test_alphabet_has_no_ambiguous_characters() -> None:
    assert len(set(backup_codes.ALPHABET)) == len(backup_codes.ALPHABET) == 32
    assert not set("ilou") & set(backup_codes.ALPHABET)
    assert backup_codes.ALPHABET.islower()


def test_display_format_is_groups_of_four() -> None:
    for code in backup_codes.generate():
        assert re.fullmatch(r"([0-9a-z]{4}-){5}[0-9a-z]{4}", code)
        assert set(code.replace("-", "")) <= set(backup_codes.ALPHABET)


def test_normalize_round_trip() -> None:
    code = backup_codes.generate(1)[0]
    plain = code.replace("-", "")
    assert backup_codes.normalize(code) == plain
    assert backup_codes.normalize(code.upper()) == plain
    assert backup_codes.normalize(" " + code.replace("-", " ").upper() + "\n") == plain
    assert backup_codes.normalize(plain) == plain
    assert backup_codes.format_code(plain) == code


def test_normalize_maps_confusable_letters() -> None:
    canonical = "0123456789abcdefghjkmnpq"
    assert backup_codes.normalize("O1" + canonical[2:]) == canonical
    assert backup_codes.normalize("oI" + canonical[2:]) == canonical
    assert backup_codes.normalize("0l" + canonical[2:]) == canonical


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "abcd",
        "0123456789abcdefghjkmnp",
        "0123456789abcdefghjkmnpqr",
        "0123456789abcdefghjkmnpu",
        "0123456789abcdefghjkmnp!",
        "\uff10123456789abcdefghjkmnpq",
        "123456",
    ],
)
def test_normalize_refuses_what_cannot_be_a_code(typed: str) -> None:
    assert backup_codes.normalize(typed) is None


def test_hash_is_stable_and_accepts_any_typed_form() -> None:
    hasher = BackupCodeHasher(KEY)
    code = backup_codes.generate(1)[0]
    digest = hasher.digest("alice", code)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hasher.digest("alice", code.upper().replace("-", " ")) == digest


def test_hash_depends_on_key_account_and_code() -> None:
    code, other = backup_codes.generate(2)
    digest = BackupCodeHasher(KEY).digest("alice", code)
    assert BackupCodeHasher(b"j" * 32).digest("alice", code) != digest
    assert BackupCodeHasher(KEY).digest("bob", code) != digest
    assert BackupCodeHasher(KEY).digest("alice", other) != digest


def test_hash_refuses_non_codes_and_short_keys() -> None:
    with pytest.raises(ValueError):
        BackupCodeHasher(KEY).digest("alice", "not a code")
    with pytest.raises(ValueError):
        BackupCodeHasher(b"short")
