"""Shared set-up for the update-endpoint tests: a real redis-server, the real adapters, real HTTP (httpx)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ddns_update.app import UpdateEndpoint, WsgiUpdateApp, build_service
from ddns_update.credentials import ThrottlePolicy
from ddns_update.dns_backend import DnsBackend, RecordChange
from ddns_update.groups import Group, Groups
from ddns_update.hosts import Hosts
from ddns_update.service import UpdatePolicy, UpdateService
from mfa_middleware.accounts import Accounts
from mfa_middleware.config import Settings
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import AsyncStore, MemoryStore, Store, open_async_store, open_store

AGENT = "test/1.0 me@example.com"
PASSWORD = "alice-password"


def settings(url: str, **kw: Any) -> Settings:
    return Settings(redis_url=url, secret_key="s" * 32, encryption_keys=("e" * 32,), **kw)


@dataclass
class RecordingBackend:
    """A DNS backend double that records pushes and fails the hosts it is told to (issue 5's interface)."""

    enabled: bool = True
    failing: set[str] = field(default_factory=set)
    pushes: list[list[RecordChange]] = field(default_factory=list)

    def push(self, changes: Sequence[RecordChange]) -> dict[str, str | None]:
        self.pushes.append(list(changes))
        return {c.host: ("REFUSED" if c.host in self.failing else None) for c in changes}

    def zone_for(self, host: str) -> str | None:
        return "example.test" if host.endswith(".example.test") else None


class Site:
    """One endpoint (ASGI or WSGI) over a real Redis (or, for ``url`` "memory", the in-memory store shared via
    ``memory``), with helpers to set data up and send updates."""

    def __init__(self, url: str, adapter: str, *, policy: UpdatePolicy | None = None,
                 throttle: ThrottlePolicy | None = None, backend: DnsBackend | None = None,
                 secret: str = "s" * 32, memory: MemoryStore | None = None,
                 hasher: PasswordHasher | None = None) -> None:
        self.adapter = adapter
        if url == "memory":
            url, memory = "", memory or MemoryStore()
        self.memory = memory
        self.sync: Store = open_store(url, memory=memory)
        self.async_store: AsyncStore = open_async_store(url, memory=memory)
        self.keys = self.sync.keys
        self.hasher = hasher or PasswordHasher(FAST)
        cfg = Settings(redis_url=url or None, secret_key=secret, encryption_keys=("e" * 32,))
        self.service: UpdateService = build_service(cfg, self.keys, self.hasher, backend, policy, throttle)
        self.accounts = Accounts(self.keys, self.hasher)
        self.hosts = Hosts(self.keys)
        self.groups = Groups(self.keys, self.hasher)
        self.client: Any = self._client("127.0.0.1")
        self._clients = {"127.0.0.1": self.client}

    def _client(self, address: str) -> Any:
        """A client whose requests come from ``address`` (the peer the adapter sees)."""
        if self.adapter == "asgi":
            transport: Any = httpx.ASGITransport(app=UpdateEndpoint(self.service, self.async_store),
                                                 client=(address, 40000))
            client: Any = httpx.AsyncClient(transport=transport, base_url="http://ddns.test")
        else:
            client = httpx.Client(transport=httpx.WSGITransport(app=WsgiUpdateApp(self.service, self.sync),
                                                                remote_addr=address), base_url="http://ddns.test")
        client.headers.pop("user-agent", None)  # only what a test sends
        return client

    def account(self, name: str = "alice", password: str = PASSWORD, hosts: Sequence[str] = ()) -> None:
        self.sync.run(self.accounts.create(name, password))
        if hosts:
            self.sync.run(self.hosts.add(name, hosts))

    def group(self, account: str, name: str, hosts: Sequence[str], login: str | None = None) -> tuple[Group, str]:
        return self.sync.run(self.groups.create(account, name, hosts, login))

    async def get(self, query: str = "", auth: tuple[str, str] | None = ("alice", PASSWORD),
                  agent: str | None = AGENT, headers: dict[str, str] | None = None,
                  method: str = "GET", data: dict[str, str] | None = None, at: str = "127.0.0.1") -> httpx.Response:
        """An update request from address ``at``."""
        hdrs = dict(headers or {})
        if agent is not None:
            hdrs["user-agent"] = agent
        kw: dict[str, Any] = {"headers": hdrs, "auth": auth}
        if data is not None:
            kw["data"] = data
        url = "/nic/update" + ("?" + query if query else "")
        client = self._clients.get(at)
        if client is None:
            client = self._clients[at] = self._client(at)
        if isinstance(client, httpx.AsyncClient):
            response: httpx.Response = await client.request(method, url, **kw)
        else:
            response = client.request(method, url, **kw)
        return response

    async def text(self, query: str = "", **kw: Any) -> str:
        return str((await self.get(query, **kw)).text)

    async def close(self) -> None:
        for client in self._clients.values():
            if isinstance(client, httpx.AsyncClient):
                await client.aclose()
            else:
                client.close()
        await self.async_store.close()
        self.sync.close()


def wait_until(predicate: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
