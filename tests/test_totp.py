"""RFC 6238 vectors, the drift window, the replay guard and malformed input."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from mfa_middleware import totp
from mfa_middleware.totp import TotpParams

# RFC 6238 Appendix B: ASCII seeds of 20, 32 and 64 bytes, 8 digits, 30 s steps.
SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890" * 6 + b"1234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
CASES = [
    (digest, t, codes[i]) for t, *codes in VECTORS for i, digest in enumerate(("sha1", "sha256", "sha512"))
]

DEFAULT = TotpParams(issuer="Example")
NOW = 1_700_000_000.0


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(("digest", "t", "expected"), CASES)
def test_rfc6238_vectors(digest: totp.Digest, t: int, expected: str) -> None:
    params = TotpParams(digest=digest, digits=8)
    seed = b32(SEEDS[digest])
    step = totp.current_step(t, params)
    assert totp.code_at(seed, step, params) == expected
    assert totp.match_step(seed, expected, t, None, params) == step


def test_seed_has_160_bits_and_is_fresh() -> None:
    seed = totp.new_seed()
    assert re.fullmatch(r"[A-Z2-7]{32}", seed)
    assert len(base64.b32decode(seed)) * 8 == 160
    assert seed != totp.new_seed()


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_drift_of_one_step_is_accepted(offset: int) -> None:
    seed = totp.new_seed()
    step = totp.current_step(NOW, DEFAULT) + offset
    assert totp.match_step(seed, totp.code_at(seed, step, DEFAULT), NOW, None, DEFAULT) == step


@pytest.mark.parametrize("offset", [-2, 2])
def test_drift_of_two_steps_is_refused(offset: int) -> None:
    seed = b32(SEEDS["sha1"])  # fixed seed: a random one could repeat a code inside the window
    step = totp.current_step(NOW, DEFAULT) + offset
    code = totp.code_at(seed, step, DEFAULT)
    window = range(step - offset - 1, step - offset + 2)
    assert all(totp.code_at(seed, s, DEFAULT) != code for s in window)
    assert totp.match_step(seed, code, NOW, None, DEFAULT) is None


def test_drift_is_configurable() -> None:
    seed = b32(SEEDS["sha1"])
    params = TotpParams(drift=2)
    step = totp.current_step(NOW, params) + 2
    assert totp.match_step(seed, totp.code_at(seed, step, params), NOW, None, params) == step
    strict = TotpParams(drift=0)
    assert totp.match_step(seed, totp.code_at(seed, step - 3, strict), NOW, None, strict) is None


def test_replay_of_used_or_older_step_is_refused() -> None:
    seed = b32(SEEDS["sha1"])
    step = totp.current_step(NOW, DEFAULT)
    code = totp.code_at(seed, step, DEFAULT)
    assert totp.match_step(seed, code, NOW, step - 1, DEFAULT) == step
    assert totp.match_step(seed, code, NOW, step, DEFAULT) is None
    assert totp.match_step(seed, code, NOW, step + 1, DEFAULT) is None
    earlier = totp.code_at(seed, step - 1, DEFAULT)
    assert totp.match_step(seed, earlier, NOW, step - 1, DEFAULT) is None


def test_spaces_and_hyphens_are_ignored() -> None:
    seed = b32(SEEDS["sha1"])
    step = totp.current_step(NOW, DEFAULT)
    code = totp.code_at(seed, step, DEFAULT)
    for typed in (f" {code[:3]} {code[3:]} ", f"{code[:3]}-{code[3:]}"):
        assert totp.match_step(seed, typed, NOW, None, DEFAULT) == step


FULLWIDTH_123456 = "\uff11\uff12\uff13\uff14\uff15\uff16"  # what a Japanese IME types
ARABIC_INDIC_123456 = "\u0661\u0662\u0663\u0664\u0665\u0666"


@pytest.mark.parametrize(
    "typed",
    ["", "      ", "12345", "1234567", "12a456", "abcdef", FULLWIDTH_123456, ARABIC_INDIC_123456, "+12345"],
)
def test_malformed_codes_are_refused(typed: str) -> None:
    seed = totp.new_seed()
    assert totp.match_step(seed, typed, NOW, None, DEFAULT) is None


def test_unicode_digits_of_the_right_code_are_refused() -> None:
    seed = b32(SEEDS["sha1"])
    code = totp.code_at(seed, totp.current_step(NOW, DEFAULT), DEFAULT)
    fullwidth = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in code)
    assert totp.match_step(seed, fullwidth, NOW, None, DEFAULT) is None


def test_provisioning_uri_defaults() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "alice@example.com", TotpParams(issuer="Example Co"))
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/Example%20Co:alice%40example.com"
    assert unquote(parts.path) == "/Example Co:alice@example.com"
    assert parse_qs(parts.query) == {"secret": ["JBSWY3DPEHPK3PXP"], "issuer": ["Example Co"]}
    assert "+" not in uri


def test_provisioning_uri_spells_out_non_defaults() -> None:
    params = TotpParams(digest="sha256", digits=8, period=60, issuer="A:B&C")
    query = parse_qs(urlsplit(totp.provisioning_uri("SEED", "bob", params)).query)
    assert query == {
        "secret": ["SEED"],
        "issuer": ["A:B&C"],
        "algorithm": ["SHA256"],
        "digits": ["8"],
        "period": ["60"],
    }


def test_issuer_colon_is_escaped_in_label() -> None:
    uri = totp.provisioning_uri("SEED", "bob", TotpParams(issuer="A:B"))
    assert urlsplit(uri).path == "/A%3AB:bob"


def test_group_key() -> None:
    assert totp.group_key("ABCDEFGHIJ") == "ABCD EFGH IJ"
    seed = totp.new_seed()
    assert totp.group_key(seed).replace(" ", "") == seed
    assert all(len(g) == 4 for g in totp.group_key(seed).split(" "))


def test_seed_typed_in_groups_and_lower_case_still_works() -> None:
    seed = totp.new_seed()
    typed = totp.group_key(seed).lower()
    assert totp.code_at(typed, 1, DEFAULT) == totp.code_at(seed, 1, DEFAULT)


@pytest.mark.parametrize("kwargs", [{"digits": 7}, {"digest": "md5"}, {"period": 0}, {"drift": -1}])
def test_bad_params_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TotpParams(**kwargs)  # type: ignore[arg-type]
