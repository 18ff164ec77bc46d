"""The update core: request facts in, protocol answer out, as one store operation.

Both adapters (ASGI and WSGI, ``app.py``) hand in what they received and run ``UpdateService.update``
with their store: the warm path is one round trip (the ``UPDATE`` script); a cold credential adds the
throttle check, one argon2id verify (``Offload``) and the cached verifier; a changed record with a DNS
backend adds the push (``Offload``: a worker thread on the ASGI path) and, for hosts whose push failed,
a compare-and-set back to the previous record.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

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
    format_body,
    format_line,
    parse_basic_auth,
    parse_ip,
    parse_update,
    status_for,
    www_authenticate,
)
from ddns_update.scripts import ARG_ORDER, REVERT, UPDATE
from mfa_middleware.metrics import CREDENTIAL_CACHE
from mfa_middleware.store import Keys, Op
from mfa_middleware.store.effects import Eval, Offload

log = logging.getLogger("ddns_update")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f|]")
MAX_AGENT_CHARS = 120  # kept per history entry; full agents go to the access log, not the store


@dataclass(frozen=True)
class UpdatePolicy:
    agent_blocklist: tuple[str, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    realm: str = DEFAULT_REALM
    abuse: AbusePolicy = field(default_factory=AbusePolicy)
    history_length: int = HISTORY_LENGTH


@dataclass(frozen=True)
class UpdateFacts:
    """What an adapter received; ``headers`` must be case-insensitive or lower-case keyed."""

    query: Mapping[str, str] | str | bytes
    authorization: str | None
    user_agent: str | None
    peer: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateReply:
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


@dataclass(frozen=True)
class _Target:
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None
    client: str
    history_tail: str  # "client_ip|user_agent", appended to the record in each history entry


class UpdateService:
    def __init__(self, keys: Keys, credentials: Credentials, backend: DnsBackend | None = None,
                 policy: UpdatePolicy | None = None) -> None:
        self.keys = keys
        self.credentials = credentials
        self.backend: DnsBackend = backend or StoreOnlyBackend()
        self.policy = policy or UpdatePolicy()

    def update(self, facts: UpdateFacts) -> Op[UpdateReply]:
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
        login = self.credentials.guess(raw_login)
        for _ in range(4):
            if login is None:
                if not agent_ok:
                    return self._once(Answer.BADAGENT)
                yield from self.credentials.prove(raw_login, None, password, target.client)
                return self._once(Answer.BADAUTH)
            result = yield self._update_step(login, password, request, target, agent_ok)
            status = result[0]
            if status in ("ok", "miss"):
                CREDENTIAL_CACHE.labels("hit" if status == "ok" else "miss").inc()
            if status == "ok":
                return (yield from self._finish(login, result, target))
            if status == "stale":  # the login now means something else: ask the claim again
                self.credentials.forget(login.name)
                login = yield from self.credentials.resolve(raw_login)
            elif status == "miss":
                if not agent_ok:
                    return self._once(Answer.BADAGENT)  # no argon2 for a client we refuse anyway
                if not (yield from self.credentials.prove(raw_login, login, password, target.client)):
                    return self._once(Answer.BADAUTH)
            elif status == "wrong":
                yield from self.credentials.failed(login.name, target.client)
                return self._once(Answer.BADAUTH)
            else:
                return self._once({"denied": Answer.BADAUTH, "abuse": Answer.ABUSE}.get(status, Answer.BADAGENT))
        log.warning("update for %s did not settle after retries", login.name if login else raw_login)
        return SERVER_ERROR

    def _once(self, answer: Answer) -> UpdateReply:
        return once(answer, self.policy.realm)

    def _target(self, request: UpdateRequest, facts: UpdateFacts) -> _Target:
        client = client_address(facts.peer, facts.headers, self.policy.trusted_proxies) or ""
        tail = _UNSAFE.sub(" ", client) + "|" + _UNSAFE.sub(" ", (facts.user_agent or "")[:MAX_AGENT_CHARS])
        if request.has_address:
            return _Target(request.ipv4, request.ipv6, client, tail)
        address = parse_ip(client)
        if isinstance(address, IPv4Address):
            return _Target(address, None, client, tail)
        return _Target(None, address, client, tail)

    def _update_step(self, login: Login, password: str, request: UpdateRequest, target: _Target,
                     agent_ok: bool) -> Eval:
        k, acct, pol = self.keys.account, login.account_id, self.policy
        keys = (k(acct), hosts_key(self.keys, acct), k(acct, "cred"), self.credentials.group_key(login),
                k(acct, "abuse"), k(acct, "nochg"), k(acct, "faults"))
        now = time.time()
        args: dict[str, Any] = {
            "login": login.name, "verifier": self.credentials.verifier(login.name, password), "kind": login.kind,
            "now_ms": int(now * 1000), "ipv4": str(target.ipv4 or ""), "ipv6": str(target.ipv6 or ""),
            "offline": "1" if request.offline else "0", "history_tail": target.history_tail,
            "agent_ok": "1" if agent_ok else "0", "nochg_limit": pol.abuse.nochg_per_host,
            "fault_limit": pol.abuse.faults, "window_ms": pol.abuse.window_ms,
            "history_prefix": history_prefix(self.keys, acct), "history_length": pol.history_length,
            "group": login.group or "", "now_s": int(now),
        }
        tokens = [f"h:{r.fqdn}" if r.fqdn else f"t:{r.token}" for r in request.hosts]
        return Eval(UPDATE, keys, (*(args[name] for name in ARG_ORDER), *tokens))

    def _finish(self, login: Login, result: list[Any], target: _Target) -> Op[UpdateReply]:
        nlines = int(result[1])
        pairs = [(str(result[2 + 2 * i]), str(result[3 + 2 * i] or "")) for i in range(nlines)]
        flat = result[2 + 2 * nlines:]
        changes = [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]
        failed = (yield from self._push(login, changes, target)) if changes and self.backend.enabled else set()
        lines = []
        for code, hosts in pairs:
            if code in ("good", "nochg") and failed.intersection(hosts.split(",")):
                lines.append(Answer.DNSERR.value)
            elif code in ("good", "nochg"):
                lines.append(format_line(Answer(code), target.ipv4, target.ipv6))
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
