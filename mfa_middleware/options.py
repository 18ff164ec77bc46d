"""Constructor arguments shared by the ASGI and WSGI adapters, with the environment as fallback."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .config import ConfigError
from .gate import Gate
from .store import Keys


def gate_and_store_url(
    *, secret_key: str | None, encryption_keys: Sequence[str] | str | None, redis_url: str | None,
    keys: Keys | None, **options: Any,
) -> tuple[Gate, str | None]:
    secret = secret_key or os.environ.get("MFA_SECRET_KEY", "")
    enc = encryption_keys or os.environ.get("MFA_ENCRYPTION_KEY", "")
    if not secret or not enc:
        raise ConfigError("the 2FA gate needs secret_key and encryption_keys "
                          "(or MFA_SECRET_KEY and MFA_ENCRYPTION_KEY in the environment)")
    url = redis_url if redis_url is not None else os.environ.get("REDIS_URL") or None
    return Gate(keys=keys or Keys(), secret_key=secret, encryption_keys=enc, **options), url
