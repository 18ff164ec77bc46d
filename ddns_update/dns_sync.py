"""Push the store's records to DNS: recovery after a DNS outage, or filling a new server.

The store is the source of truth; ``sync`` replaces every host's A/AAAA rrsets with what
the store holds (an offline host or one never updated has them deleted).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from mfa_middleware.store import Keys, Op, Store, cmd

from .dns_backend import MAX_CHANGES_PER_MESSAGE, DnsBackend, RecordChange
from .hosts import HostRecord, Hosts, hosts_key


@dataclass
class SyncReport:
    accounts: int = 0
    hosts: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def accounts_with_hosts(keys: Keys) -> Op[list[str]]:
    """Every account that has a hosts record, by SCAN (never KEYS: it must not stall the server)."""
    head, tail = hosts_key(keys, "\x00").split("\x00")
    pattern = _glob_escape(head) + "*" + _glob_escape(tail)
    found: set[str] = set()
    cursor = 0
    while True:
        cursor, batch = yield cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)  # every primary on a cluster
        found.update(k[len(head) : len(k) - len(tail)] for k in batch)
        if int(cursor) == 0:
            return sorted(found)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def changes_for(records: Iterable[HostRecord]) -> list[RecordChange]:
    return [RecordChange(r.host, r.ipv4, r.ipv6, r.offline) for r in records]


def sync(store: Store, backend: DnsBackend, accounts: Iterable[str],
         progress: Callable[[int, int], None] | None = None) -> SyncReport:
    """Push each account's records, one UPDATE per zone per chunk; returns what failed."""
    hosts = Hosts(store.keys)
    pending = [(a, changes_for(store.run(hosts.list(a)))) for a in accounts]
    total = sum(len(c) for _, c in pending)
    report = SyncReport(accounts=len(pending))
    for _, changes in pending:
        for chunk in _chunks(changes, MAX_CHANGES_PER_MESSAGE):
            for host, error in backend.push(chunk).items():
                if error is not None:
                    report.failed[host] = error
            report.hosts += len(chunk)
            if progress:
                progress(report.hosts, total)
    return report


def _chunks(items: list[RecordChange], size: int) -> Iterator[list[RecordChange]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bar(stream: TextIO = sys.stderr, width: int = 30) -> Callable[[int, int], None] | None:
    """A one-line progress bar when ``stream`` is a terminal; None (silent) otherwise."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} hosts")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show
