"""Constructor arguments shared by the ASGI and WSGI adapters, with the environment as fallback."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from typing_extensions import Unpack

from .config import ConfigError
from .gate import Gate
from .i18n import LocaleHook
from .passwords import Argon2Profile
from .policy import PolicyFn
from .store import Keys
from .totp import Digest
from .twofactor import AuditHook, ThrottlePolicy


class GateOptions(TypedDict, total=False):
    """The gate's settings (defaults and meaning: ``gate.Gate``), taken as keywords by ``MFAMiddleware`` and
    ``MFAWsgiMiddleware``. Spelled out (not ``**options: Any``) so that a misspelt option is a type error and
    ``Middleware(MFAMiddleware, ...)`` type-checks in Starlette and FastAPI apps."""

    prefix: str
    policy: str | PolicyFn
    grace: float
    step_up: Mapping[str, int] | None
    exempt: Sequence[str]
    issuer: str
    remember_days: int
    password_checker: Callable[[str, str], bool] | None
    argon2_profile: Argon2Profile
    login_url: str
    logout_url: str
    template_dirs: Sequence[str | Path]
    audit: AuditHook | None
    idle_timeout: int
    absolute_timeout: int
    throttle: ThrottlePolicy | None
    totp_drift: int
    totp_digest: Digest
    totp_digits: int
    totp_period: int
    account_label: Callable[[str], str] | None
    revocation_ttl: float
    content_security_policy: str
    trusted_proxies: Sequence[str] | None
    webauthn_user_verification: str
    webauthn_rp_id: str | None
    webauthn_origins: Sequence[str] | None
    clock: Callable[[], float]
    locale: LocaleHook | None


def gate_and_store_url(
    *, secret_key: str | None, encryption_keys: Sequence[str] | str | None, redis_url: str | None,
    keys: Keys | None, **options: Unpack[GateOptions],
) -> tuple[Gate, str | None]:
    secret = secret_key or os.environ.get("MFA_SECRET_KEY", "")
    enc = encryption_keys or os.environ.get("MFA_ENCRYPTION_KEY", "")
    if not secret or not enc:
        raise ConfigError("the 2FA gate needs secret_key and encryption_keys "
                          "(or MFA_SECRET_KEY and MFA_ENCRYPTION_KEY in the environment)")
    url = redis_url if redis_url is not None else os.environ.get("REDIS_URL") or None
    _passkey_settings_from_env(options)
    return Gate(keys=keys or Keys(), secret_key=secret, encryption_keys=enc, **options), url


def _passkey_settings_from_env(options: GateOptions) -> None:
    """``MFA_WEBAUTHN_RP_ID``, ``MFA_WEBAUTHN_ORIGINS`` (comma-separated) and ``MFA_WEBAUTHN_USER_VERIFICATION``
    where the host app passed none: how an operator sets the origin of a site behind a proxy (docs/passkeys.md)."""
    env = os.environ
    if "webauthn_rp_id" not in options and env.get("MFA_WEBAUTHN_RP_ID", "").strip():
        options["webauthn_rp_id"] = env["MFA_WEBAUTHN_RP_ID"].strip()
    if "webauthn_origins" not in options and env.get("MFA_WEBAUTHN_ORIGINS", "").strip():
        options["webauthn_origins"] = [o.strip() for o in env["MFA_WEBAUTHN_ORIGINS"].split(",") if o.strip()]
    if "webauthn_user_verification" not in options and env.get("MFA_WEBAUTHN_USER_VERIFICATION", "").strip():
        options["webauthn_user_verification"] = env["MFA_WEBAUTHN_USER_VERIFICATION"].strip()
