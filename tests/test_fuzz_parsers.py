"""Fuzzing every parser that sees outside input: any input gets a value or the parser's own refusal, never a crash.

`make test` runs a fast slice; `make fuzz` (FUZZ_LONG=1) runs >= 1,000,000 inputs. Each property counts the
inputs it really received and the module prints the figures at the end.
"""

from __future__ import annotations

import base64
import contextlib
import io
import ipaddress
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from ddns_update import cli as ddns_cli
from ddns_update.groups import group_name
from ddns_update.hosts import BadHostname, canonical_host
from ddns_update.protocol import (
    MAX_HOSTNAME_LENGTH,
    MAX_HOSTS,
    Answer,
    UpdateRequest,
    agent_allowed,
    client_address,
    combine,
    normalize_hostname,
    parse_addresses,
    parse_basic_auth,
    parse_hostnames,
    parse_ip,
    parse_ip_params,
    parse_offline,
    parse_prefix,
    parse_update,
    www_authenticate,
)
from mfa_middleware import backup_codes
from mfa_middleware import cli as mfa_cli
from mfa_middleware.accounts import InvalidUsername, normalize_username
from mfa_middleware.gate import MAX_FORM_BYTES, parse_cookies, parse_form
from mfa_middleware.paths import safe_next
from mfa_middleware.sessions import Sessions
from mfa_middleware.store import Keys, StoreSpec, StoreURLError, parse_store_url
from mfa_middleware.store.url import build_client
from mfa_middleware.totp import TotpParams, match_step, new_seed, normalize_code
from mfa_middleware.twofactor import normalize_answer
from tests.fuzz.strategies import (
    COUNTS,
    LONG,
    basic_header,
    cookie_header,
    form_body,
    fuzz,
    hostname,
    ip_text,
    json_value,
    nasty_text,
    query_bytes,
    query_pair,
    query_string,
    seen,
    store_url,
)


@pytest.fixture(scope="module", autouse=True)
def _report_counts(pytestconfig: pytest.Config) -> Iterator[None]:
    COUNTS.clear()
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  {name:<28} {n:>10,}" for name, n in sorted(COUNTS.items())]
    text = f"\nparser fuzzing ({'long' if LONG else 'fast slice'}): {sum(COUNTS.values()):,} inputs, 0 exceptions\n"
    text += "\n".join(lines)
    if reporter is not None:
        reporter.write_line(text)
    else:  # pragma: no cover - without the terminal plugin
        print(text, file=sys.stderr)


# --------------------------------------------------------------------------- /nic/update query


def _check_update(request: UpdateRequest) -> None:
    assert isinstance(request, UpdateRequest)
    assert request.error in (None, Answer.NUMHOST)
    assert len(request.hosts) <= MAX_HOSTS
    if request.error is not None:
        assert request.hosts == ()
    for item in request.hosts:
        assert item.token and item.token == item.token.strip()
        if item.fqdn is not None:
            assert item.fqdn.isascii() and len(item.fqdn) <= MAX_HOSTNAME_LENGTH
            assert normalize_hostname(item.fqdn) == item.fqdn
    assert request.ipv4 is None or isinstance(request.ipv4, ipaddress.IPv4Address)
    assert request.ipv6 is None or isinstance(request.ipv6, ipaddress.IPv6Address)
    assert request.offline in (None, True, False)
    assert request.ipv6_prefix is None or isinstance(request.ipv6_prefix, ipaddress.IPv6Network)


@fuzz(fast=200, long=15_000)
@given(st.one_of(query_string, query_bytes))
def test_protocol_query_string(query: str | bytes) -> None:
    seen("protocol query (raw)")
    _check_update(parse_update(query))


@fuzz(fast=150, long=10_000)
@given(st.lists(query_pair, max_size=10).map(dict))
def test_protocol_query_mapping(query: dict[str, str]) -> None:
    seen("protocol query (mapping)")
    _check_update(parse_update(query))


@fuzz(fast=200, long=12_000)
@given(hostname)
def test_hostnames(raw: str) -> None:
    seen("hostname")
    name = normalize_hostname(raw)
    if name is not None:
        assert name.isascii() and name == name.lower() and len(name) <= MAX_HOSTNAME_LENGTH
        assert normalize_hostname(name) == name
    try:
        assert canonical_host(raw) == name
    except BadHostname:
        assert name is None
    hosts, error = parse_hostnames(raw)
    assert (error is None) == (len(hosts) <= MAX_HOSTS)
    with contextlib.suppress(ValueError):
        assert group_name(raw)


@fuzz(fast=150, long=8_000)
@given(st.lists(ip_text, max_size=3).map(",".join), ip_text, st.one_of(st.none(), ip_text),
       st.dictionaries(st.sampled_from(["x-forwarded-for", "X-Forwarded-For", "x-real-ip"]),
                       st.lists(ip_text, max_size=4).map(",".join)),
       st.lists(st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
           lambda a: ipaddress.ip_network(f"{a[0]}/{a[1] % (33 if a[0].version == 4 else 129)}", strict=False)),
           max_size=3))
def test_addresses(myip: str, myipv6: str, peer: str | None, headers: dict[str, str],
                   trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    seen("ip / proxy headers")
    v4, v6 = parse_ip_params(myip, myipv6)
    assert v4 is None or isinstance(v4, ipaddress.IPv4Address)
    assert v6 is None or isinstance(v6, ipaddress.IPv6Address)
    address = parse_ip(myipv6)
    assert address is None or not (address.is_multicast or address.is_unspecified)
    result = client_address(peer, headers, trusted)
    assert result is None if peer is None else isinstance(result, str)
    parse_offline(myipv6)


prefix_text = st.one_of(
    ip_text.map(lambda t: t + "/"),
    st.tuples(st.ip_addresses(v=6), st.integers(-1, 130)).map(lambda a: f"{a[0]}/{a[1]}"),
    st.tuples(ip_text, st.text(max_size=6)).map("/".join), nasty_text)


@fuzz(fast=150, long=8_000)
@given(st.lists(st.one_of(ip_text, prefix_text, st.just("")), max_size=4).map(",".join),
       st.one_of(st.none(), ip_text, prefix_text), st.one_of(st.none(), prefix_text), st.ip_addresses(v=6))
def test_prefixes(myip: str, myipv6: str | None, prefix: str | None, interface_id: ipaddress.IPv6Address) -> None:
    seen("ipv6 prefix")
    v4, v6, network = parse_addresses(myip, myipv6, prefix)
    assert v4 is None or isinstance(v4, ipaddress.IPv4Address)
    assert v6 is None or isinstance(v6, ipaddress.IPv6Address)
    for found in (network, parse_prefix(prefix), parse_prefix(myipv6)):
        if found is not None:
            assert isinstance(found, ipaddress.IPv6Network) and 0 < found.prefixlen <= 128
            assert combine(found, interface_id) in found


@fuzz(fast=100, long=4_000)
@given(st.one_of(st.none(), nasty_text), st.lists(nasty_text, max_size=4), nasty_text)
def test_user_agent_and_realm(agent: str | None, blocklist: list[str], realm: str) -> None:
    seen("user agent / realm")
    assert isinstance(agent_allowed(agent, blocklist), bool)
    value = www_authenticate(realm)
    value.encode("latin-1")  # a header value
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


# --------------------------------------------------------------------------- Basic auth


@fuzz(fast=200, long=12_000)
@given(basic_header)
def test_basic_auth_header(header: str | bytes | None) -> None:
    seen("basic auth header")
    result = parse_basic_auth(header)
    if result is not None:
        username, password = result
        assert username and isinstance(username, str) and isinstance(password, str)


@fuzz(fast=100, long=4_000)
@given(st.text(min_size=1).filter(lambda u: ":" not in u), st.text(), st.booleans())
def test_basic_auth_round_trip(username: str, password: str, strip_padding: bool) -> None:
    seen("basic auth round trip")
    try:
        raw = f"{username}:{password}".encode()
    except UnicodeEncodeError:  # lone surrogates: no client can send them
        return
    token = base64.b64encode(raw).decode()
    assert parse_basic_auth("Basic " + (token.rstrip("=") if strip_padding else token)) == (username, password)


# --------------------------------------------------------------------------- cookies, sessions, forms

SESSIONS = Sessions(Keys("fuzz"), "fuzz-secret-key-0123456789abcdef")


@fuzz(fast=200, long=10_000)
@given(cookie_header)
def test_cookie_header(header: str) -> None:
    seen("cookie header")
    jar = parse_cookies(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in jar.items())
    for value in jar.values():
        assert SESSIONS.loads(value) is None  # nothing unsigned is a session
        assert SESSIONS.loads_trust(value, 86400) is None


def _ticket_fields() -> st.SearchStrategy[str]:
    field = st.one_of(nasty_text, st.integers().map(str), st.just("t1"), st.just("s" * 43),
                      st.text(max_size=20).map(lambda t: base64.urlsafe_b64encode(t.encode("utf-8", "surrogatepass"))
                                               .decode().rstrip("=")))
    return st.lists(field, min_size=0, max_size=10).map("|".join)


@fuzz(fast=150, long=8_000)
@given(_ticket_fields(), json_value, st.integers(-5, 60), st.one_of(st.none(), nasty_text))
def test_signed_cookie_payloads(ticket: str, trust_payload: Any, cut: int, garbage: str | None) -> None:
    """Correctly signed cookies holding anything: only the shapes the gate writes are accepted, nothing raises."""
    seen("session / trust cookie")
    signed = SESSIONS.signer.sign(ticket.encode("utf-8", "replace")).decode()
    SESSIONS.loads(signed)
    trust = SESSIONS.trust_signer.dumps(trust_payload)
    data = SESSIONS.loads_trust(trust, 86400)
    assert data is None or (isinstance(data, tuple) and list(data) == trust_payload)
    assert SESSIONS.loads(trust) is None and SESSIONS.loads_trust(signed, 86400) is None  # keys/salts differ
    SESSIONS.loads(signed[:cut] + (garbage or ""))
    SESSIONS.loads_trust(trust[:cut] + (garbage or ""), 86400)
    SESSIONS.loads(garbage)
    SESSIONS.loads_trust(garbage, -1)


@fuzz(fast=150, long=8_000)
@given(form_body)
def test_form_body(body: bytes) -> None:
    seen("form body")
    form = parse_form(body)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())
    assert sum(len(k) + len(v) for k, v in form.items()) <= MAX_FORM_BYTES
    for value in list(form.values())[:5]:
        target = safe_next(value)
        assert target == "/" or (target.startswith("/") and not target.startswith("//"))
        assert target.isascii() and all(0x20 < ord(c) < 0x7F for c in target), target  # fit for Location


# --------------------------------------------------------------------------- what people type


@fuzz(fast=150, long=6_000)
@given(st.one_of(nasty_text, st.lists(st.sampled_from(list(backup_codes.ALPHABET + "ilouILOU-– \t")),
                                      max_size=40).map("".join)))
def test_backup_code_input(typed: str) -> None:
    seen("backup code input")
    code = backup_codes.normalize(typed)
    if code is not None:
        assert len(code) == backup_codes.LENGTH and set(code) <= set(backup_codes.ALPHABET)
        assert backup_codes.normalize(backup_codes.format_code(code)) == code
    hasher = backup_codes.BackupCodeHasher(b"k" * 32)
    try:
        assert len(hasher.digest("alice", typed)) == 64
    except ValueError:
        assert code is None


@fuzz(fast=50, long=2_000)
@given(st.lists(st.sampled_from(backup_codes.ALPHABET), min_size=24, max_size=24).map("".join),
       st.sampled_from(["-", " ", "\u2013", "", "\t"]), st.booleans())
def test_backup_code_round_trip(code: str, sep: str, upper: bool) -> None:
    seen("backup code round trip")
    shown = backup_codes.format_code(code).replace("-", sep)
    assert backup_codes.normalize(shown.upper() if upper else shown) == code


SEED = new_seed()


@fuzz(fast=150, long=6_000)
@given(st.one_of(nasty_text, st.text("0123456789 -\t٠١２", max_size=12)), st.sampled_from([6, 8]),
       st.one_of(st.none(), st.integers(-10, 2**40)), st.floats(0, 2**40))
def test_totp_input(typed: str, digits: int, last_step: int | None, now: float) -> None:
    seen("totp input")
    code = normalize_code(typed, digits)
    assert code is None or (len(code) == digits and code.isascii() and code.isdigit())
    step = match_step(SEED, typed, now, last_step, TotpParams(digits=digits))
    assert step is None or isinstance(step, int)


@fuzz(fast=100, long=4_000)
@given(st.one_of(nasty_text, st.binary(max_size=40)))
def test_usernames_and_answers(raw: str | bytes) -> None:
    seen("username / security answer")
    try:
        name = normalize_username(raw)
    except InvalidUsername:
        pass
    else:
        assert name and ":" not in name and "{" not in name and normalize_username(name) == name
    if isinstance(raw, str):
        answer = normalize_answer(raw)
        assert normalize_answer(answer) == answer


# --------------------------------------------------------------------------- REDIS_URL


@fuzz(fast=200, long=8_000)
@given(store_url)
def test_store_url(url: str | None) -> None:
    seen("REDIS_URL")
    try:
        spec = parse_store_url(url)
    except StoreURLError as exc:
        assert str(exc)
        return
    assert isinstance(spec, StoreSpec)
    if spec.kind in ("sentinel", "cluster"):
        assert spec.nodes and all(0 <= port <= 65535 for _, port in spec.nodes)
    if spec.kind == "redis":
        # Building a standalone client does not connect; a URL we accepted must not make its constructor crash.
        # (The cluster client connects in its constructor, so only the parse is fuzzed there.)
        build_client(spec, redis)


# --------------------------------------------------------------------------- CLIs

MFA_WORDS = ["user", "add", "passwd", "show", "reset-2fa", "check-answer", "unlock", "--password-stdin", "--json",
             "--redis-url", "--prefix", "-h", "--help", "--", "-", "alice"]
DDNS_WORDS = ["host", "add", "remove", "list", "group", "create", "hosts", "rotate", "delete", "account", "set",
              "dns", "sync", "abuse", "clear", "--hosts", "--username", "--add", "--remove", "--all",
              "--account-password-updates", "--offline-updates", "allow", "deny", "--json", "--redis-url",
              "--prefix", "alice", "h.example.test", "a.example.test,b.example.test", "g1", "--", "-"]
CLI_URLS = ["REDIS", "", "memory://", "redis://127.0.0.1:1/0", "redis://[::1", "http://x", "redis+sentinel://h",
            "redis://h:port/0", "redis+cluster://", "unix:///nonexistent.sock"]


def _argv(words: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.one_of(st.sampled_from(words), st.sampled_from(words), st.sampled_from(CLI_URLS),
                              nasty_text.filter(lambda s: "\x00" not in s)), max_size=9)


@pytest.fixture(scope="module")
def cli_redis() -> Iterator[str]:
    from tests.servers import RedisServer

    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


def _run_cli(main: Any, argv: list[str], env_url: str | None, stdin: bytes) -> int:
    argv = [a.replace("REDIS", env_url or "") for a in argv]
    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in ("REDIS_URL",)}
    saved_stdin = sys.stdin
    try:
        if env_url is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = env_url
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code
            else:  # pragma: no cover - main always exits
                code = 0
    finally:
        sys.stdin = saved_stdin
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert code in (0, 1, 2), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if code:
        assert err.getvalue().strip(), (argv, code)  # a refusal always says why
    return int(code or 0)


@pytest.mark.parametrize("which", ["mfa-admin", "ddns-admin"])
@fuzz(fast=40, long=5_000)
@given(data=st.data())
def test_cli_arguments(which: str, cli_redis: str, data: st.DataObject) -> None:
    seen(which)
    words = MFA_WORDS if which == "mfa-admin" else DDNS_WORDS
    main = mfa_cli.main if which == "mfa-admin" else ddns_cli.main
    argv = data.draw(_argv(words))
    env_url = data.draw(st.sampled_from([None, cli_redis, cli_redis, "redis://[::1", "bogus://x", ""]))
    stdin = data.draw(st.one_of(st.just(b""), st.binary(max_size=30), st.just(b"s3cret-pass\n"),
                                st.just(b"\xff\xfe\n")))
    if "add" in argv and "user" in argv:
        redis.Redis.from_url(cli_redis).flushall()  # keep account creation possible
    _run_cli(main, argv, env_url, stdin)


def test_cli_run_reaches_commands(cli_redis: str) -> None:
    """The grammar reaches real commands (not only argparse errors): a sanity check of the fuzz strategy."""
    redis.Redis.from_url(cli_redis).flushall()
    assert _run_cli(mfa_cli.main, ["--redis-url", cli_redis, "user", "add", "zed", "--password-stdin"], None,
                    b"zed-password\n") == 0
    assert _run_cli(mfa_cli.main, ["user", "show", "zed"], cli_redis, b"") == 0
    assert _run_cli(mfa_cli.main, ["user", "show", "nobody"], cli_redis, b"") == 1
    assert _run_cli(ddns_cli.main, ["host", "list", "zed"], cli_redis, b"") == 0
    assert _run_cli(ddns_cli.main, ["host", "list", "zed"], "redis://[::1", b"") == 2


# --------------------------------------------------------------------------- regressions found by fuzzing


@pytest.mark.parametrize("url", [
    "redis://[::1",  # urlsplit's ValueError escaped as a non-StoreURLError (CLI exit 1 instead of 2)
    "redis:///?db=0.5", "redis://h:65536/0", "redis://h:-1/0", "redis:/0/",  # redis-py refused them only later
    "redis+cluster://h:" + "9" * 5000,  # int() refuses > 4300 digits with a plain ValueError
    "redis+sentinel://h:١٢/m",  # other scripts' digits are not a port
    "redis://h/0?socket_timeout=-1", "redis://h/0?socket_timeout=nan", "redis+cluster://h?socket_timeout=inf",
])
def test_store_url_regressions(url: str) -> None:
    with pytest.raises(StoreURLError):
        parse_store_url(url)


def test_store_url_scheme_case_is_normalised() -> None:
    spec = parse_store_url("REDIS://127.0.0.1:6379/0")
    assert spec.url.startswith("redis://")
    build_client(spec, redis)  # redis-py itself only accepts the lower-case scheme


def test_trust_cookie_with_lone_surrogate_is_refused() -> None:
    assert SESSIONS.loads_trust("\udcff" + SESSIONS.dumps_trust("alice", "t" * 32), 86400) is None


def test_security_answer_normalisation_is_idempotent() -> None:
    # casefold turns "ß" + combining acute into "ss" + acute, which NFKC then composes: normalise twice
    typed = "ﬁxß\u0301"
    assert normalize_answer(normalize_answer(typed)) == normalize_answer(typed) == "fixs\u015b"
