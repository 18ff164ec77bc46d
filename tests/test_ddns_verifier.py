"""The update credential's keyed verifier is plain HMAC-SHA256 (the cached format stays compatible)."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from ddns_update.credentials import Credentials
from mfa_middleware.store import Keys

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))  # what a decoded Basic header holds


@given(st.binary(max_size=200), _text, _text)
def test_verifier_is_hmac_sha256(key: bytes, login: str, password: str) -> None:
    credentials = Credentials(Keys(), None, None, key)  # type: ignore[arg-type]
    key_id, _, mac = credentials.verifier(login, password).partition(":")
    assert key_id == hashlib.sha256(b"key id\x00" + key).hexdigest()[:8]
    assert mac == hmac.new(key, login.encode() + b"\x00" + password.encode(), hashlib.sha256).hexdigest()
