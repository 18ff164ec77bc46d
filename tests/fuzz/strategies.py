"""Hypothesis strategies for hostile input, shared by the parser fuzz tests and the long `make fuzz` run.

How many examples each property gets: a fast slice by default (`make test`), the long run when
``FUZZ_LONG=1`` (`make fuzz`, >= 1,000,000 inputs in all). ``COUNTS`` records how many inputs each
parser actually saw, so the run prints real figures rather than the configured ones.
"""

from __future__ import annotations

import base64
import os
import string
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG = os.environ.get("FUZZ_LONG", "") not in ("", "0")
COUNTS: Counter[str] = Counter()
F = TypeVar("F", bound=Callable[..., Any])


def fuzz(fast: int, long: int) -> Callable[[F], F]:
    """Hypothesis settings for one property: ``fast`` examples in `make test`, ``long`` in `make fuzz`."""
    return settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "0")) or (long if LONG else fast),
        deadline=None,
        derandomize=False,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def seen(name: str) -> None:
    COUNTS[name] += 1


# Characters that break naive parsers: controls, separators, quotes, percent, surrogate-adjacent planes,
# IDNA dots and soft hyphens, full-width digits, right-to-left marks, the Unicode replacement char.
NASTY_CHARS = (
    "\x00\x01\x08\t\n\r\x0b\x0c\x1b\x7f\x80\x85\x9f\xa0\xad ;,=&?#%+:/\\@[]{}()<>\"'`$*|!~^"
    "\u2028\u2029\u200b\u200c\u200d\u2060\ufeff\ufffd\u3002\uff0e\uff61\u0130\u0131\u017f\u212a"
    "\u00df\u03c2\u0663\uff11\u202e\u0301"
)
NASTY_STRINGS = [
    "", " ", "=", "==", ";", ",", ":", "%", "%%", "%zz", "%00", "%ff", "%c3%28", "%ed%a0%80", "\x00",
    "xn--", "xn--zz", "xn--a", "xn---", "-", ".", "..", "...", "a..b", ".a.b", "a.b.", "a.b..",
    "127.0.0.1", "::1", "::", "0.0.0.0", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4,::1", "[::1]:80",
    "999.999.999.999", "1.2.3", "0x7f.1", "1e3", "inf", "nan", "-1", "99999999999999999999", "٣",
    "Basic", "Basic ", "basic Og==", "Basic Og", "Basic ===", "Bearer x", "YWxpY2U6", "OnBhc3M=",
    '"', '"\\"', "$Version=1", "a=b; c", "a=\"b", "\\", "\ud7ff", "\U0010ffff", "\u3002\u3002",
]

nasty_char = st.one_of(st.sampled_from(NASTY_CHARS), st.characters())
nasty_text = st.one_of(
    st.text(),
    st.text(nasty_char, max_size=40),
    st.sampled_from(NASTY_STRINGS),
    st.lists(st.sampled_from(NASTY_STRINGS), max_size=6).map("".join),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)
short_text = st.text(max_size=30)
percent_byte = st.integers(0, 255).map(lambda b: f"%{b:02X}")
label = st.one_of(
    st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=70),
    st.sampled_from(["xn--", "xn--nxasmq6b", "xn--bcher-kva", "bücher", "例え", "ß", "ς", "a\u00adb", "-a", "a-"]),
    st.text(nasty_char, min_size=0, max_size=8),
)
hostname = st.one_of(
    st.lists(label, min_size=1, max_size=6).flatmap(
        lambda labels: st.sampled_from([".", "\u3002", "\uff0e", ".."]).map(lambda dot: dot.join(labels))
    ),
    st.lists(label, min_size=1, max_size=130).map(".".join),  # long names
    nasty_text,
)
ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:{len(str(a))}"),
    st.ip_addresses(v=4).map(lambda a: f"{a}:65536"),
    st.ip_addresses().map(lambda a: str(a).upper() + " "),
    st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
    nasty_text,
)


def _query_value(key: str) -> st.SearchStrategy[str]:
    if key == "hostname":
        return st.lists(hostname, max_size=25).map(",".join)
    if key in ("myip", "myipv6"):
        return st.lists(ip_text, max_size=3).map(",".join)
    if key == "offline":
        return st.sampled_from(["YES", "no", "Yes ", "", "1", "true", "\u0130", "yes\x00"])
    return nasty_text


QUERY_KEYS = ["hostname", "myip", "myipv6", "offline", "system", "wildcard", "mx", "backmx"]
query_pair = st.one_of(
    st.sampled_from(QUERY_KEYS).flatmap(lambda k: _query_value(k).map(lambda v: (k, v))),
    st.tuples(nasty_text, nasty_text),
)


def _encode_pair(pair: tuple[str, str], raw: bool) -> str:
    from urllib.parse import quote

    key, value = pair
    if raw:
        return f"{key}={value}"
    return f"{quote(key, safe='', errors='surrogatepass')}={quote(value, safe=',', errors='surrogatepass')}"


query_string = st.one_of(
    st.lists(st.tuples(query_pair, st.booleans()), max_size=12).map(
        lambda items: "&".join(_encode_pair(p, raw) for p, raw in items)
    ),
    st.lists(st.one_of(percent_byte, st.sampled_from(["&", "=", ";", "+", "hostname", "myip", "%"])),
             max_size=60).map("".join),
    st.integers(0, 300).map(lambda n: "&".join(f"k{i}=v" for i in range(n))),  # over MAX_QUERY_FIELDS
    nasty_text,
)
query_bytes = st.one_of(st.binary(max_size=200), query_string.map(lambda s: s.encode("utf-8", "surrogatepass")))


def _b64_variants(data: bytes) -> st.SearchStrategy[str]:
    std = base64.b64encode(data).decode()
    return st.sampled_from([std, std.rstrip("="), base64.urlsafe_b64encode(data).decode(), std + "=", " " + std,
                            std[:-1], std + "\x00"])


credential_bytes = st.one_of(
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(
        lambda up: f"{up[0]}:{up[1]}".encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.tuples(st.binary(max_size=10), st.binary(max_size=10)).map(lambda up: up[0] + b":" + up[1]),
)
basic_header = st.one_of(
    st.none(),
    nasty_text,
    st.binary(max_size=60),
    st.tuples(st.sampled_from(["Basic ", "basic ", "BASIC  ", "Basic\t", " Basic ", "Digest ", "Basic"]),
              credential_bytes.flatmap(_b64_variants)).map("".join),
    st.tuples(st.sampled_from([b"Basic ", b"basic "]), st.binary(max_size=60)).map(b"".join),
)

cookie_header = st.one_of(
    nasty_text,
    st.lists(st.tuples(nasty_text, nasty_text), max_size=8).map(
        lambda items: "; ".join(f"{k}={v}" for k, v in items)
    ),
    st.lists(st.sampled_from(["mfa_session=", "mfa_trust=", "__Host-mfa_session=", '"', "=", ";", "$Path=/",
                              "expires=Thu, 01 Jan 1970", "\\", "\\054", "a", ".", "\x00", "\xff", "é"]),
             max_size=15).map("".join),
)

json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=80)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=5), children, max_size=4)),
    max_leaves=10,
)

form_body = st.one_of(
    st.binary(max_size=300),
    query_string.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(st.tuples(st.sampled_from(["csrf_token", "code", "backup_code", "password", "question", "answer",
                                        "remember", "next"]), st.binary(max_size=40)), max_size=10).map(
        lambda items: b"&".join(k.encode() + b"=" + v for k, v in items)
    ),
    st.integers(0, 70_000).map(lambda n: b"a=" + b"x" * n),  # around MAX_FORM_BYTES
    st.integers(0, 5000).map(lambda n: b"&" * n + b"=" * n),
)

SCHEMES = ["redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster",
           "REDIS", "memory", "http", "", "redis+", "redis+foo"]
netloc = st.one_of(
    st.lists(st.one_of(
        st.sampled_from(["h", "127.0.0.1", "[::1]", "[::1", "::1]", "h:", "h:0", "h:-1", "h:65536", "h:99999999999",
                         "h:١٢", "h: 1", "h:1e3", "u:p@h", ":p@h", "u@h", "@", "%zz@h", "[", "]", "[]", "h:p"]),
        nasty_text), max_size=4).map(",".join),
    nasty_text,
)
store_url = st.one_of(
    st.tuples(st.sampled_from(SCHEMES), st.sampled_from(["://", ":/", ":", "//", ":///"]), netloc,
              st.lists(st.sampled_from(["", "0", "mymaster", "1", "x", "%zz", "99999999999999999999", "-1"]),
                       max_size=3).map("/".join),
              st.lists(st.tuples(st.sampled_from(["socket_timeout", "socket_connect_timeout", "db", "x",
                                                  "health_check_interval"]),
                                 st.sampled_from(["1", "0.5", "-1", "nan", "inf", "x", "", "1e309", "%"])),
                       max_size=3).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv)),
              ).map(lambda p: f"{p[0]}{p[1]}{p[2]}/{p[3]}" + (f"?{p[4]}" if p[4] else "")),
    nasty_text,
    st.none(),
)
