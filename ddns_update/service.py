"""The update core: request facts in, protocol answer out, as one store operation.

Both adapters (ASGI and WSGI, ``app.py``) hand in what they received and run ``UpdateService.update``
with their store: the warm path is one round trip (the ``UPDATE`` script, which checks the login's failure
throttle before it compares the cached verifier). An address that has not proven the login adds its own
limit's count first (``vet``: a second step, the counter lives in another slot); a cold credential or a
password the cache does not hold adds one argon2id verify (``Offload``), which decides, and on success the
cached verifier; a prefix update whose hosts have IPv6 interface ids sends the step again with their
addresses (``iids``); a changed record with a DNS backend adds the push (``Offload``: a worker thread on the
ASGI path) and, for hosts whose push failed, a compare-and-set back to the previous record.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from types import MappingProxyType
from typing import Any, NamedTuple

from ddns_update.abuse import AbusePolicy
from ddns_update.credentials import Credentials, Login
from ddns_update.dns_backend import DnsBackend, RecordChange, StoreOnlyBackend
from ddns_update.hosts import HISTORY_LENGTH, history_prefix, hosts_key, parse_record
from ddns_update.protocol import (
    DEFAULT_REALM,
    Answer,
    IPNetwork,
    UpdateRequest,
    agent_allowed,
    client_address,
    combine,
    format_body,
    ip_text,
    parse_basic_auth,
    parse_ip,
    parse_plain_update,
    parse_update,
    status_for,
    www_authenticate,
)
from ddns_update.scripts import ARG_ORDER, REVERT, UPDATE, UPDATE_KEYS
from mfa_middleware.metrics import CREDENTIAL_CACHE, UPDATES
from mfa_middleware.store import Keys, Op
from mfa_middleware.store.effects import Eval, Offload
from mfa_middleware.store.resp import evalsha, evalsha_head

log = logging.getLogger("ddns_update")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f|]")
MAX_AGENT_CHARS = 120  # kept per history entry; full agents go to the access log, not the store
# The quick lane's UPDATE command for an account's own login (its name is the account id, no group): all of
# the command but the request's own arguments is the same for every account except for the id, which it
# holds once per key name, then in the login and the history prefix. So it is ``id.join(pieces)``, the
# pieces made once per id length (``_head_pieces``): nothing kept per login, so the cost is the same at 100
# logins as at 100,000 (a per-login cache would be read at random across many logins: CPU-cache misses).
ID_LENGTHS_KEPT = 256
# EVALSHA, sha, numkeys; the KEYS; the login's part of ARGV (ARG_ORDER: everything before the verifier)
_HEAD_COUNT = 3 + len(UPDATE_KEYS) + ARG_ORDER.index("verifier")
_ID_PIECES = len(UPDATE_KEYS) + 3  # split at the id in each key name, the login and the history prefix
UPDATE_TRIES = 6  # stale, vet, miss, iids each send UPDATE again; a request settles within these


@dataclass(frozen=True)
class UpdatePolicy:
    agent_blocklist: tuple[str, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    realm: str = DEFAULT_REALM
    abuse: AbusePolicy = field(default_factory=AbusePolicy)
    history_length: int = HISTORY_LENGTH


class UpdateFacts(NamedTuple):  # a tuple: built on every update
    """What an adapter received; ``headers`` must be case-insensitive or lower-case keyed."""

    query: Mapping[str, str] | str | bytes
    authorization: str | None
    user_agent: str | None
    peer: str | None
    headers: Mapping[str, str] = MappingProxyType({})


class UpdateReply(NamedTuple):  # a tuple: built on every update
    lines: tuple[str, ...]
    status: int = 200
    realm: str = DEFAULT_REALM

    @property
    def body(self) -> str:
        return format_body(self.lines)

    @property
    def headers(self) -> dict[str, str]:
        headers = {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"}
        if self.status == 401:
            headers["www-authenticate"] = www_authenticate(self.realm)
        return headers


def once(answer: Answer, realm: str = DEFAULT_REALM) -> UpdateReply:
    return UpdateReply((answer.value,), status_for(answer), realm)


SERVER_ERROR = once(Answer.SERVER_ERROR)


class _Target(NamedTuple):  # a tuple: built on every update
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None
    client: str
    history_tail: str  # "client_ip|user_agent", appended to the record in each history entry
    ipv4_text: str = ""  # the addresses as sent to the script and answered ("" when absent)
    ipv6_text: str = ""
    prefix: IPv6Network | None = None  # an IPv6 prefix for hosts with an interface id
    prefix_text: str = ""


class QuickStep(NamedTuple):  # a tuple: built on every quick update
    """``UpdateService.quick``'s prepared request."""

    step: Eval | bytes  # UPDATE, as the general path would send it first; with ``packed``, its command's bytes
    login: tuple[str, str, str]  # the login it was built for, the general path's guess: (name, account, group)
    addresses: str  # the address the answer reports ("203.0.113.7")


@functools.lru_cache(maxsize=4096)  # a router's address repeats; ipaddress works in Python
def _throttled_as(client: str) -> str:
    """The client as the failure throttle counts it (and remembers where a login was proven): an IPv4
    address; for IPv6 its /64, the one network a site gets and its hosts' addresses change within (privacy
    addresses), so that neither an attacker with a /64 nor a router's next address is a stranger; anything
    else as it came ("" when there is none)."""
    address = parse_ip(client)
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return ip_text(address) if address is not None else _safe(client)


def _v6map(prefix: IPv6Network, ids: Sequence[Any]) -> str:
    """UPDATE's ``v6map`` argument: "HOST ID ADDRESS ..." for the (host, interface id) pairs it reported.
    An id that does not parse (only a hand-edited store holds one) is left out: the script then asks again
    and the request ends as 911 rather than with a made-up address."""
    entries = []
    for host, raw in zip(ids[::2], ids[1::2], strict=True):
        interface_id = parse_ip(str(raw))
        if isinstance(interface_id, IPv6Address) and " " not in str(host):
            entries.append(f"{host} {raw} {ip_text(combine(prefix, interface_id))}")
    return " ".join(entries)


def _safe(text: str) -> str:
    """``text`` with control characters and ``|`` (the history entry's separator) replaced by spaces."""
    # isprintable() is False for every character _UNSAFE matches (and for some it leaves alone, which
    # then take the regex): the common clean text costs two C-level scans, no substitution.
    return text if text.isprintable() and "|" not in text else _UNSAFE.sub(" ", text)


class UpdateService:
    def __init__(self, keys: Keys, credentials: Credentials, backend: DnsBackend | None = None,
                 policy: UpdatePolicy | None = None) -> None:
        self.keys = keys
        self.credentials = credentials
        self.backend: DnsBackend = backend or StoreOnlyBackend()
        self.policy = policy or UpdatePolicy()

    @property
    def policy(self) -> UpdatePolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: UpdatePolicy) -> None:
        self._policy = policy
        # The policy's part of UPDATE's arguments, computed once (see ``_update_step``).
        # Text, as Redis receives every argument (the memory driver converts the same way).
        throttle = self.credentials.policy
        self._limits = (str(policy.abuse.nochg_per_host), str(policy.abuse.faults), str(policy.abuse.window_ms),
                        str(policy.history_length), str(throttle.per_login_ip), str(throttle.per_login),
                        str(throttle.window_ms), str(throttle.known_ms), str(throttle.known_max))
        self._pieces: dict[int, tuple[bytes, ...]] = {}  # id length -> ``_head_pieces``

    def update(self, facts: UpdateFacts) -> Op[UpdateReply]:
        """The update ``facts`` ask for, as one store operation (one round trip on the warm path)."""
        return self._update(facts, None, None)

    # ---------------------------------------------------------------- the quick lane
    # What nearly every router sends (one plain host name, at most one address, the agent accepted, a login
    # guessed as ``update`` would guess it, no proxy hop to walk) is prepared in one pass by ``quick`` and,
    # when the script answers ``ok`` with nothing to push to DNS, answered by ``quick_body``, with none of
    # the general path's per-request records (facts, request, target, login, generator). Anything else, at
    # either point, goes to the general path (``update``, or ``resume`` with the script's answer): the quick
    # lane decides nothing the general path would decide differently (``tests/test_update_quick.py``).

    def quick(self, query: bytes, headers: Mapping[str, str], peer: str | None, *,
              packed: bool = False) -> QuickStep | None:
        """The UPDATE step for a canonical bodiless request, or None (then ``update`` it).

        ``headers``: lower-case names, as for ``UpdateFacts``; ``peer``: the socket's address. ``packed``: the
        step as its EVALSHA command's bytes, for a driver that sends them as they are (``execute_packed``).
        """
        policy = self._policy
        if policy.trusted_proxies and ("x-forwarded-for" in headers or "x-real-ip" in headers):
            return None
        plain = parse_plain_update(query)
        if plain is None:
            return None
        agent = headers.get("user-agent")
        if agent is None or not agent_allowed(agent, policy.agent_blocklist):
            return None
        basic = parse_basic_auth(headers.get("authorization"))
        if basic is None:
            return None
        guessed = self.credentials.quick_guess(basic[0])
        if guessed is None:
            return None
        fqdn, address = plain
        client = client_address(peer, headers, policy.trusted_proxies) or ""
        if address is None:
            address = parse_ip(client)
            if address is None:
                return None
        text = ip_text(address)
        ipv4, ipv6 = (text, "") if isinstance(address, IPv4Address) else ("", text)
        tail = _safe(client) + "|" + _safe(agent[:MAX_AGENT_CHARS])
        name, account_id, group = guessed
        build = self._update_command if packed else self._update_step
        return QuickStep(build(name, account_id, group, basic[1], ipv4, ipv6, "0", tail, "1", ("h:" + fqdn,),
                               _throttled_as(client)), guessed, text)

    def quick_body(self, quick: QuickStep, result: Any) -> bytes | None:
        """The body of the 200 reply to ``quick``'s step when its ``result`` settles the request, counted in the
        update metrics; else None (then ``resume``). The reply's headers are ``UpdateReply``'s."""
        # 'ok', 1, code, host (one token, one line), then (host, old, new) when the record changed.
        if result[0] != "ok" or (len(result) > 4 and self.backend.enabled):
            return None
        CREDENTIAL_CACHE.inc("hit")
        code = str(result[2])
        UPDATES.inc(code)
        return (code + " " + quick.addresses + "\n" if code == "good" or code == "nochg" else code + "\n").encode()

    def resume(self, facts: UpdateFacts, quick: QuickStep, result: Any) -> Op[UpdateReply]:
        """The general path for ``facts`` (those ``quick`` was given), from its step's ``result``."""
        name, account_id, group = quick.login
        return self._update(facts, Login(name, account_id, group or None), result)

    # ---------------------------------------------------------------- the general path

    def _update(self, facts: UpdateFacts, guessed: Login | None, first: Any) -> Op[UpdateReply]:
        """``update``; or, given the ``guessed`` login's first step's result ``first``, the rest of it."""
        agent_ok = agent_allowed(facts.user_agent, self.policy.agent_blocklist)
        request = parse_update(facts.query)
        if request.error is not None:
            return once(request.error)
        basic = parse_basic_auth(facts.authorization)
        if basic is None:
            return self._once(Answer.BADAGENT if not agent_ok else Answer.BADAUTH)
        raw_login, password = basic
        target = self._target(request, facts)
        # One round trip on the common path: guess the login (no claim lookup) and let the script check it.
        login = guessed or self.credentials.guess(raw_login)
        tokens = [f"h:{r.fqdn}" if r.fqdn else f"t:{r.token}" for r in request.hosts]
        client = _throttled_as(target.client)
        vetted = refund = False  # the address's own limit checked and charged (then refunded on success)
        v6map = ""
        for _ in range(UPDATE_TRIES):
            if login is None:
                if not agent_ok:
                    return self._once(Answer.BADAGENT)
                yield from self.credentials.prove_unknown(raw_login, password, client)
                return self._once(Answer.BADAUTH)
            if first is not None:
                result, first = first, None
            else:
                result = yield self._update_step(
                    login.name, login.account_id, login.group or "", password, target.ipv4_text, target.ipv6_text,
                    "1" if request.offline else "0", target.history_tail, "1" if agent_ok else "0", tokens,
                    client, vetted, target.prefix_text, v6map)
            status = result[0]
            if status == "ok":
                CREDENTIAL_CACHE.inc("hit")
                if refund:
                    yield from self.credentials.refund_address(client)
                end = 2 + 2 * int(result[1])  # 'ok', nlines, (code, hosts) * nlines, (host, old, new) * changes
                if len(result) > end and self.backend.enabled:  # records changed: push them to DNS
                    return (yield from self._finish(login, result, end, target))
                return self._lines(result, end, target, None)
            if status == "stale":  # the login now means something else: ask the claim again
                self.credentials.forget(login.name)
                fresh = yield from self.credentials.resolve(raw_login)
                if fresh == login:  # the claim itself names nothing (an interrupted group create)
                    self.credentials.forget(login.name)
                    fresh = None
                login = fresh
            elif status == "vet":  # an address that has not proven this login: its own limit first
                if not agent_ok:
                    return self._once(Answer.BADAGENT)
                if not (yield from self.credentials.charge_address(client)):
                    CREDENTIAL_CACHE.inc("throttled")
                    yield from self.credentials.refuse(login.name, client, address_counted=True)
                    return self._once(Answer.BADAUTH)
                vetted = refund = True
            elif status == "miss":  # counted as a failure already; the slow verify decides
                CREDENTIAL_CACHE.inc("miss")
                if not agent_ok:
                    return self._once(Answer.BADAGENT)  # no argon2 for a client we refuse anyway
                epoch = yield from self.credentials.verify(login, password)
                if epoch is None:
                    return self._once(Answer.BADAUTH)
                yield self.credentials.remember(login, password, epoch, client, result[1] == "1")
            elif status == "iids":
                assert target.prefix is not None  # the script asks only when given one
                v6map = _v6map(target.prefix, result[1:])
            elif status == "throttled":
                CREDENTIAL_CACHE.inc("throttled")
                yield from self.credentials.refuse(login.name, client, address_counted=vetted)
                return self._once(Answer.BADAUTH)
            else:
                return self._once({"denied": Answer.BADAUTH, "abuse": Answer.ABUSE}.get(status, Answer.BADAGENT))
        log.warning("update for %s did not settle after retries", login.name if login else raw_login)
        return SERVER_ERROR

    def _once(self, answer: Answer) -> UpdateReply:
        return once(answer, self.policy.realm)

    def _target(self, request: UpdateRequest, facts: UpdateFacts) -> _Target:
        client = client_address(facts.peer, facts.headers, self.policy.trusted_proxies) or ""
        tail = _safe(client) + "|" + _safe((facts.user_agent or "")[:MAX_AGENT_CHARS])
        if request.has_address:
            ipv4, ipv6 = request.ipv4, request.ipv6
        else:
            address = parse_ip(client)
            ipv4, ipv6 = (address, None) if isinstance(address, IPv4Address) else (None, address)
        prefix = request.ipv6_prefix
        return _Target(ipv4, ipv6, client, tail, ip_text(ipv4) if ipv4 else "", ip_text(ipv6) if ipv6 else "",
                       prefix, str(prefix) if prefix else "")

    def _update_step(self, name: str, account_id: str, group: str, password: str, ipv4: str, ipv6: str,
                     offline: str, history_tail: str, agent_ok: str, tokens: Sequence[str], client: str,
                     vetted: bool = False, prefix: str = "", v6map: str = "") -> Eval:
        """UPDATE for login ``name`` of ``account_id`` (its ``group``, "" for the account's own login)."""
        keys, login_args = self._login_part(name, account_id, group)
        return Eval(UPDATE, keys, login_args + self._request_part(name, password, ipv4, ipv6, offline, history_tail,
                                                                 agent_ok, tokens, client, vetted, prefix, v6map))

    def _update_command(self, name: str, account_id: str, group: str, password: str, ipv4: str, ipv6: str,
                        offline: str, history_tail: str, agent_ok: str, tokens: Sequence[str], client: str) -> bytes:
        """``_update_step`` (as the quick lane sends it) as the bytes of its EVALSHA command (RESP), for a driver
        that writes them itself."""
        request = self._request_part(name, password, ipv4, ipv6, offline, history_tail, agent_ok, tokens, client)
        if account_id == name and not group:
            encoded = name.encode()
            pieces = self._pieces.get(len(encoded))
            if pieces is None:
                pieces = self._head_pieces(len(encoded))
            if pieces:
                return evalsha(encoded.join(pieces), _HEAD_COUNT, request)
        keys, login_args = self._login_part(name, account_id, group)
        return evalsha(evalsha_head(UPDATE, keys, login_args), _HEAD_COUNT, request)

    def _head_pieces(self, size: int) -> tuple[bytes, ...]:
        """The head of UPDATE's command (``evalsha_head``) for an account's own login whose id is ``size``
        bytes long, split where the id goes; () when it cannot be split so (e.g. a key prefix holding NULs)."""
        placeholder = "\x00" * size
        keys, login_args = self._login_part(placeholder, placeholder, "")
        pieces = tuple(evalsha_head(UPDATE, keys, login_args).split(placeholder.encode()))
        if len(pieces) != _ID_PIECES:
            pieces = ()
        if len(self._pieces) < ID_LENGTHS_KEPT:
            self._pieces[size] = pieces
        return pieces

    def _login_part(self, name: str, account_id: str, group: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """UPDATE's KEYS and its ARGV's first part, the same for every update of one login (ARG_ORDER)."""
        keys, prefix = self._account_keys(account_id, group)
        nochg_limit, fault_limit, window_ms, history_length, *throttle = self._limits
        return keys, (name, "g" if group else "a", nochg_limit, fault_limit, window_ms, prefix, history_length, group,
                      *throttle)

    def _request_part(self, name: str, password: str, ipv4: str, ipv6: str, offline: str, history_tail: str,
                      agent_ok: str, tokens: Sequence[str], client: str, vetted: bool = False, prefix: str = "",
                      v6map: str = "") -> tuple[str, ...]:
        """The rest of UPDATE's ARGV (ARG_ORDER), then the requested tokens ('h:FQDN' or 't:TOKEN')."""
        now_ms = int(time.time() * 1000)
        return (self.credentials.verifier(name, password), str(now_ms), ipv4, ipv6, offline, history_tail, agent_ok,
                str(now_ms // 1000), client, "1" if vetted else "0", prefix, v6map, *tokens)

    def _account_keys(self, account_id: str, group: str) -> tuple[tuple[str, ...], str]:
        """UPDATE's KEYS and the history prefix for an account (and ``group``, "" for none).

        Built per update on the general path, not remembered per account: a cache of them would hold tracked
        tuples for the garbage collector to walk again and again at 100,000 accounts (see ``Credentials``);
        the quick lane encodes them from pieces made once per id length (``_update_command``).
        ``tests/test_update_caches.py`` checks them against ``Keys``, ``hosts_key``, ``history_prefix`` and
        ``Credentials.group_key``.
        """
        base = self.keys.account(account_id, "")
        return (base + "account", base + "hosts", base + "cred", base + "group:" + group if group else base + "account",
                base + "abuse", base + "nochg", base + "faults", base + "cred_fails",
                base + "iids"), base + "hist:"

    def _finish(self, login: Login, result: list[Any], end: int, target: _Target) -> Op[UpdateReply]:
        flat = result[end:]
        changes = [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]
        failed = yield from self._push(login, changes, target)
        return self._lines(result, end, target, failed)

    @staticmethod
    def _lines(result: list[Any], end: int, target: _Target, failed: set[str] | None) -> UpdateReply:
        # format_line's good/nochg text, built once for every line; a prefix is reported as sent
        addresses = ",".join(a for a in (target.ipv4_text, target.ipv6_text, target.prefix_text) if a)
        lines = []
        for i in range(2, end, 2):
            code = str(result[i])
            if code == "good" or code == "nochg":
                if failed and failed.intersection(str(result[i + 1] or "").split(",")):
                    lines.append(Answer.DNSERR.value)
                else:
                    lines.append(code + " " + addresses if addresses else code)
            else:
                lines.append(code)
        return UpdateReply(tuple(lines))

    def _push(self, login: Login, changes: Sequence[tuple[str, str, str]], target: _Target) -> Op[set[str]]:
        wanted = [parse_record(h, new) for h, _, new in changes]
        desired = [RecordChange(r.host, r.ipv4, r.ipv6, r.offline) for r in wanted]
        backend = self.backend

        def push() -> dict[str, str | None]:
            try:
                return backend.push(desired)
            except Exception as exc:  # a backend bug must still leave the store consistent
                log.exception("DNS push failed")
                return {c.host: f"{type(exc).__name__}: {exc}" for c in desired}

        outcome: dict[str, str | None] = yield Offload(push)
        failed = {h for h, _, _ in changes if outcome.get(h, "no answer from the DNS backend")}
        acct = login.account_id
        for host, old, new in changes:
            if host in failed:
                log.warning("dnserr for %s: %s", host, outcome.get(host))
                entry_keys = (hosts_key(self.keys, acct), history_prefix(self.keys, acct) + host)
                yield Eval(REVERT, entry_keys, (host, new, old, new + "|" + target.history_tail))
        return failed
