"""The RFC 2136 + TSIG backend against a real Knot DNS server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from ddns_update.dns_backend import (
    RecordChange,
    Rfc2136Backend,
    StoreOnlyBackend,
    backend_from_settings,
)
from mfa_middleware.config import ConfigError, Settings
from tests.dnscheck import lookup, soa_serial
from tests.servers import KnotServer


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    server = KnotServer(zones=("example.test", "sub.example.test", "other.test")).start()
    yield server
    server.cleanup()


def backend_for(knot: KnotServer, secret: str | None = None, timeout: float = 3.0) -> Rfc2136Backend:
    return Rfc2136Backend(knot.server, knot.zones, knot.key_name, secret or knot.secret, knot.algorithm,
                          ttl=60, timeout=timeout)


def test_replace_a_aaaa_and_dual(knot: KnotServer) -> None:
    b = backend_for(knot)
    assert b.push([RecordChange("v4.example.test", "192.0.2.10", None)]) == {"v4.example.test": None}
    assert lookup(knot.port, "v4.example.test", "A") == ["192.0.2.10"]
    assert b.push([RecordChange("v4.example.test", "192.0.2.11", None)]) == {"v4.example.test": None}
    assert lookup(knot.port, "v4.example.test", "A") == ["192.0.2.11"]  # replaced, not added
    b.push([RecordChange("v6.example.test", None, "2001:db8::6")])
    assert lookup(knot.port, "v6.example.test", "AAAA") == ["2001:db8::6"]
    b.push([RecordChange("dual.example.test", "192.0.2.12", "2001:db8::12")])
    assert lookup(knot.port, "dual.example.test", "A") == ["192.0.2.12"]
    assert lookup(knot.port, "dual.example.test", "AAAA") == ["2001:db8::12"]
    dig = subprocess.run(["dig", "@127.0.0.1", "-p", str(knot.port), "dual.example.test", "A", "+short"],
                         capture_output=True, text=True, timeout=10)
    assert dig.stdout.strip() == "192.0.2.12"


def test_offline_deletes_both_rrsets(knot: KnotServer) -> None:
    b = backend_for(knot)
    b.push([RecordChange("off.example.test", "192.0.2.20", "2001:db8::20")])
    assert b.push([RecordChange("off.example.test", "192.0.2.20", "2001:db8::20", offline=True)]) == {
        "off.example.test": None
    }
    assert lookup(knot.port, "off.example.test", "A") == []
    assert lookup(knot.port, "off.example.test", "AAAA") == []


def test_offline_address_when_configured(knot: KnotServer) -> None:
    b = Rfc2136Backend(knot.server, knot.zones, knot.key_name, knot.secret, offline_address="192.0.2.254")
    b.push([RecordChange("parked.example.test", "192.0.2.21", None, offline=True)])
    assert lookup(knot.port, "parked.example.test", "A") == ["192.0.2.254"]


def test_one_message_per_zone(knot: KnotServer) -> None:
    b = backend_for(knot)
    before = soa_serial(knot.port, "example.test"), soa_serial(knot.port, "other.test")
    result = b.push([
        RecordChange("m1.example.test", "192.0.2.31", None),
        RecordChange("m2.example.test", "192.0.2.32", None),
        RecordChange("m3.example.test", "192.0.2.33", None),
        RecordChange("x.other.test", "192.0.2.34", None),
    ])
    assert set(result.values()) == {None}
    after = soa_serial(knot.port, "example.test"), soa_serial(knot.port, "other.test")
    assert after == (before[0] + 1, before[1] + 1)  # one UPDATE (one serial bump) per zone


def test_longest_zone_wins(knot: KnotServer) -> None:
    b = backend_for(knot)
    assert b.zone_for("a.sub.example.test") == "sub.example.test"
    assert b.zone_for("a.example.test") == "example.test"
    assert b.zone_for("EXAMPLE.TEST.") == "example.test"
    assert b.zone_for("a.elsewhere.test") is None
    assert b.zone_for("notexample.test") is None
    before = soa_serial(knot.port, "sub.example.test")
    b.push([RecordChange("a.sub.example.test", "192.0.2.40", None)])
    assert soa_serial(knot.port, "sub.example.test") == before + 1
    assert "outside" in str(b.push([RecordChange("a.elsewhere.test", "192.0.2.1", None)])["a.elsewhere.test"])


def test_wrong_tsig_key_is_an_error(knot: KnotServer) -> None:
    wrong = backend_for(knot, secret="d3JvbmcgcGFzc3dvcmQgZm9yIHRoZSB0c2lnIGtleQ==")
    before = soa_serial(knot.port, "example.test")
    error = wrong.push([RecordChange("bad.example.test", "192.0.2.50", None)])["bad.example.test"]
    assert error is not None and ("TSIG" in error or "NOTAUTH" in error)
    assert lookup(knot.port, "bad.example.test", "A") == []
    assert soa_serial(knot.port, "example.test") == before


def test_refused_for_a_zone_the_server_does_not_serve(knot: KnotServer) -> None:
    b = Rfc2136Backend(knot.server, ("notserved.test",), knot.key_name, knot.secret)
    error = b.push([RecordChange("a.notserved.test", "192.0.2.60", None)])["a.notserved.test"]
    assert error is not None and "refused" in error


def test_server_down_is_a_bounded_error() -> None:
    stopped = KnotServer()
    try:
        b = Rfc2136Backend(stopped.server, stopped.zones, stopped.key_name, stopped.secret, timeout=1.0)
        started = time.monotonic()
        error = b.push([RecordChange("a.example.test", "192.0.2.70", None)])["a.example.test"]
        assert error is not None and time.monotonic() - started < 3
    finally:
        stopped.cleanup()


def test_store_only_backend_accepts_everything() -> None:
    b = StoreOnlyBackend()
    assert not b.enabled
    assert b.zone_for("anything.example") == ""
    assert b.push([RecordChange("a.example", "192.0.2.1", None)]) == {"a.example": None}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DDNS_DNS_BACKEND": "bind"}, "must be 'store' or 'rfc2136'"),
        ({"DDNS_DNS_BACKEND": "rfc2136"}, "DDNS_DNS_SERVER"),
        ({"DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": "127.0.0.1"}, "DDNS_DNS_ZONES"),
        ({"DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": "127.0.0.1:x", "DDNS_DNS_ZONES": "a.test"}, "port"),
        ({"DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": "127.0.0.1", "DDNS_DNS_ZONES": "a.test"}, "TSIG_NAME"),
        ({"DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": "127.0.0.1", "DDNS_DNS_ZONES": "a.test",
          "DDNS_TSIG_NAME": "k", "DDNS_TSIG_SECRET": "not base64!"}, "base64"),
        ({"DDNS_DNS_BACKEND": "rfc2136", "DDNS_DNS_SERVER": "127.0.0.1", "DDNS_DNS_ZONES": "a.test",
          "DDNS_TSIG_NAME": "k", "DDNS_TSIG_SECRET": "c2VjcmV0", "DDNS_TSIG_ALGORITHM": "rot13"}, "algorithm"),
    ],
)
def test_configuration_errors_are_clear(env: dict[str, str], message: str) -> None:
    base = {"MFA_SECRET_KEY": "x" * 32, "MFA_ENCRYPTION_KEY": "y" * 32}
    with pytest.raises(ConfigError, match=message):
        backend_from_settings(Settings.from_env({**base, **env}))


def test_settings_select_rfc2136(knot: KnotServer) -> None:
    settings = Settings.from_env({
        "MFA_SECRET_KEY": "x" * 32, "MFA_ENCRYPTION_KEY": "y" * 32, "DDNS_DNS_BACKEND": "rfc2136",
        "DDNS_DNS_SERVER": knot.server, "DDNS_DNS_ZONES": "example.test", "DDNS_TSIG_NAME": knot.key_name,
        "DDNS_TSIG_SECRET": knot.secret, "DDNS_DNS_TTL": "120",
    })
    b = backend_from_settings(settings)
    assert isinstance(b, Rfc2136Backend) and b.ttl == 120
    b.push([RecordChange("cfg.example.test", "192.0.2.80", None)])
    assert lookup(knot.port, "cfg.example.test", "A") == ["192.0.2.80"]
