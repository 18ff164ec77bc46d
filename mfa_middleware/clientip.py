"""Which address a request came from: the socket's peer, or what a trusted proxy says it talked to. One setting
for the gate's throttles and the update endpoint alike: ``TRUSTED_PROXIES`` (comma-separated CIDRs; the older
``DDNS_TRUSTED_PROXIES`` is read when it is not set)."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def trusted_proxies_from_env(env: Mapping[str, str] | None = None) -> str:
    """``TRUSTED_PROXIES``, the name the gate and the update endpoint share; the update endpoint's older
    ``DDNS_TRUSTED_PROXIES`` is read when it is not set (never both: trusting the union of two lists would be
    a surprise)."""
    env = os.environ if env is None else env
    return env.get("TRUSTED_PROXIES") or env.get("DDNS_TRUSTED_PROXIES") or ""


class ClientAddress:
    """``ClientAddress(trusted)(peer, headers)``: the client's address as text ('' when unknown)."""

    def __init__(self, trusted: Sequence[str] | str | None = None) -> None:
        if trusted is None:
            trusted = trusted_proxies_from_env()
        text = trusted if isinstance(trusted, str) else ",".join(trusted)
        self.trusted: tuple[IPNetwork, ...] = tuple(parse_trusted_proxies(text))

    def __call__(self, peer: str | None, headers: Mapping[str, str]) -> str:
        return client_address(peer or None, headers, self.trusted) or ""


@functools.lru_cache(maxsize=4096)  # the peer address and a router's own address repeat; the parse is slow
def parse_ip(raw: str | None) -> IPAddress | None:
    """Parse one host address as it may appear in a DNS record; None when unusable.

    IPv4-mapped IPv6 (what dual-stack sockets report) becomes the IPv4 address.
    """
    if raw is None:
        return None
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:  # "fe80::1%eth0" cannot go into a AAAA record
            return None
        address = address.ipv4_mapped or address
    if address.is_unspecified or address.is_multicast:
        return None  # neither names a host
    return address


@functools.lru_cache(maxsize=4096)
def ip_text(address: IPAddress) -> str:
    """``str(address)``, remembered: the same addresses repeat and ``ipaddress`` formats them in Python."""
    return str(address)



def parse_trusted_proxies(value: str) -> list[IPNetwork]:
    """Parse `TRUSTED_PROXIES` / `DDNS_TRUSTED_PROXIES` (comma-separated CIDRs; empty means none)."""
    networks: list[IPNetwork] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            # Host bits are forgiven ("10.0.0.1/8" means 10.0.0.0/8): a typo there
            # is still a clear statement of which network the operator trusts.
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES (or DDNS_TRUSTED_PROXIES): {item!r} is not a CIDR network: "
                             f"{exc}") from None
    return networks


def client_address(peer: str | None, headers: Mapping[str, str], trusted: Sequence[IPNetwork]) -> str | None:
    """The address the update came from, believing proxy headers only from trusted peers.

    Proxies must append to one `X-Forwarded-For` header (nginx and HAProxy do):
    pass a mapping whose value for a repeated header joins the lines with commas.
    """
    if peer is None:
        return None
    if not trusted:  # no proxy configured (the default): the socket's address, as text
        return _peer_text(peer)
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer  # not an IP (e.g. a unix socket): nothing to compare, pass it on
    if not _is_trusted(peer_ip, trusted):
        return ip_text(peer_ip)  # anyone can send these headers; only the socket is proof
    forwarded = _header(headers, "x-forwarded-for")
    if forwarded is not None:
        return ip_text(_walk_forwarded(peer_ip, forwarded, trusted))
    real_ip = parse_ip(_header(headers, "x-real-ip"))
    return ip_text(real_ip or peer_ip)


@functools.lru_cache(maxsize=4096)  # keyed by the peer's text: cheaper to hash than the parsed address
def _peer_text(peer: str) -> str:
    address = parse_ip(peer)
    return peer if address is None else ip_text(address)  # not an IP (a unix socket): passed on as is


def _walk_forwarded(peer: IPAddress, forwarded: str, trusted: Sequence[IPNetwork]) -> IPAddress:
    # Each trusted hop appended who it talked to, so walk from the right and stop
    # at the first address not ours: everything left of it is the client's claim.
    current = peer
    for hop in reversed(forwarded.split(",")):
        address = _parse_hop(hop)
        if address is None:
            return current  # a broken entry: the last hop we could vouch for
        current = address
        if not _is_trusted(address, trusted):
            return address
    return current


def _parse_hop(hop: str) -> IPAddress | None:
    hop = hop.strip()
    address = parse_ip(hop)
    if address is not None:
        return address
    # Some proxies add the client port: "1.2.3.4:5678" or "[2001:db8::1]:5678".
    if hop.startswith("[") and "]" in hop:
        return parse_ip(hop[1 : hop.index("]")])
    if hop.count(":") == 1:
        return parse_ip(hop.partition(":")[0])
    return None


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Framework header objects are case-insensitive, a plain dict is not.
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)
