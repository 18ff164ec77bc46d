"""Host records: who owns a hostname, its current addresses, and its recent history.

Key layout (``Keys.account(ID, part)`` keys share the account's ``{a:ID}`` slot):

- ``{a:ID}:hosts`` hash: hostname -> packed record ``v4|v6|offline|updated_at`` (e.g.
  ``192.0.2.1|2001:db8::1|0|1712345678``). One hash per account keeps a host at ~80 bytes of Redis
  memory: the hash stays listpack-encoded (entries under 64 bytes) for accounts of up to 128 hosts.
- ``{a:ID}:hist:HOST`` list: the last ``HISTORY_LENGTH`` changes, newest first, each
  ``v4|v6|offline|updated_at|client_ip|user_agent``. The last client IP and User-Agent live here, not in
  the current record: keeping them there would push entries past the listpack limit and triple the
  per-host cost of the current record (issue 7's 250-byte budget).
- ``{a:ID}:iids`` hash: hostname -> IPv6 interface id (canonical text, e.g. ``::1:2:3:4``), only for hosts
  that have one. An update carrying an IPv6 prefix sets such a host's AAAA to the prefix + this id.
- ownership index ``host:{o:N}`` hash, N = crc32(hostname) mod ``OWNER_BUCKETS``: hostname -> account.
  Bucketed hashes cost ~40 bytes a host instead of ~90 for a string key per host, and stay O(1)
  (at a million hosts a bucket holds ~30 listpack entries). A hostname belongs to at most one account:
  ``add`` claims it with HSETNX before writing the account's record.
"""

from __future__ import annotations

import builtins
import dataclasses
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address

from ddns_update.protocol import normalize_hostname, parse_ip
from mfa_middleware.store import Keys, Op, cmd
from mfa_middleware.store.effects import Eval, Script, batch

HISTORY_LENGTH = 20
OWNER_BUCKETS = 1 << 15
EMPTY_RECORD = "||0|0"  # no address yet, online, never updated (ADD_RECORDS writes it)


class HostRefused(Exception):
    """A host operation that cannot be done; the message says why (in English, for logs and the CLI);
    ``reason`` and ``params`` let a page say it in the user's language."""

    def __init__(self, message: str, reason: str = "", **params: str) -> None:
        super().__init__(message)
        self.reason, self.params = reason, params


class BadHostname(ValueError):
    """Not a valid host name (RFC 1123 labels, at most 253 characters); ``raw`` is what was given."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class BadInterfaceId(ValueError):
    """Not an IPv6 interface id; ``raw`` is what was given."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class HostRecord:
    host: str
    ipv4: str | None
    ipv6: str | None
    offline: bool
    updated_at: int | None  # unix seconds; None when never updated
    client_ip: str | None = None
    user_agent: str | None = None
    ipv6_interface_id: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host, "ipv4": self.ipv4, "ipv6": self.ipv6, "offline": self.offline,
            "updated_at": self.updated_at, "client_ip": self.client_ip, "user_agent": self.user_agent,
            "ipv6_interface_id": self.ipv6_interface_id,
        }


def parse_record(host: str, packed: str, history_entry: str | None = None) -> HostRecord:
    """Read a packed record (the update script writes them; see the module docstring)."""
    v4, v6, off, ts = [*packed.split("|", 5), "", "", "", ""][:4]
    client = agent = None
    if history_entry:
        parts = history_entry.split("|", 5)
        if len(parts) == 6:
            client, agent = parts[4] or None, parts[5] or None
    updated = int(ts) if ts.isdigit() and ts != "0" else None
    return HostRecord(host, v4 or None, v6 or None, off == "1", updated, client, agent)


def canonical_host(raw: str) -> str:
    host = normalize_hostname(raw)
    if host is None:
        raise BadHostname(f"{raw!r} is not a valid host name (RFC 1123 labels, at most 253 characters)", raw)
    return host


def owner_key(keys: Keys, host: str) -> str:
    return keys.shared("host", f"{{o:{zlib.crc32(host.encode()) % OWNER_BUCKETS}}}")


def hosts_key(keys: Keys, account_id: str) -> str:
    return keys.account(account_id, "hosts")


def history_prefix(keys: Keys, account_id: str) -> str:
    return keys.account(account_id, "hist:")


def interface_ids_key(keys: Keys, account_id: str) -> str:
    return keys.account(account_id, "iids")


def interface_id(raw: str) -> str | None:
    """The canonical text of an IPv6 interface id ("::1:2:3:4", also written in full); None clears it
    ("", "none"). ValueError when it is no IPv6 address or has no bits set."""
    text = raw.strip().lower()
    if text in ("", "none", "-"):
        return None
    address = parse_ip(text) if ":" in text else None
    if not isinstance(address, IPv6Address) or int(address) == 0:
        raise BadInterfaceId(f"{raw!r} is not an IPv6 interface id (written like ::1:2:3:4)", raw)
    return str(address)


# KEYS[1] owner bucket; ARGV host, account. Releases the claim only when the account holds it.
RELEASE_OWNER = Script(
    "ddns_release_owner",
    """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
""",
)

# KEYS[1] account hash, KEYS[2] hosts hash; ARGV hosts. Adds records only for an existing account.
ADD_RECORDS = Script(
    "ddns_add_records",
    """
if redis.call('HEXISTS', KEYS[1], 'pw') == 0 then return -1 end
local added = 0
for i = 1, #ARGV do added = added + redis.call('HSETNX', KEYS[2], ARGV[i], '||0|0') end
return added
""",
)

# KEYS[1] hosts hash, KEYS[2] groups index, KEYS[3] interface ids, then the group hashes; ARGV hist prefix,
# hosts. Removes the records, their history, interface ids and group memberships in one step.
REMOVE_RECORDS = Script(
    "ddns_remove_records",
    """
local removed = {}
for i = 2, #ARGV do
  local h = ARGV[i]
  if redis.call('HDEL', KEYS[1], h) == 1 then
    removed[#removed + 1] = h
    redis.call('DEL', ARGV[1] .. h)
    redis.call('HDEL', KEYS[3], h)
    for k = 4, #KEYS do
      local list = redis.call('HGET', KEYS[k], 'hosts')
      if list then
        local kept = {}
        for item in string.gmatch(list, '[^,]+') do if item ~= h then kept[#kept + 1] = item end end
        redis.call('HSET', KEYS[k], 'hosts', table.concat(kept, ','))
      end
    end
  end
end
return removed
""",
)


# KEYS[1] hosts hash, KEYS[2] interface ids; ARGV host, id ("" clears). 0 when the account has no such host.
SET_INTERFACE_ID = Script(
    "ddns_set_interface_id",
    """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[2], ARGV[1]) else redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
""",
)


class Hosts:
    """Add, remove and list an account's hosts."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def add(self, account_id: str, hostnames: Iterable[str]) -> Op[list[str]]:
        """Claim and add hosts; all or nothing. Returns the canonical names added (or already held)."""
        hosts = list(dict.fromkeys(canonical_host(h) for h in hostnames))
        claimed: list[str] = []
        for host in hosts:
            bucket = owner_key(self.keys, host)
            won = yield cmd("HSETNX", bucket, host, account_id)
            if won:
                claimed.append(host)
                continue
            owner = yield cmd("HGET", bucket, host)
            if owner != account_id:
                yield from self._release(account_id, claimed)
                raise HostRefused(f"host {host} belongs to another account", "taken", host=host)
        added = yield Eval(ADD_RECORDS, (self.keys.account(account_id), hosts_key(self.keys, account_id)),
                           tuple(hosts))
        if added == -1:
            yield from self._release(account_id, claimed)
            raise HostRefused(f"no account {account_id!r}", "noaccount")
        return hosts

    def _release(self, account_id: str, hosts: list[str]) -> Op[None]:
        for host in hosts:
            yield Eval(RELEASE_OWNER, (owner_key(self.keys, host),), (host, account_id))

    def remove(self, account_id: str, hostnames: Iterable[str]) -> Op[list[str]]:
        """Remove hosts the account holds (records, history, group memberships, ownership)."""
        hosts = list(dict.fromkeys(canonical_host(h) for h in hostnames))
        groups: dict[str, str] = yield cmd("HGETALL", self.keys.account(account_id, "groups"))
        group_keys = tuple(self.keys.account(account_id, "group:" + g) for g in sorted(groups))
        keys = (hosts_key(self.keys, account_id), self.keys.account(account_id, "groups"),
                interface_ids_key(self.keys, account_id), *group_keys)
        removed: list[str] = yield Eval(REMOVE_RECORDS, keys, (history_prefix(self.keys, account_id), *hosts))
        # Release every requested host this account still claims, not only those removed just now: a remove
        # interrupted between the two steps (store down) left claims without records, and its retry finds no
        # record to remove. After the script none of these hosts has a record here, so the claims are stale.
        yield from self._release(account_id, hosts)
        return removed

    def owner(self, host: str) -> Op[str | None]:
        host = canonical_host(host)
        owner: str | None = yield cmd("HGET", owner_key(self.keys, host), host)
        return owner

    def list(self, account_id: str) -> Op[list[HostRecord]]:
        records: dict[str, str] = yield cmd("HGETALL", hosts_key(self.keys, account_id))
        names = sorted(records)
        prefix = history_prefix(self.keys, account_id)
        heads = (yield batch([cmd("LINDEX", prefix + h, 0) for h in names])) if names else []
        ids: dict[str, str] = (yield cmd("HGETALL", interface_ids_key(self.keys, account_id))) if names else {}
        return [dataclasses.replace(parse_record(h, records[h], head), ipv6_interface_id=ids.get(h))
                for h, head in zip(names, heads, strict=True)]

    def set_interface_id(self, account_id: str, host: str, raw: str) -> Op[str | None]:
        """Set (or, for "" / "none", clear) ``host``'s IPv6 interface id; the canonical id, or None when cleared.
        HostRefused when the account has no such host; ValueError for a malformed id."""
        host, value = canonical_host(host), interface_id(raw)
        keys = (hosts_key(self.keys, account_id), interface_ids_key(self.keys, account_id))
        if not (yield Eval(SET_INTERFACE_ID, keys, (host, value or ""))):
            raise HostRefused(f"account {account_id} has no host {host}", "nohost", host=host)
        return value

    def history(self, account_id: str, host: str, limit: int = HISTORY_LENGTH) -> Op[builtins.list[HostRecord]]:
        host = canonical_host(host)
        entries: builtins.list[str] = yield cmd("LRANGE", history_prefix(self.keys, account_id) + host, 0, limit - 1)
        return [parse_record(host, e, e) for e in entries]
