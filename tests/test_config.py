from __future__ import annotations

import logging

import pytest

from mfa_middleware.config import ConfigError, Settings
from mfa_middleware.store import StoreURLError, parse_store_url

KEYS = {"MFA_SECRET_KEY": "s" * 32, "MFA_ENCRYPTION_KEY": "e" * 32}


def test_library_use_requires_both_secrets() -> None:
    with pytest.raises(ConfigError, match="MFA_SECRET_KEY and MFA_ENCRYPTION_KEY"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="MFA_ENCRYPTION_KEY"):
        Settings.from_env({"MFA_SECRET_KEY": "s" * 32})


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ConfigError, match="too short"):
        Settings.from_env({"MFA_SECRET_KEY": "short", "MFA_ENCRYPTION_KEY": "e" * 32})


def test_demo_invents_ephemeral_keys_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mfa_middleware"):
        s = Settings.from_env({}, demo=True)
    assert s.ephemeral_secrets and len(s.secret_key) >= 32 and s.encryption_keys
    assert "random keys" in caplog.text


def test_all_variables() -> None:
    s = Settings.from_env({
        **KEYS, "MFA_ENCRYPTION_KEY": "k" * 20 + ", " + "o" * 20, "REDIS_URL": "redis://r:1/2", "HOST": "0.0.0.0",
        "PORT": "9000", "DEMO_SEED": "0", "DDNS_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1/32",
        "DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": "ns:5353", "DDNS_DNS_ZONES": "a.test,b.test",
        "DDNS_TSIG_NAME": "k", "DDNS_TSIG_SECRET": "c2VjcmV0", "DDNS_TSIG_ALGORITHM": "hmac-sha512",
        "DDNS_DNS_TTL": "30", "METRICS_PATH": "",
    })
    assert s.encryption_keys == ("k" * 20, "o" * 20)
    assert (s.redis_url, s.host, s.port, s.demo_seed) == ("redis://r:1/2", "0.0.0.0", 9000, False)
    assert s.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    assert (s.dns_backend, s.dns_server, s.dns_zones, s.dns_ttl) == ("rfc2136", "ns:5353", ("a.test", "b.test"), 30)
    assert (s.tsig_name, s.tsig_algorithm, s.metrics_path) == ("k", "hmac-sha512", "")


def test_bad_numbers_are_clear() -> None:
    with pytest.raises(ConfigError, match="PORT must be a whole number"):
        Settings.from_env({**KEYS, "PORT": "eighty"})


@pytest.mark.parametrize(
    ("url", "kind", "nodes", "service"),
    [
        (None, "memory", (), ""),
        ("", "memory", (), ""),
        ("redis://127.0.0.1:6379/0", "redis", (), ""),
        ("rediss://:pw@cache.example:6380/1", "redis", (), ""),
        ("unix:///run/redis.sock", "redis", (), ""),
        ("redis+sentinel://s1:26379,s2,s3:26380/mymaster/2", "sentinel",
         (("s1", 26379), ("s2", 26379), ("s3", 26380)), "mymaster"),
        ("redis+cluster://n1:7000,n2:7001", "cluster", (("n1", 7000), ("n2", 7001)), ""),
        ("rediss+cluster://u:p@[::1]:7000", "cluster", (("::1", 7000),), ""),
    ],
)
def test_store_urls(url: str | None, kind: str, nodes: tuple[tuple[str, int], ...], service: str) -> None:
    spec = parse_store_url(url)
    assert spec.kind == kind and spec.nodes == nodes and spec.service == service
    if kind != "memory":
        assert spec.options["socket_timeout"] == 1.0  # bounded by default: fail closed fast


def test_store_url_details() -> None:
    spec = parse_store_url("redis+sentinel://:secret@s1/mymaster/3?socket_timeout=0.5")
    assert (spec.password, spec.db, spec.options["socket_timeout"]) == ("secret", 3, 0.5)
    assert parse_store_url("rediss+cluster://n1:7000").tls


@pytest.mark.parametrize(
    "url", ["http://x", "redis+sentinel://s1:26379", "redis+cluster://", "redis+cluster://n1:port",
            "redis://x?socket_timeout=soon"]
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(StoreURLError):
        parse_store_url(url)
