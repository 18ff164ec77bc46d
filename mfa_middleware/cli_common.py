"""What both operator CLIs share: store URL handling, output, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .store import Store, StoreError, StoreURLError, open_store, parse_store_url

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
NO_STORE = (
    "no store configured: set REDIS_URL or pass --redis-url. The in-memory store lives only "
    "inside a running server, so an admin command cannot reach it."
)


class Refused(Exception):
    """The command was understood but refused (exit 1); the message is shown as is."""


class UsageProblem(Exception):
    """Bad usage or configuration (exit 2)."""


def add_common_options(parser: argparse.ArgumentParser, *, leaf: bool = False) -> None:
    """Accept the common options before or after the command words.

    On leaf parsers the defaults are SUPPRESS, so that an option given before the
    command is not overwritten by the leaf's default (an argparse pitfall).
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if leaf else value

    parser.add_argument("--redis-url", default=default(None), help="store URL (default: $REDIS_URL)")
    parser.add_argument("--prefix", default=default(os.environ.get("MFA_KEY_PREFIX", "mfa")), help="key prefix")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def connect(args: argparse.Namespace) -> Store:
    url = args.redis_url or os.environ.get("REDIS_URL") or ""
    try:
        spec = parse_store_url(url)
    except StoreURLError as exc:
        raise UsageProblem(str(exc)) from None
    if spec.kind == "memory":
        raise UsageProblem(NO_STORE)
    return open_store(url, prefix=args.prefix)


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


def read_secret_stdin(what: str = "password") -> str:
    """One line from stdin (without its newline); an empty one is a usage problem."""
    data = sys.stdin.buffer.readline()
    try:
        line = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UsageProblem(f"{what} on stdin is not valid UTF-8") from None
    if not line:
        raise UsageProblem(f"no {what} on stdin")
    return line


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None) -> NoReturn:
    """Parse, dispatch to ``args.handler(args)``, and turn every failure into a message + exit code."""
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        code = handler(args)
    except UsageProblem as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except (Refused, ValueError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        code = EXIT_REFUSED
    except StoreError as exc:
        print(f"{parser.prog}: store error: {exc}", file=sys.stderr)
        code = EXIT_REFUSED
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
