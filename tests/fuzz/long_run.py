"""The volume half of `make fuzz`: a mutational fuzzer feeding >= 1,000,000 inputs to every parser.

Hypothesis (tests/test_fuzz_parsers.py) explores structure; this loop adds raw volume. Each parser has a
corpus of valid and near-valid inputs; every round picks one, mutates it (bit flips, nasty insertions,
truncation, duplication, splicing with another corpus entry, percent/base64 re-encoding) and runs the
parser plus its invariants. Any exception other than the parser's documented refusal stops the run with
the input printed for a regression test.

    python -m tests.fuzz.long_run [--total 1000000] [--seed N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

from ddns_update.groups import group_name
from ddns_update.hosts import BadHostname, canonical_host
from ddns_update.protocol import (
    MAX_HOSTNAME_LENGTH,
    MAX_HOSTS,
    agent_allowed,
    client_address,
    normalize_hostname,
    parse_basic_auth,
    parse_ip_params,
    parse_update,
    www_authenticate,
)
from mfa_middleware import backup_codes
from mfa_middleware.accounts import InvalidUsername, normalize_username
from mfa_middleware.gate import parse_cookies, parse_form, safe_next
from mfa_middleware.sessions import Sessions
from mfa_middleware.store import Keys, StoreURLError, parse_store_url
from mfa_middleware.totp import TotpParams, match_step, new_seed, normalize_code
from mfa_middleware.twofactor import normalize_answer
from tests.fuzz.strategies import NASTY_CHARS, NASTY_STRINGS

SESSIONS = Sessions(Keys("fuzz"), "fuzz-secret-key-0123456789abcdef")
SEED = new_seed()
PARAMS = TotpParams()
TRUSTED = [__import__("ipaddress").ip_network("10.0.0.0/8"), __import__("ipaddress").ip_network("::1/128")]
TOKENS = [*NASTY_STRINGS, *NASTY_CHARS, "%", "%2", "%25", "&", "=", ",", ".", "xn--", "Basic ", ":", "@", "[", "]",
          "mfa_session=", "; ", '"', "\\", "\r\n", "=" * 3, "\udcff", "\ud800"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


CORPUS: dict[str, list[str]] = {
    "protocol query": ["hostname=a.example.test&myip=192.0.2.1", "hostname=a.example.test,b.example.test&myipv6=::1",
                       "hostname=xn--bcher-kva.example&myip=1.2.3.4,2001:db8::1&offline=YES",
                       "system=dyndns&hostname=h.example.test&wildcard=NOCHG&mx=&backmx=NO",
                       "&".join(f"hostname=h{i}.test" for i in range(25)), "myip=%31.2.3.4&hostname=%E4%BE%8B.test"],
    "hostname": ["a.example.test", "xn--nxasmq6b.example", "bücher.example", "例え.テスト", "a\u3002b\u3002c",
                 "A.EXAMPLE.TEST.", "-a.example", "a" * 63 + ".test", ".".join(["a"] * 127), "home"],
    "ip / proxy": ["192.0.2.1", "2001:db8::1", "::ffff:1.2.3.4", "1.2.3.4, 10.0.0.1", "[2001:db8::1]:443",
                   "fe80::1%eth0", "1.2.3.4:80"],
    "basic auth": ["Basic " + _b64("alice:pw"), "Basic " + _b64("alice:pw").rstrip("="), "basic " + _b64("ü:ß"),
                   "Basic " + _b64("nocolon"), "Bearer abc", "Basic " + _b64(":pw")],
    "cookie header": ["mfa_session=" + SESSIONS.signer.sign("t1|" + "s" * 43 + "|YWxpY2U|0|1|0|1|").decode(),
                      "mfa_trust=" + SESSIONS.dumps_trust("alice", "t" * 32),
                      "a=b; c=d", '__Host-mfa_session="quoted\\"value"', "$Version=1; a=b; $Path=/",
                      "demo_session=eyJ1c2VyIjoiZGVtbyJ9.x.y; mfa_session=abc"],
    "signed cookie": ["t1|" + "s" * 43 + "|YWxpY2U|0|1700000000|0|1700000000|totp", "t1|x|||||||",
                      "t1|" + "s" * 43 + "|%%%|a|b|c|d|"],
    "form body": ["csrf_token=abc&code=123456&remember=on", "backup_code=abcd-efgh-jkmn-pqrs-tvwx-yz01&csrf_token=x",
                  "password=%C3%BC&question=q&answer=a", "next=%2F%2Fevil&x=%ff"],
    "backup code": ["abcd-efgh-jkmn-pqrs-tvwx-yz01", "ABCD EFGH JKMN PQRS TVWX YZ01", "abcdefghjkmnpqrstvwxyz01",
                    "ab1l-0o00-jkmn-pqrs-tvwx-yz01"],
    "totp code": ["123456", "123 456", "123-456", "12345678", "１２３４５６"],
    "username / answer": ["alice", "Alice@Example.COM", "ﬁx", "a:b", "a{b}", "  spaced  name  "],
    "REDIS_URL": ["redis://127.0.0.1:6379/0", "rediss://u:p@h:6380/1?socket_timeout=0.5", "unix:///tmp/r.sock?db=2",
                  "redis+sentinel://s1:26379,s2/mymaster/3", "redis+cluster://n1:7000,[::1]:7001",
                  "rediss+cluster://:pw@n1", "memory://"],
}


def mutate(rng: random.Random, text: str, corpus: list[str]) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randint(0, len(text))
        if op == 0 and text:  # flip a character's bits
            i = rng.randrange(len(text))
            text = text[:i] + chr(ord(text[i]) ^ (1 << rng.randrange(8))) + text[i + 1:]
        elif op == 1:
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        elif op == 2:
            text = text[:pos]
        elif op == 3 and text:
            end = rng.randint(pos, len(text))
            text = text[:pos] + text[pos:end] * rng.randint(2, 50) + text[end:]
        elif op == 4:
            other = rng.choice(corpus)
            text = text[:pos] + other[rng.randint(0, len(other)):]
        elif op == 5:
            text = quote(text, safe=rng.choice(["", "&=", "/:@"]), errors="surrogatepass")
        elif op == 6:
            text = text[:pos] + chr(rng.randrange(0x110000)) + text[pos:]
        elif op == 7:
            text = text[:pos] + "".join(chr(rng.randrange(256)) for _ in range(rng.randint(1, 8))) + text[pos:]
        else:
            text = text.upper() if rng.random() < 0.5 else text.lower()
    return text


def _encodable(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def check_protocol(q: str) -> None:
    for request in (parse_update(q), parse_update(_encodable(q))):
        assert len(request.hosts) <= MAX_HOSTS
        for item in request.hosts:
            assert item.fqdn is None or (item.fqdn.isascii() and len(item.fqdn) <= MAX_HOSTNAME_LENGTH)


def check_hostname(h: str) -> None:
    name = normalize_hostname(h)
    if name is not None:
        assert name.isascii() and len(name) <= MAX_HOSTNAME_LENGTH and normalize_hostname(name) == name
    try:
        canonical_host(h)
    except BadHostname:
        assert name is None
    with contextlib.suppress(ValueError):
        group_name(h)


def check_ip(v: str) -> None:
    parse_ip_params(v, v)
    assert isinstance(client_address(v.split(",")[0], {"x-forwarded-for": v, "x-real-ip": v}, TRUSTED), str)
    assert isinstance(agent_allowed(v, [v[:5], "curl/*"]), bool)
    www_authenticate(v).encode("latin-1")


def check_basic(h: str) -> None:
    for header in (h, _encodable(h)):
        result = parse_basic_auth(header)
        assert result is None or (result[0] and isinstance(result[1], str))


def check_cookies(h: str) -> None:
    jar = parse_cookies(h)
    for value in jar.values():
        assert isinstance(value, str)
        SESSIONS.loads(value)
        SESSIONS.loads_trust(value, 86400)


def check_signed(v: str) -> None:
    """The text is signed first, so the parser behind the signature check is what gets fuzzed."""
    SESSIONS.loads(v)
    v = v.encode("utf-8", "replace").decode()  # what we sign must be encodable; the parsers get the raw text too
    SESSIONS.loads(SESSIONS.signer.sign(v).decode())
    data = SESSIONS.loads_trust(SESSIONS.trust_signer.dumps(v.split("|")[:2]), 86400)
    assert data is None or (len(data) == 2 and all(isinstance(x, str) for x in data))
    data = SESSIONS.loads_trust(v, 86400)
    assert data is None or (len(data) == 2 and all(isinstance(x, str) for x in data))


def check_form(body: str) -> None:
    form = parse_form(_encodable(body))
    for value in form.values():
        target = safe_next(value)
        assert target == "/" or (target.startswith("/") and not target.startswith("//"))


def check_backup(code: str) -> None:
    normalized = backup_codes.normalize(code)
    assert normalized is None or (len(normalized) == backup_codes.LENGTH
                                  and backup_codes.normalize(backup_codes.format_code(normalized)) == normalized)


def check_totp(code: str) -> None:
    assert normalize_code(code, 6) is None or code.strip()
    match_step(SEED, code, time.time(), None, PARAMS)


def check_username(raw: str) -> None:
    with contextlib.suppress(InvalidUsername):
        normalize_username(raw)
    with contextlib.suppress(InvalidUsername):
        normalize_username(_encodable(raw))
    answer = normalize_answer(raw)
    assert normalize_answer(answer) == answer


def check_store_url(url: str) -> None:
    try:
        spec = parse_store_url(url)
    except StoreURLError:
        return
    assert all(0 <= port <= 65535 for _, port in spec.nodes)


CHECKS: dict[str, Callable[[str], None]] = {
    "protocol query": check_protocol, "hostname": check_hostname, "ip / proxy": check_ip, "basic auth": check_basic,
    "cookie header": check_cookies, "signed cookie": check_signed, "form body": check_form,
    "backup code": check_backup, "totp code": check_totp, "username / answer": check_username,
    "REDIS_URL": check_store_url,
}


def run(total: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    names = list(CHECKS)
    per = total // len(names) + 1
    for name in names:
        corpus, check = CORPUS[name], CHECKS[name]
        for _ in range(per):
            text = mutate(rng, rng.choice(corpus), corpus)
            try:
                check(text)
            except Exception:
                print(f"{name}: exception for input {text!r}", file=sys.stderr)
                traceback.print_exc()
                raise SystemExit(1) from None
            counts[name] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = run(args.total, args.seed)
    print(f"mutational fuzzing (seed {args.seed}): {sum(counts.values()):,} inputs, 0 exceptions, "
          f"{time.monotonic() - started:.0f} s")
    for name, n in counts.items():
        print(f"  {name:<20} {n:>10,}")


if __name__ == "__main__":
    main()
