"""ddns-admin: every command, text and --json output, exit codes 0 / 1 (refused) / 2 (usage), real Redis."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ddns_update.cli import main
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import open_store
from tests.ddns_harness import PASSWORD, Site

A, B = "a.example.test", "b.example.test"


class Cli:
    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--redis-url", self.url])
        out, err = self.capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("DDNS_DNS_BACKEND", "DDNS_DNS_ZONES", "DDNS_DNS_SERVER", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    store = open_store(redis_url)
    store.run(Accounts(store.keys, PasswordHasher(FAST)).create("alice", PASSWORD))
    store.run(Accounts(store.keys, PasswordHasher(FAST)).create("bob", "bob-password"))
    store.close()
    return Cli(redis_url, capsys)


def test_host_add_list_remove(cli: Cli) -> None:
    assert cli.json("host", "add", "alice", A, "B.Example.Test.") == {"account": "alice", "added": [A, B]}
    code, out, _ = cli("host", "add", "alice", A)  # idempotent for the owner
    assert code == 0 and f"added {A}" in out
    code, out, err = cli("host", "add", "bob", A)
    assert code == 1 and "another account" in err
    listed = cli.json("host", "list", "alice")["hosts"]
    assert [(h["host"], h["ipv4"], h["ipv6"], h["offline"], h["updated_at"]) for h in listed] == [
        (A, None, None, False, None), (B, None, None, False, None)]
    code, out, _ = cli("host", "list", "alice")
    assert code == 0 and "updated at" in out and A in out and "never" in out
    assert cli.json("host", "remove", "alice", A)["removed"] == [A]
    code, _, err = cli("host", "remove", "alice", A)
    assert code == 1 and "no host" in err
    assert cli.json("host", "add", "bob", A)["added"] == [A]  # released, so another account may take it


def test_host_usage_and_refusals(cli: Cli) -> None:
    assert cli("host", "add", "alice", "not a host")[0] == 2
    assert cli("host", "add", "alice", "x" * 64 + ".example.test")[0] == 2
    assert cli("host", "add", "nobody", A)[0] == 1
    assert cli("host", "list", "nobody")[0] == 1
    assert cli("host", "add", "alice")[0] == 2  # argparse: a HOSTNAME is required


def test_host_add_refuses_hosts_outside_the_dns_zones(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDNS_DNS_BACKEND", "rfc2136")
    monkeypatch.setenv("DDNS_DNS_SERVER", "127.0.0.1:5353")
    monkeypatch.setenv("DDNS_DNS_ZONES", "example.test")
    monkeypatch.setenv("DDNS_TSIG_NAME", "k")
    monkeypatch.setenv("DDNS_TSIG_SECRET", base64.b64encode(b"s" * 32).decode())
    code, _, err = cli("host", "add", "alice", "host.example.org")
    assert code == 1 and "zone" in err
    assert cli.json("host", "add", "alice", A)["added"] == [A]


def test_no_store_is_a_usage_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["host", "list", "alice"])
    assert exit_info.value.code == 2
    assert "REDIS_URL" in capsys.readouterr().err


async def test_group_lifecycle(cli: Cli, redis_url: str) -> None:
    cli.json("host", "add", "alice", A, B)
    created = cli.json("group", "create", "alice", "home", "--hosts", f"{A},{B}")
    assert set(created) >= {"username", "password"} and len(created["password"]) >= 22
    code, out, _ = cli("group", "create", "alice", "office", "--hosts", A, "--username", "office-router")
    assert code == 0 and "username: office-router" in out and "password: " in out
    assert cli("group", "create", "alice", "home", "--hosts", A)[0] == 1  # exists
    assert cli("group", "create", "bob", "x", "--hosts", A)[0] == 1  # not bob's host
    assert cli("group", "create", "bob", "y", "--hosts", "bob.example.test", "--username", "alice")[0] == 1
    assert cli("group", "create", "alice", "bad.name", "--hosts", A)[0] == 2
    listed = cli.json("group", "list", "alice")["groups"]
    assert [(g["group"], g["username"], g["hosts"]) for g in listed] == [
        ("home", created["username"], [A, B]), ("office", "office-router", [A])]
    assert cli.json("group", "hosts", "alice", "office", "--add", B, "--remove", A)["hosts"] == [B]
    assert cli("group", "hosts", "alice", "office", "--add", "c.example.test")[0] == 1
    assert cli("group", "hosts", "alice", "nope", "--add", A)[0] == 1

    site = Site(redis_url, "asgi")
    try:
        auth = (created["username"], created["password"])
        assert await site.text("hostname=home&myip=192.0.2.1", auth=auth) == "good 192.0.2.1\n"
        rotated = cli.json("group", "rotate", "alice", "home")
        assert rotated["username"] == created["username"] and rotated["password"] != created["password"]
        assert (await site.get("hostname=home&myip=192.0.2.2", auth=auth)).status_code == 401
        auth = (rotated["username"], rotated["password"])
        assert await site.text("hostname=home&myip=192.0.2.2", auth=auth) == "good 192.0.2.2\n"
        assert cli.json("group", "delete", "alice", "home")["deleted"] is True
        assert (await site.get("hostname=home&myip=192.0.2.3", auth=auth)).status_code == 401
    finally:
        await site.close()
    assert cli("group", "delete", "alice", "home")[0] == 1
    assert cli("group", "rotate", "alice", "home")[0] == 1
    code, out, _ = cli("group", "list", "bob")
    assert code == 0 and "no groups" in out


async def test_account_set_and_abuse_clear(cli: Cli, redis_url: str) -> None:
    cli.json("host", "add", "alice", A)
    assert cli.json("account", "set", "alice", "--account-password-updates", "deny") == {
        "account": "alice", "account_password_updates": "deny", "offline_updates": "allow"}
    assert cli("account", "set", "alice", "--account-password-updates", "maybe")[0] == 2
    assert cli("account", "set", "alice")[0] == 2
    assert cli("account", "set", "nobody", "--account-password-updates", "deny")[0] == 1
    site = Site(redis_url, "asgi")
    try:
        assert (await site.get(f"hostname={A}&myip=192.0.2.1")).status_code == 401
        cli.json("account", "set", "alice", "--account-password-updates", "allow", "--offline-updates", "deny")
        assert await site.text(f"hostname={A}&myip=192.0.2.1&offline=YES") == "!donator\n"
        for _ in range(32):  # one good, then more than 30 nochg for the host within the hour
            await site.get(f"hostname={A}&myip=192.0.2.1")
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "abuse\n"
        assert cli.json("abuse", "clear", "ALICE") == {"login": "alice", "cleared": True}
        assert await site.text(f"hostname={A}&myip=192.0.2.1") == "nochg 192.0.2.1\n"
    finally:
        await site.close()
    code, out, _ = cli("abuse", "clear", "alice")
    assert code == 0 and "not flagged" in out
    assert cli("abuse", "clear", "nobody")[0] == 1
    assert cli("abuse")[0] == 2
