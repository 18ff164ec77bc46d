"""Script calls encoded ahead, for the driver that writes RESP itself (``fast_driver``).

On the update endpoint's warm path one ``EVALSHA`` is the whole store round trip, and encoding it is a
noticeable share of a served update's CPU: 27 arguments, 18 of them the same for every update of one login
(the script's SHA, the account's seven key names, the login's settings). ``evalsha_head`` encodes those
once, to be kept by the caller; ``evalsha`` adds a call's own arguments (hiredis, in C) and the array
header. The result is the very bytes ``hiredis.pack_command`` makes of the whole command
(``tests/test_resp.py`` checks it).
"""

from __future__ import annotations

from typing import Any

import hiredis

from .effects import Script


def evalsha_head(script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> bytes:
    """``EVALSHA sha numkeys *keys *args`` in RESP, without its array header: a head for ``evalsha``."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    return _body(hiredis.pack_command(command), len(command))


def evalsha(head: bytes, head_count: int, args: tuple[Any, ...]) -> bytes:
    """The whole command: ``head`` (``evalsha_head``'s, made of ``head_count`` items) followed by ``args``."""
    return b"*%d\r\n" % (head_count + len(args)) + head + _body(hiredis.pack_command(args), len(args))


def _body(packed: bytes, count: int) -> bytes:
    # pack_command's output starts with the array header "*<count>\r\n"; the bulk strings follow.
    return packed[len(str(count)) + 3:]
