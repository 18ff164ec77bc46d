"""``mfa-admin``: operator commands for accounts and their second factor."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import secrets
from typing import Any

from .accounts import AccountExists, Accounts
from .backup_codes import BackupCodeHasher
from .cli_common import (
    EXIT_OK,
    EXIT_REFUSED,
    Refused,
    UsageProblem,
    add_common_options,
    connect,
    emit,
    read_secret_stdin,
    run_cli,
)
from .crypto import SeedCipher
from .passwords import PasswordHasher
from .store import Store
from .twofactor import TwoFactor


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


def show_fields(store: Store, account_id: str) -> dict[str, object]:
    """Extra facts about an account for ``user show``: its 2FA state."""
    st = store.run(_twofactor(store).status(account_id))
    return {
        "two_factor": "on" if st.enabled else "off",
        "backup_codes_left": st.backup_codes_left,
        "authenticator_app": st.totp,
        "passkeys": st.passkeys,  # reset-2fa removes them too
        "locked_until": _iso(st.locked_until),
        "security_question_set": st.security_question is not None,
        # The account is not locked, but its last attempt came from an address over its hourly cap.
        "blocked_by_address": st.blocked_by_address,
        "address_blocked_until": _iso(st.address_blocked_until),
    }


# -- 2FA commands (reset-2fa, check-answer, unlock) ----------------------------------------------
def _twofactor(store: Store) -> TwoFactor:
    # status/reset/unlock/check-answer never decrypt seeds nor hash backup codes, so the operator's
    # keys are not needed here; throwaway ones satisfy the constructor.
    throwaway = secrets.token_urlsafe(32)
    return TwoFactor(store.keys, SeedCipher([throwaway]), BackupCodeHasher(throwaway.encode()),
                     PasswordHasher())


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds") if ts else None


def _existing(store: Store, username: str) -> str:
    account = store.run(Accounts(store.keys, PasswordHasher()).get(username))
    if account is None:
        raise Refused(f"no account {username!r}")
    return account.id


def cmd_user_reset_2fa(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _existing(store, args.username)
    was_on = store.run(_twofactor(store).reset(account_id))
    emit(args, {"username": account_id, "two_factor": "off", "was_on": was_on},
         f"2FA of {account_id} is off" + ("" if was_on else " (it was not on)"))
    return EXIT_OK


def cmd_user_check_answer(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _existing(store, args.username)
    answer = read_secret_stdin("answer")
    ok = store.run(_twofactor(store).check_answer(account_id, answer))
    emit(args, {"username": account_id, "match": ok}, "match" if ok else "no match")
    return EXIT_OK if ok else EXIT_REFUSED


def cmd_user_unlock(args: argparse.Namespace) -> int:
    store = connect(args)
    account_id = _existing(store, args.username)
    store.run(_twofactor(store).unlock(account_id))
    emit(args, {"username": account_id, "unlocked": True}, f"{account_id} unlocked")
    return EXIT_OK


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


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageProblem(f"{text!r} is not an IP address") from None


def cmd_ip_show(args: argparse.Namespace) -> int:
    store = connect(args)
    info = store.run(_twofactor(store).address_status(_address(args.address)))
    info = {**info, "blocked_until": _iso(info["blocked_until"]), "window_ends": _iso(info["window_ends"])}
    emit(args, info, "\n".join(f"{k.replace('_', ' ')}: {_human(v)}" for k, v in info.items()))
    return EXIT_OK


def cmd_ip_unlock(args: argparse.Namespace) -> int:
    store = connect(args)
    address = _address(args.address)
    store.run(_twofactor(store).unlock_address(address))
    emit(args, {"address": address, "unlocked": True}, f"{address} unlocked")
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
    ip = top.add_parser("ip", help="client addresses")
    ips = ip.add_subparsers(title="ip commands", metavar="ACTION")
    for name, handler, help_ in (("show", cmd_ip_show, "failures and limits of one client address"),
                                 ("unlock", cmd_ip_unlock, "clear the limits of one client address")):
        p = ips.add_parser(name, help=help_)
        add_common_options(p, leaf=True)
        p.add_argument("address")
        p.set_defaults(handler=handler)
    return parser


def register_2fa_commands(sub: Any) -> None:
    """The 2FA commands: reset-2fa, check-answer (answer on stdin), unlock."""
    sub("reset-2fa", cmd_user_reset_2fa, "turn 2FA off after the account holder's identity was proven")
    sub("check-answer", cmd_user_check_answer, "compare the answer on stdin with the security answer")
    sub("unlock", cmd_user_unlock, "clear the verification throttle")


def main(argv: list[str] | None = None) -> None:
    run_cli(build_parser(), argv)


if __name__ == "__main__":
    main()
