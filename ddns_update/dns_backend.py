"""Where an accepted update goes besides the store: nowhere (``store``), or a primary
DNS server by RFC 2136 UPDATE signed with TSIG (``rfc2136``).

The push is blocking and bounded by a timeout; the service runs it as an ``Offload``
effect, so on the ASGI path it runs in a worker thread and never stalls the event loop.
The decision ``good``/``nochg`` always comes from the store, never from a DNS query.
"""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.update

from mfa_middleware.config import ConfigError, Settings

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}
MAX_CHANGES_PER_MESSAGE = 400  # keeps one UPDATE well under the 64 KiB TCP message limit


@dataclass(frozen=True, slots=True)
class RecordChange:
    """The desired DNS state of one host: an absent address deletes that rrset."""

    host: str
    ipv4: str | None
    ipv6: str | None
    offline: bool = False


class DnsBackend(Protocol):
    enabled: bool

    def push(self, changes: Sequence[RecordChange]) -> dict[str, str | None]:
        """Apply ``changes``; host -> None on success, or why it failed."""
        ...

    def zone_for(self, host: str) -> str | None:
        """The zone that holds ``host`` ("" when any host is fine), None when none does."""
        ...


class StoreOnlyBackend:
    """The default: the store is the only record."""

    enabled = False

    def push(self, changes: Sequence[RecordChange]) -> dict[str, str | None]:
        return {c.host: None for c in changes}

    def zone_for(self, host: str) -> str | None:
        return ""


def _under(host: str, zone: str) -> bool:
    return host == zone or host.endswith("." + zone)


class Rfc2136Backend:
    """RFC 2136 UPDATE over TCP to one primary, one message per zone per push."""

    enabled = True

    def __init__(
        self,
        server: str,
        zones: Sequence[str],
        tsig_name: str,
        tsig_secret: str,
        algorithm: str = "hmac-sha256",
        ttl: int = 60,
        timeout: float = 3.0,
        offline_address: str | None = None,
    ) -> None:
        self.host, self.port = _split_server(server)
        self.zones = sorted({z.strip().rstrip(".").lower() for z in zones if z.strip()}, key=len, reverse=True)
        if not self.zones:
            raise ConfigError("DDNS_DNS_ZONES must name at least one zone for the rfc2136 backend")
        if algorithm.lower() not in ALGORITHMS:
            raise ConfigError(f"unknown TSIG algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
        if not tsig_name:
            raise ConfigError("DDNS_TSIG_NAME must be set for the rfc2136 backend")
        try:
            secret = base64.b64decode(tsig_secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("DDNS_TSIG_SECRET must be base64") from None
        if not secret:
            raise ConfigError("DDNS_TSIG_SECRET must be set for the rfc2136 backend")
        self.key = dns.tsig.Key(tsig_name, secret, ALGORITHMS[algorithm.lower()])
        self.ttl = ttl
        self.timeout = timeout
        self.offline_address = offline_address

    def zone_for(self, host: str) -> str | None:
        host = host.rstrip(".").lower()
        return next((z for z in self.zones if _under(host, z)), None)

    def push(self, changes: Sequence[RecordChange]) -> dict[str, str | None]:
        by_zone: dict[str, list[RecordChange]] = {}
        results: dict[str, str | None] = {}
        for change in changes:
            zone = self.zone_for(change.host)
            if zone is None:
                results[change.host] = "host is outside every configured zone"
            else:
                by_zone.setdefault(zone, []).append(change)
        for zone, batch in by_zone.items():
            for start in range(0, len(batch), MAX_CHANGES_PER_MESSAGE):
                chunk = batch[start : start + MAX_CHANGES_PER_MESSAGE]
                error = self._send(self._message(zone, chunk))
                results.update({c.host: error for c in chunk})
        return results

    def _message(self, zone: str, changes: Sequence[RecordChange]) -> dns.update.UpdateMessage:
        update = dns.update.UpdateMessage(zone, keyring=self.key)
        for c in changes:
            name = dns.name.from_text(c.host)
            ipv4 = self.offline_address if c.offline else c.ipv4
            ipv6 = None if c.offline else c.ipv6
            for rdtype, address in (("A", ipv4), ("AAAA", ipv6)):
                if address:
                    update.replace(name, self.ttl, rdtype, address)
                else:
                    update.delete(name, rdtype)
        return update

    def _send(self, update: dns.update.UpdateMessage) -> str | None:
        try:
            where = _address(self.host)
            response = dns.query.tcp(update, where, port=self.port, timeout=self.timeout)
        except dns.exception.Timeout:
            return f"DNS server {self.host}:{self.port} timed out"
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.message.UnknownTSIGKey) as exc:
            return f"TSIG refused: {exc.__class__.__name__}"
        except dns.exception.FormError as exc:
            if "TSIG" in str(exc):
                # Servers answer NOTAUTH/REFUSED unsigned when they do not know the zone or the key.
                return f"DNS server {self.host}:{self.port} refused the update (unsigned answer: zone or key unknown)"
            return f"DNS server {self.host}:{self.port} sent a malformed answer: {exc}"
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            return f"DNS server {self.host}:{self.port} failed: {exc.__class__.__name__}: {exc}"
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            return f"DNS server answered {dns.rcode.to_text(rcode)}"
        return None


def _split_server(server: str) -> tuple[str, int]:
    server = server.strip()
    if not server:
        raise ConfigError("DDNS_DNS_SERVER must be set for the rfc2136 backend (host or host:port)")
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.lstrip(":") or "53"
    elif server.count(":") == 1:
        host, port = server.split(":")
    else:
        host, port = server, "53"
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"bad port in DDNS_DNS_SERVER: {server!r}") from None


def _address(host: str) -> str:
    """dnspython wants an address; resolve a name once per send."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])


def backend_from_settings(settings: Settings) -> DnsBackend:
    kind = settings.dns_backend.lower()
    if kind in ("store", "store-only", "none", ""):
        return StoreOnlyBackend()
    if kind != "rfc2136":
        raise ConfigError(f"DDNS_DNS_BACKEND must be 'store' or 'rfc2136', not {settings.dns_backend!r}")
    return Rfc2136Backend(
        settings.dns_server,
        settings.dns_zones,
        settings.tsig_name,
        settings.tsig_secret,
        settings.tsig_algorithm,
        settings.dns_ttl,
    )
