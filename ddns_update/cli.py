"""``ddns-admin``: operator commands for hosts, groups, account switches and abuse flags."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Callable
from typing import TypeVar

from ddns_update.abuse import Abuse
from ddns_update.account_settings import AccountSettings
from ddns_update.credentials import Credentials
from ddns_update.dns_backend import DnsBackend, RecordChange, backend_from_settings
from ddns_update.dns_sync import accounts_with_hosts, bar, sync
from ddns_update.groups import GroupRefused, Groups
from ddns_update.hosts import BadHostname, HostRefused, Hosts, canonical_host
from mfa_middleware.accounts import Accounts, InvalidUsername, normalize_username
from mfa_middleware.cli_common import (
    EXIT_OK,
    EXIT_REFUSED,
    Refused,
    UsageProblem,
    add_common_options,
    connect,
    emit,
    run_cli,
)
from mfa_middleware.config import ConfigError, Settings
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import Store

Handler = Callable[[argparse.Namespace], int]
T = TypeVar("T")


def _backend() -> DnsBackend:
    # Only the DDNS_* variables matter here; the cookie/seed secrets are not needed by this CLI.
    env = {**os.environ, "MFA_SECRET_KEY": "-" * 16, "MFA_ENCRYPTION_KEY": "-" * 16}
    try:
        return backend_from_settings(Settings.from_env(env))
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None


def _account(store: Store, raw: str) -> str:
    try:
        account_id = normalize_username(raw)
    except InvalidUsername as exc:
        raise UsageProblem(str(exc)) from None
    if store.run(Accounts(store.keys, PasswordHasher()).get(account_id)) is None:
        raise Refused(f"no account {account_id!r}")
    return account_id


def _hostnames(raw: list[str]) -> list[str]:
    names = [h for item in raw for h in item.split(",") if h.strip()]
    try:
        return [canonical_host(h) for h in names]
    except BadHostname as exc:
        raise UsageProblem(str(exc)) from None


def cmd_host_add(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id, hosts = _account(store, args.account), _hostnames(args.hostnames)
    backend = _backend()
    outside = [h for h in hosts if backend.zone_for(h) is None]
    if outside:
        raise Refused(f"not in any zone the DNS server serves (DDNS_DNS_ZONES): {', '.join(outside)}")
    try:
        added = store.run(Hosts(store.keys).add(account_id, hosts))
    except HostRefused as exc:
        raise Refused(str(exc)) from None
    emit(args, {"account": account_id, "added": added}, "\n".join(f"added {h}" for h in added))
    return EXIT_OK


def cmd_host_remove(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id, hosts = _account(store, args.account), _hostnames(args.hostnames)
    held = {r.host for r in store.run(Hosts(store.keys).list(account_id))}
    missing = [h for h in hosts if h not in held]
    if missing:
        raise Refused(f"account {account_id} has no host {', '.join(missing)}")
    removed = store.run(Hosts(store.keys).remove(account_id, hosts))
    backend, warnings = _backend(), []
    if backend.enabled and removed:
        outcome = backend.push([RecordChange(h, None, None) for h in removed])
        warnings = [f"{h}: DNS records not deleted: {err}" for h, err in outcome.items() if err]
    text = "\n".join([*(f"removed {h}" for h in removed), *(f"warning: {w}" for w in warnings)])
    emit(args, {"account": account_id, "removed": removed, "warnings": warnings}, text)
    return EXIT_OK


def cmd_host_set(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id, (host,) = _account(store, args.account), _hostnames([args.host])
    if args.ipv6_interface_id is None:
        raise UsageProblem("nothing to set: give --ipv6-interface-id ID (\"none\" clears it)")
    try:
        value = store.run(Hosts(store.keys).set_interface_id(account_id, host, args.ipv6_interface_id))
    except HostRefused as exc:
        raise Refused(str(exc)) from None
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    emit(args, {"account": account_id, "host": host, "ipv6_interface_id": value},
         f"{host}: IPv6 interface id {value}" if value else f"{host}: no IPv6 interface id")
    return EXIT_OK


def _when(ts: int | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def cmd_host_list(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _account(store, args.account)
    records = store.run(Hosts(store.keys).list(account_id))
    rows = [{**r.as_dict(), "updated_at": _when(r.updated_at)} for r in records]
    lines = [f"{'host':<32} {'ipv4':<15} {'ipv6':<39} {'offline':<7} {'updated at':<25} ipv6 interface id"]
    lines += [f"{r['host']!s:<32} {r['ipv4'] or '-':<15} {r['ipv6'] or '-':<39} "
              f"{'yes' if r['offline'] else 'no':<7} {r['updated_at'] or 'never'!s:<25} "
              f"{r['ipv6_interface_id'] or '-'}" for r in rows]
    emit(args, {"account": account_id, "hosts": rows}, "\n".join(lines))
    return EXIT_OK


def _groups(store: Store) -> Groups:
    return Groups(store.keys, PasswordHasher())


def _group_call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except GroupRefused as exc:
        raise Refused(str(exc)) from None
    except ValueError as exc:  # a malformed group name, host name or login
        raise UsageProblem(str(exc)) from None


def cmd_group_create(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id, hosts = _account(store, args.account), _hostnames([args.hosts])
    if not hosts:
        raise UsageProblem("--hosts needs at least one host name")
    groups = _groups(store)
    group, password = _group_call(lambda: store.run(groups.create(account_id, args.group, hosts, args.username)))
    emit(args, {"username": group.login, "password": password, "group": group.name, "hosts": list(group.hosts)},
         f"group {group.name} created for {', '.join(group.hosts)}\nusername: {group.login}\npassword: {password}\n"
         "(the password is shown only this once)")
    return EXIT_OK


def cmd_group_hosts(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _account(store, args.account)
    add, remove = _hostnames(args.add or []), _hostnames(args.remove or [])
    group = _group_call(lambda: store.run(_groups(store).set_hosts(account_id, args.group, add, remove)))
    emit(args, group.as_dict(), f"group {group.name}: {', '.join(group.hosts) or '(no hosts)'}")
    return EXIT_OK


def cmd_group_rotate(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _account(store, args.account)
    login, password = _group_call(lambda: store.run(_groups(store).rotate(account_id, args.group)))
    emit(args, {"username": login, "password": password},
         f"username: {login}\npassword: {password}\n(the old password no longer works; this one is shown once)")
    return EXIT_OK


def cmd_group_delete(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _account(store, args.account)
    login = _group_call(lambda: store.run(_groups(store).delete(account_id, args.group)))
    emit(args, {"account": account_id, "group": args.group, "username": login, "deleted": True},
         f"group {args.group} deleted (login {login} no longer works)")
    return EXIT_OK


def cmd_group_list(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _account(store, args.account)
    groups = store.run(_groups(store).list(account_id))
    lines = [f"{g.name}  username={g.login}  hosts={','.join(g.hosts) or '-'}" for g in groups]
    emit(args, {"account": account_id, "groups": [g.as_dict() for g in groups]}, "\n".join(lines) or "(no groups)")
    return EXIT_OK


def cmd_account_set(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _account(store, args.account)
    wanted = {"account_password_updates": args.account_password_updates, "offline_updates": args.offline_updates}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        raise UsageProblem("nothing to set: give --account-password-updates and/or --offline-updates")
    switches = AccountSettings(store.keys)
    for name, value in wanted.items():
        if not store.run(switches.set(account_id, name, value == "allow")):
            raise Refused(f"no account {account_id!r}")
    current = store.run(switches.get(account_id)) or {}
    emit(args, {"account": account_id, **current},
         "\n".join(f"{k.replace('_', ' ')}: {v}" for k, v in current.items()))
    return EXIT_OK


def cmd_abuse_clear(args: argparse.Namespace) -> int:
    store = connect(args)
    hasher = PasswordHasher()
    credentials = Credentials(store.keys, Accounts(store.keys, hasher), hasher, b"")
    who = store.run(credentials.resolve(args.login))
    if who is None:
        raise Refused(f"no account or group login {args.login!r}")
    cleared = store.run(Abuse(store.keys, credentials).clear(args.login))
    emit(args, {"login": who.name, "cleared": cleared},
         f"abuse flag of {who.name} cleared" if cleared else f"{who.name} was not flagged")
    return EXIT_OK


def cmd_dns_sync(args: argparse.Namespace) -> int:
    if bool(args.account) == bool(args.all):
        raise UsageProblem("name one ACCOUNT or pass --all")
    backend = _backend()
    if not backend.enabled:
        raise UsageProblem("DDNS_DNS_BACKEND is 'store': there is no DNS server to sync (set it to 'rfc2136')")
    store = connect(args)
    accounts = store.run(accounts_with_hosts(store.keys)) if args.all else [_account(store, args.account)]
    report = sync(store, backend, accounts, None if args.json else bar())
    lines = [f"synced {report.hosts - len(report.failed)} of {report.hosts} hosts in {report.accounts} account(s)"]
    lines += [f"failed {host}: {error}" for host, error in sorted(report.failed.items())]
    emit(args, {"accounts": report.accounts, "hosts": report.hosts, "failed": report.failed}, "\n".join(lines))
    return EXIT_REFUSED if report.failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddns-admin", description="Manage dynamic DNS hosts, groups and abuse flags.")
    add_common_options(parser)
    top = parser.add_subparsers(title="commands", metavar="COMMAND")

    def area(name: str, help_: str) -> Callable[[str, Handler, str], argparse.ArgumentParser]:
        sub = top.add_parser(name, help=help_).add_subparsers(title=f"{name} commands", metavar="ACTION")

        def leaf(action: str, handler: Handler, leaf_help: str) -> argparse.ArgumentParser:
            p = sub.add_parser(action, help=leaf_help)
            add_common_options(p, leaf=True)
            p.set_defaults(handler=handler)
            return p
        return leaf

    host = area("host", "an account's hosts")
    for action, handler, help_ in (("add", cmd_host_add, "add hosts (each belongs to one account)"),
                                   ("remove", cmd_host_remove, "remove hosts")):
        p = host(action, handler, help_)
        p.add_argument("account")
        p.add_argument("hostnames", nargs="+", metavar="HOSTNAME")
    host("list", cmd_host_list, "hosts with IPv4, IPv6, offline, updated at").add_argument("account")
    p = host("set", cmd_host_set, "set a host's IPv6 interface id (prefix updates combine it with the prefix)")
    p.add_argument("account")
    p.add_argument("host")
    p.add_argument("--ipv6-interface-id", metavar="ID",
                   help="e.g. ::1:2:3:4; an update with an IPv6 prefix sets the AAAA to prefix + ID; none clears it")

    group = area("group", "sub-account groups with their own update login")
    p = group("create", cmd_group_create, "create a group; prints its login and password once")
    p.add_argument("account")
    p.add_argument("group")
    p.add_argument("--hosts", required=True, help="comma-separated host names of the account")
    p.add_argument("--username", help="choose the login (default: generated)")
    p = group("hosts", cmd_group_hosts, "add or remove a group's hosts")
    p.add_argument("account")
    p.add_argument("group")
    p.add_argument("--add", action="append", metavar="H,...")
    p.add_argument("--remove", action="append", metavar="H,...")
    for action, handler, help_ in (("rotate", cmd_group_rotate, "new password (printed once); the old fails at once"),
                                   ("delete", cmd_group_delete, "delete a group and its login")):
        p = group(action, handler, help_)
        p.add_argument("account")
        p.add_argument("group")
    group("list", cmd_group_list, "an account's groups").add_argument("account")

    account = area("account", "per-account switches of the update endpoint")
    p = account("set", cmd_account_set, "allow or deny account-password updates / offline updates")
    p.add_argument("account")
    p.add_argument("--account-password-updates", choices=("allow", "deny"))
    p.add_argument("--offline-updates", choices=("allow", "deny"))

    dns = area("dns", "the DNS server behind the store")
    p = dns("sync", cmd_dns_sync, "push the store's records to DNS (after an outage or for a new server)")
    p.add_argument("account", nargs="?")
    p.add_argument("--all", action="store_true", help="every account")

    abuse = area("abuse", "abuse flags")
    abuse("clear", cmd_abuse_clear, "clear a login's abuse flag").add_argument("login")
    return parser


def main(argv: list[str] | None = None) -> None:
    run_cli(build_parser(), argv)


if __name__ == "__main__":
    main()
