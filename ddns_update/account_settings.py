"""Per-account switches of the update endpoint, kept in the account's own hash (read by the update script).

``ddns_pw=deny``: the account's username and password answer ``badauth`` at /nic/update, so only group
logins update. ``ddns_offline=deny``: ``offline=YES`` answers ``!donator``.
"""

from __future__ import annotations

from mfa_middleware.store import Keys, Op, cmd
from mfa_middleware.store.effects import Eval, Script

FIELDS = {"account_password_updates": "ddns_pw", "offline_updates": "ddns_offline"}

# KEYS[1] account hash; ARGV field, 'deny' or '' (allow). 0 when there is no such account.
SET_SWITCH = Script(
    "ddns_account_switch",
    """
if redis.call('HEXISTS', KEYS[1], 'pw') == 0 then return 0 end
if ARGV[2] == 'deny' then redis.call('HSET', KEYS[1], ARGV[1], 'deny') else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
""",
)


class AccountSettings:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def set(self, account_id: str, setting: str, allow: bool) -> Op[bool]:
        done = yield Eval(SET_SWITCH, (self.keys.account(account_id),), (FIELDS[setting], "" if allow else "deny"))
        return bool(done)

    def get(self, account_id: str) -> Op[dict[str, str] | None]:
        values = yield cmd("HMGET", self.keys.account(account_id), "pw", *FIELDS.values())
        if not values[0]:
            return None
        return {name: "deny" if v == "deny" else "allow" for name, v in zip(FIELDS, values[1:], strict=True)}
