"""Abuse: repeated ``nochg`` for one host and repeated client faults, per login, flag the login live.

The counting happens inside the update script (it is part of the same atomic step and round trip);
this module holds the thresholds and the operator's side: see who is flagged, clear a flag.

Keys (account slot): ``abuse`` hash (login -> reason@unix-seconds), ``nochg`` hash ("LOGIN HOST" -> count in
the current window), ``faults`` hash (login -> count). Counter hashes expire one window after their first hit.
Counts are per login (and host): one login's repeats never flag another login of the account, such as a
group login updating the same host as the account's own login.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddns_update.credentials import Credentials
from ddns_update.scripts import CLEAR_ABUSE
from mfa_middleware.store import Keys, Op, cmd
from mfa_middleware.store.effects import Eval


@dataclass(frozen=True)
class AbusePolicy:
    nochg_per_host: int = 30  # more nochg answers for one host per window flag the login
    faults: int = 30  # more nohost/notfqdn/badagent answers per login per window flag it
    window_ms: int = 3600 * 1000


class Abuse:
    def __init__(self, keys: Keys, credentials: Credentials) -> None:
        self.keys = keys
        self.credentials = credentials

    def flagged(self, account_id: str) -> Op[dict[str, str]]:
        flags: dict[str, str] = yield cmd("HGETALL", self.keys.account(account_id, "abuse"))
        return flags

    def clear(self, login: str) -> Op[bool]:
        """Clear LOGIN's flag and its counters; False when the login is unknown or was not flagged."""
        who = yield from self.credentials.resolve(login)
        if who is None:
            return False
        k = self.keys.account
        keys = (k(who.account_id, "abuse"), k(who.account_id, "faults"), k(who.account_id, "nochg"))
        removed = yield Eval(CLEAR_ABUSE, keys, (who.name,))
        return bool(removed)
