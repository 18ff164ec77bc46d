"""Key layout. Every key of one account shares the hash tag ``{a:ID}`` so that a
multi-key script about one account stays in one Redis Cluster slot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "mfa"

    def account(self, account_id: str, part: str = "account") -> str:
        """A key owned by one account, e.g. ``mfa:{a:alice}:account``."""
        return f"{self.prefix}:{{a:{account_id}}}:{part}"

    def login(self, login: str) -> str:
        """Who a login name (account username or group login) belongs to."""
        return f"{self.prefix}:login:{{l:{login}}}"

    def shared(self, *parts: str) -> str:
        """A key not tied to one account (throttles per IP, indexes…)."""
        return ":".join((self.prefix, *parts))

    def pattern(self) -> str:
        return f"{self.prefix}:*"
