"""Settings from the environment (see CONTRACT.md). CLI flags and constructor
arguments may override them."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from .clientip import trusted_proxies_from_env

log = logging.getLogger("mfa_middleware")


class ConfigError(ValueError):
    """A setting is missing or unusable; raised at start-up, never per request."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    secret_key: str = ""
    encryption_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    demo_seed: bool = True
    trusted_proxies: tuple[str, ...] = ()
    dns_backend: str = "store"
    dns_server: str = ""
    dns_zones: tuple[str, ...] = ()
    tsig_name: str = ""
    tsig_secret: str = ""
    tsig_algorithm: str = "hmac-sha256"
    dns_ttl: int = 60
    metrics_path: str = "/metrics"
    ephemeral_secrets: bool = field(default=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, demo: bool = False) -> Settings:
        """Read the environment. Library use (``demo=False``) requires both secrets;
        the demo invents random ones and warns that sessions will not survive a restart."""
        env = os.environ if env is None else env
        secret = env.get("MFA_SECRET_KEY", "").strip()
        enc = _split(env.get("MFA_ENCRYPTION_KEY", ""))
        ephemeral = False
        if not secret or not enc:
            if not demo:
                missing = [n for n, v in (("MFA_SECRET_KEY", secret), ("MFA_ENCRYPTION_KEY", enc)) if not v]
                raise ConfigError(f"{' and '.join(missing)} must be set (at least 16 random characters)")
            log.warning("MFA_SECRET_KEY/MFA_ENCRYPTION_KEY not set: using random keys for this run only")
            secret = secret or secrets.token_urlsafe(32)
            enc = enc or (secrets.token_urlsafe(32),)
            ephemeral = True
        for name, value in (("MFA_SECRET_KEY", secret), *(("MFA_ENCRYPTION_KEY", k) for k in enc)):
            if len(value) < 16:
                raise ConfigError(f"{name} is too short: use at least 16 random characters")
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            secret_key=secret,
            encryption_keys=enc,
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8000),
            demo_seed=env.get("DEMO_SEED", "1").strip() not in ("0", "", "no", "false"),
            trusted_proxies=_split(trusted_proxies_from_env(env)),
            dns_backend=env.get("DDNS_DNS_BACKEND", "store").strip() or "store",
            dns_server=env.get("DDNS_DNS_SERVER", "").strip(),
            dns_zones=_split(env.get("DDNS_DNS_ZONES", "")),
            tsig_name=env.get("DDNS_TSIG_NAME", "").strip(),
            tsig_secret=env.get("DDNS_TSIG_SECRET", "").strip(),
            tsig_algorithm=env.get("DDNS_TSIG_ALGORITHM", "hmac-sha256").strip() or "hmac-sha256",
            dns_ttl=_int(env, "DDNS_DNS_TTL", 60),
            metrics_path=env.get("METRICS_PATH", "/metrics"),
            ephemeral_secrets=ephemeral,
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
