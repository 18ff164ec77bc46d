"""A software WebAuthn authenticator for server-side tests, built on the ``fido2`` package's CBOR and COSE
helpers and ``cryptography`` (ES256): it answers the gate's options the way a browser and a passkey would,
and can be told to lie (another origin or RP id, no user presence or verification, a counter going back)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256

UP, UV, AT = 0x01, 0x04, 0x40


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    def __init__(self, origin: str = "http://localhost", rp_id: str = "localhost", counting: bool = True,
                 credential_id: bytes | None = None) -> None:
        self.origin, self.rp_id, self.counting = origin, rp_id, counting
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = credential_id or os.urandom(32)
        self.sign_count = 0

    @property
    def id(self) -> str:
        return b64u(self.credential_id)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def _flags(self, up: bool, uv: bool) -> int:
        return (UP if up else 0) | (UV if uv else 0)

    def create(self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None,
               up: bool = True, uv: bool = True) -> str:
        """What ``navigator.credentials.create`` would give the page, as the JSON the gate takes."""
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        cose_key = ES256.from_cryptography_key(self.key.public_key())
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cbor.encode(cose_key)
        auth_data = (hashlib.sha256((rp_id or self.rp_id).encode()).digest() + bytes([self._flags(up, uv) | AT])
                     + self.sign_count.to_bytes(4, "big") + attested)
        attestation = cbor.encode({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps({"id": self.id, "rawId": self.id, "type": "public-key",
                           "response": {"clientDataJSON": b64u(client_data), "attestationObject": b64u(attestation),
                                        "transports": ["internal"]},
                           "clientExtensionResults": {}})

    def get(self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None,
            up: bool = True, uv: bool = True, sign_count: int | None = None) -> str:
        """What ``navigator.credentials.get`` would give the page (the counter moves on, if this one counts)."""
        if sign_count is None:
            if self.counting:
                self.sign_count += 1
            sign_count = self.sign_count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (hashlib.sha256((rp_id or self.rp_id).encode()).digest() + bytes([self._flags(up, uv)])
                     + sign_count.to_bytes(4, "big"))
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps({"id": self.id, "rawId": self.id, "type": "public-key",
                           "response": {"clientDataJSON": b64u(client_data), "authenticatorData": b64u(auth_data),
                                        "signature": b64u(signature), "userHandle": None},
                           "clientExtensionResults": {}})
