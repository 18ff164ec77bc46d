"""Which address a request came from, for the gate's throttles: the socket's peer, or what a trusted proxy
says it talked to. One setting for the gate and the update endpoint: ``TRUSTED_PROXIES`` (comma-separated
CIDRs; ``DDNS_TRUSTED_PROXIES`` is the older name, still read)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from ddns_update.protocol import IPNetwork, client_address, parse_trusted_proxies


def trusted_proxies_from_env(env: Mapping[str, str] | None = None) -> str:
    """Both names count, as for the update endpoint (``config.Settings``): the networks of either."""
    env = os.environ if env is None else env
    return ",".join(filter(None, (env.get("TRUSTED_PROXIES", ""), env.get("DDNS_TRUSTED_PROXIES", ""))))


class ClientAddress:
    """``ClientAddress(trusted)(peer, headers)``: the client's address as text ('' when unknown)."""

    def __init__(self, trusted: Sequence[str] | str | None = None) -> None:
        if trusted is None:
            trusted = trusted_proxies_from_env()
        text = trusted if isinstance(trusted, str) else ",".join(trusted)
        self.trusted: tuple[IPNetwork, ...] = tuple(parse_trusted_proxies(text))

    def __call__(self, peer: str | None, headers: Mapping[str, str]) -> str:
        return client_address(peer or None, headers, self.trusted) or ""
