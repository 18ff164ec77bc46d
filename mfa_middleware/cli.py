"""``mfa-admin``: operator commands for accounts and their second factor."""

from __future__ import annotations

import argparse
import datetime as dt

from .accounts import AccountExists, Accounts
from .cli_common import EXIT_OK, Refused, add_common_options, connect, emit, read_secret_stdin, run_cli
from .passwords import PasswordHasher


def cmd_user_add(args: argparse.Namespace) -> int:
    store = connect(args)
    password = read_secret_stdin()
    try:
        account = store.run(Accounts(store.keys, PasswordHasher()).create(args.username, password))
    except AccountExists as exc:
        raise Refused(str(exc)) from None
    emit(args, {"username": account.id, "created": True}, f"account {account.id} created")
    return EXIT_OK


def cmd_user_passwd(args: argparse.Namespace) -> int:
    store = connect(args)
    password = read_secret_stdin()
    if not store.run(Accounts(store.keys, PasswordHasher()).set_password(args.username, password)):
        raise Refused(f"no account {args.username!r}")
    emit(args, {"username": args.username, "changed": True}, f"password of {args.username} changed")
    return EXIT_OK


def show_fields(store: object, account_id: str) -> dict[str, object]:
    """Extra facts about an account for ``user show``; the 2FA module extends this."""
    return {}


def cmd_user_show(args: argparse.Namespace) -> int:
    store = connect(args)
    account = store.run(Accounts(store.keys, PasswordHasher()).get(args.username))
    if account is None:
        raise Refused(f"no account {args.username!r}")
    info: dict[str, object] = {
        "username": account.id,
        "display_name": account.username,
        "created_at": dt.datetime.fromtimestamp(account.created_at, dt.UTC).isoformat(timespec="seconds"),
    }
    info.update(show_fields(store, account.id))
    text = "\n".join(f"{k.replace('_', ' ')}: {_human(v)}" for k, v in info.items())
    emit(args, info, text)
    return EXIT_OK


def _human(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "-" if value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfa-admin", description="Manage accounts and their 2FA.")
    add_common_options(parser)
    top = parser.add_subparsers(title="commands", metavar="COMMAND")
    user = top.add_parser("user", help="accounts")
    users = user.add_subparsers(title="user commands", metavar="ACTION")

    def sub(name: str, handler: object, help_: str, *, stdin: bool = False) -> argparse.ArgumentParser:
        p = users.add_parser(name, help=help_)
        add_common_options(p, leaf=True)
        p.add_argument("username")
        if stdin:
            p.add_argument("--password-stdin", action="store_true", required=True,
                           help="read the password from standard input")
        p.set_defaults(handler=handler)
        return p

    sub("add", cmd_user_add, "create an account", stdin=True)
    sub("passwd", cmd_user_passwd, "set an account's password", stdin=True)
    sub("show", cmd_user_show, "show an account and its 2FA state")
    register_2fa_commands(sub)
    return parser


def register_2fa_commands(sub: object) -> None:
    """Hook for the 2FA commands (reset-2fa, check-answer, unlock)."""


def main(argv: list[str] | None = None) -> None:
    run_cli(build_parser(), argv)


if __name__ == "__main__":
    main()
