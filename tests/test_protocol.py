"""Table-driven and property tests for the pure `/nic/update` protocol module."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddns_update.protocol import (
    MAX_HOSTNAME_LENGTH,
    MAX_HOSTS,
    WWW_AUTHENTICATE,
    Answer,
    Requested,
    UpdateRequest,
    agent_allowed,
    client_address,
    format_body,
    format_line,
    normalize_hostname,
    parse_basic_auth,
    parse_hostnames,
    parse_ip,
    parse_ip_params,
    parse_offline,
    parse_trusted_proxies,
    parse_update,
    status_for,
    www_authenticate,
)

LABEL_63 = "a" * 63
# 4 labels of 63 + 3 dots = 255; trim the first label to land on exact totals.
NAME_253 = "a" * 61 + "." + ".".join([LABEL_63] * 3)
NAME_254 = "a" * 62 + "." + ".".join([LABEL_63] * 3)


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------- hostnames


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("host.example.com", "host.example.com"),
        ("  Host.Example.COM  ", "host.example.com"),
        ("host.example.com.", "host.example.com"),
        ("host.example.com..", None),
        (".host.example.com", None),
        ("host..example.com", None),
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("bücher。example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("xn--zz.example", None),
        ("straße.de", "strasse.de"),
        (f"{LABEL_63}.com", f"{LABEL_63}.com"),
        (f"{'a' * 64}.com", None),
        (NAME_253, NAME_253),
        (NAME_253 + ".", NAME_253),
        (NAME_254, None),
        ("a-b.example", "a-b.example"),
        ("-ab.example", None),
        ("ab-.example", None),
        ("a--b.example", "a--b.example"),
        ("1.2.3.4", None),
        ("host.123", None),
        ("host.c0m", "host.c0m"),
        ("123.example", "123.example"),
        ("localhost", None),
        ("com.", None),
        ("", None),
        ("   ", None),
        (".", None),
        ("under_score.example", None),
        ("sp ace.example", None),
        ("nul\x00.example", None),
        ("a*.example", None),
        ("x" * 5000, None),
    ],
)
def test_normalize_hostname(raw: str, expected: str | None) -> None:
    assert normalize_hostname(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, []),
        ("", []),
        (" , ,", []),
        ("a.example.com", [Requested("a.example.com", "a.example.com")]),
        (
            "B.example.com, a.example.com",
            [Requested("b.example.com", "b.example.com"), Requested("a.example.com", "a.example.com")],
        ),
        ("Bücher.example", [Requested("bücher.example", "xn--bcher-kva.example")]),
        ("Home-Group", [Requested("home-group", None)]),
        ("bad_name.example", [Requested("bad_name.example", None)]),
        ("a.example,a.example", [Requested("a.example", "a.example")] * 2),
        ("ctl\x01.example", [Requested("ctl\x01.example", None)]),
        ("x" * 300, [Requested("x" * 300, None)]),
    ],
)
def test_parse_hostnames(raw: str | None, expected: list[Requested]) -> None:
    assert parse_hostnames(raw) == (expected, None)


def test_twenty_hosts_are_fine_twentyone_are_numhost() -> None:
    names = [f"h{i}.example.com" for i in range(MAX_HOSTS + 1)]
    hosts, error = parse_hostnames(",".join(names[:MAX_HOSTS]))
    assert error is None
    assert [host.fqdn for host in hosts] == names[:MAX_HOSTS]
    assert parse_hostnames(",".join(names)) == ([], Answer.NUMHOST)
    # Empty items do not count towards the limit.
    assert parse_hostnames(",".join(names[:MAX_HOSTS]) + ",,,")[1] is None


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.2.3.4", IPv4Address("1.2.3.4")),
        (" 1.2.3.4 ", IPv4Address("1.2.3.4")),
        ("192.168.0.10", IPv4Address("192.168.0.10")),
        ("2001:db8::1", IPv6Address("2001:db8::1")),
        ("2001:DB8:0:0::1", IPv6Address("2001:db8::1")),
        ("::ffff:1.2.3.4", IPv4Address("1.2.3.4")),
        ("fe80::1%eth0", None),
        ("0.0.0.0", None),
        ("::", None),
        ("224.0.0.1", None),
        ("ff02::1", None),
        ("01.2.3.4", None),
        ("1.2.3.4/32", None),
        ("1.2.3", None),
        ("256.1.1.1", None),
        ("٣.1.1.1", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_ip(raw: str | None, expected: object) -> None:
    assert parse_ip(raw) == expected


V4 = IPv4Address("1.2.3.4")
V6 = IPv6Address("2001:db8::1")
V6B = IPv6Address("2001:db8::2")


@pytest.mark.parametrize(
    ("myip", "myipv6", "expected"),
    [
        (None, None, (None, None)),
        ("", "", (None, None)),
        ("1.2.3.4", None, (V4, None)),
        ("2001:db8::1", None, (None, V6)),
        ("1.2.3.4,2001:db8::1", None, (V4, V6)),
        ("2001:db8::1,1.2.3.4", None, (V4, V6)),
        (" 1.2.3.4 , 2001:db8::1 ", None, (V4, V6)),
        ("1.2.3.4,", None, (V4, None)),
        ("1.2.3.4", "2001:db8::1", (V4, V6)),
        ("1.2.3.4,2001:db8::1", "2001:db8::2", (V4, V6B)),
        ("2001:db8::1", "garbage", (None, V6)),
        (None, "1.2.3.4", (None, None)),
        ("garbage", None, (None, None)),
        ("1.2.3.4,garbage", None, (V4, None)),
        ("1.2.3.4,5.6.7.8", None, (None, None)),
        ("1.2.3.4,2001:db8::1,5.6.7.8", None, (None, None)),
        ("999.1.1.1", "::g", (None, None)),
        ("fe80::1%eth0", None, (None, None)),
    ],
)
def test_parse_ip_params(myip: str | None, myipv6: str | None, expected: object) -> None:
    assert parse_ip_params(myip, myipv6) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("YES", True),
        ("yes", True),
        ("Yes ", True),
        ("NO", False),
        ("no", False),
        ("", None),
        (None, None),
        ("true", None),
        ("1", None),
    ],
)
def test_parse_offline(value: str | None, expected: bool | None) -> None:
    assert parse_offline(value) is expected


# --------------------------------------------------------------------------- request


def test_parse_update_ddclient_query() -> None:
    query = "system=dyndns&hostname=a.example.com,b.example.com&myip=1.2.3.4,2001:db8::1&wildcard=ON&mx=x"
    assert parse_update(query) == UpdateRequest(
        hosts=(Requested("a.example.com", "a.example.com"), Requested("b.example.com", "b.example.com")),
        ipv4=V4,
        ipv6=V6,
    )


@pytest.mark.parametrize(
    "query", [b"hostname=a.example.com&myip=1.2.3.4", {"hostname": "a.example.com", "myip": "1.2.3.4"}]
)
def test_parse_update_accepts_bytes_and_mappings(query: bytes | dict[str, str]) -> None:
    request = parse_update(query)
    assert request.hosts == (Requested("a.example.com", "a.example.com"),)
    assert request.ipv4 == V4
    assert request.has_address


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", UpdateRequest()),
        ("hostname=&myip=", UpdateRequest()),
        (
            "hostname=h%C3%BCbsch.example",
            UpdateRequest(hosts=(Requested("hübsch.example", "xn--hbsch-kva.example"),)),
        ),
        ("hostname=%ff.example", UpdateRequest(hosts=(Requested("\ufffd.example", None),))),
        ("offline=YES&hostname=home", UpdateRequest(hosts=(Requested("home", None),), offline=True)),
        ("myip=garbage&myipv6=2001:db8::1", UpdateRequest(ipv6=V6)),
        (
            "hostname=a.example&hostname=b.example",
            UpdateRequest(hosts=(Requested("b.example", "b.example"),)),
        ),
        ("hostname=" + ",".join(["h.example"] * 21), UpdateRequest(error=Answer.NUMHOST)),
        ("&".join(["x=1"] * 200), UpdateRequest(error=Answer.NUMHOST)),
        (b"hostname=\xff\xfe.example", UpdateRequest(hosts=(Requested("\ufffd\ufffd.example", None),))),
    ],
)
def test_parse_update_table(query: str | bytes, expected: UpdateRequest) -> None:
    assert parse_update(query) == expected


def test_update_request_without_address() -> None:
    assert not parse_update("hostname=a.example").has_address


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        (basic(b"user:pass"), ("user", "pass")),
        (basic(b"user:pass").encode(), ("user", "pass")),
        ("basic " + base64.b64encode(b"user:pass").decode(), ("user", "pass")),
        ("BASIC   " + base64.b64encode(b"user:pass").decode() + "  ", ("user", "pass")),
        (basic(b"user:pa:ss"), ("user", "pa:ss")),
        (basic(b"user:"), ("user", "")),
        (basic(b":pass"), None),
        (basic(b"userpass"), None),
        (basic(b""), None),
        (basic("jürgen:pässword".encode()), ("jürgen", "pässword")),
        (basic("jürgen:pässword".encode("latin-1")), ("jürgen", "pässword")),
        (basic(b"\xff\xfe:\x80"), ("\xff\xfe", "\x80")),
        ("Basic " + base64.b64encode(b"ab:c").decode().rstrip("="), ("ab", "c")),
        ("Basic !!!notbase64", None),
        ("Basic dXNlcjpwYXNz=====", ("user", "pass")),  # surplus padding is harmless
        ("Basic dXNlcjpwYXN=z", None),
        ("Basic dXNlcjpw YXNz", None),
        ("Basic", None),
        ("Basic ", None),
        ("Bearer dXNlcjpwYXNz", None),
        ("Digest username=x", None),
        ("Basic ünïcode", None),
        (b"Basic \xff\xfe", None),
    ],
)
def test_parse_basic_auth(header: str | bytes | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic_auth(header) == expected


# --------------------------------------------------------------------------- clients


PROXIES = parse_trusted_proxies("10.0.0.0/8, 2001:db8:ffff::/48")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        (" , ", []),
        ("10.0.0.0/8", [ip_network("10.0.0.0/8")]),
        ("10.0.0.1", [ip_network("10.0.0.1/32")]),
        ("10.0.0.1/8,  ::1/128", [ip_network("10.0.0.0/8"), ip_network("::1/128")]),
    ],
)
def test_parse_trusted_proxies(value: str, expected: list[object]) -> None:
    assert parse_trusted_proxies(value) == expected


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network", "10.0.0.0/8,bogus"])
def test_parse_trusted_proxies_rejects_bad_cidr(value: str) -> None:
    with pytest.raises(ValueError, match="DDNS_TRUSTED_PROXIES"):
        parse_trusted_proxies(value)


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        (None, {}, None),
        ("203.0.113.9", {}, "203.0.113.9"),
        ("::ffff:203.0.113.9", {}, "203.0.113.9"),
        ("testclient", {"x-forwarded-for": "1.2.3.4"}, "testclient"),
        # Spoofing from an untrusted peer is ignored.
        ("203.0.113.9", {"x-forwarded-for": "1.2.3.4"}, "203.0.113.9"),
        ("203.0.113.9", {"X-Real-IP": "1.2.3.4"}, "203.0.113.9"),
        # One trusted proxy.
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.7"}, "198.51.100.7"),
        ("10.0.0.2", {"X-Forwarded-For": "198.51.100.7"}, "198.51.100.7"),
        # A chain: the client's own claim left of the first untrusted hop is not believed.
        ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.1.1.1"}, "198.51.100.7"),
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.7,2001:db8:ffff::5"}, "198.51.100.7"),
        # All hops trusted: the leftmost is the client, inside our network.
        ("10.0.0.2", {"x-forwarded-for": "10.9.9.9, 10.1.1.1"}, "10.9.9.9"),
        # Ports and brackets some proxies add.
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.7:5555"}, "198.51.100.7"),
        ("10.0.0.2", {"x-forwarded-for": "[2001:db8::7]:5555"}, "2001:db8::7"),
        # A broken entry stops the walk at the last hop we can vouch for.
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.7, garbage"}, "10.0.0.2"),
        ("10.0.0.2", {"x-forwarded-for": "garbage, 10.1.1.1"}, "10.1.1.1"),
        ("10.0.0.2", {"x-forwarded-for": ""}, "10.0.0.2"),
        # X-Real-IP only when there is no X-Forwarded-For.
        ("10.0.0.2", {"x-real-ip": "198.51.100.8"}, "198.51.100.8"),
        ("10.0.0.2", {"x-real-ip": "nonsense"}, "10.0.0.2"),
        ("10.0.0.2", {"x-real-ip": "198.51.100.8", "x-forwarded-for": "198.51.100.7"}, "198.51.100.7"),
    ],
)
def test_client_address(peer: str | None, headers: dict[str, str], expected: str | None) -> None:
    assert client_address(peer, headers, PROXIES) == expected


def test_client_address_trusts_nobody_by_default() -> None:
    assert client_address("10.0.0.2", {"x-forwarded-for": "1.2.3.4"}, []) == "10.0.0.2"


@pytest.mark.parametrize(
    ("agent", "blocklist", "expected"),
    [
        (None, [], False),
        ("", [], False),
        ("   ", [], False),
        ("ddclient/3.11.2", [], True),
        ("inadyn/2.10.0 https://github.com/troglobit/inadyn/issues", ["curl/*"], True),
        ("curl/8.5.0", ["curl/*"], False),
        ("CURL/8.5.0", ["curl/*"], False),
        ("Mozilla/5.0 BadBot/1.0", ["badbot"], False),
        ("Mozilla/5.0 BadBot/1.0", ["BADBOT"], False),
        ("python-requests/2.31", ["python-requests/2.?1"], False),
        ("python-requests/2.31", ["python-requests/3.*"], True),
        ("ddclient/3.11.2", ["", "  "], True),
        ("a[b", ["a[b"], False),
    ],
)
def test_agent_allowed(agent: str | None, blocklist: list[str], expected: bool) -> None:
    assert agent_allowed(agent, blocklist) is expected


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("answer", "ipv4", "ipv6", "expected"),
    [
        (Answer.GOOD, V4, None, "good 1.2.3.4"),
        (Answer.GOOD, None, IPv6Address("::1"), "good ::1"),
        (Answer.GOOD, V4, IPv6Address("::1"), "good 1.2.3.4,::1"),
        (Answer.NOCHG, V4, None, "nochg 1.2.3.4"),
        (Answer.NOCHG, "1.2.3.4", "2001:db8::1", "nochg 1.2.3.4,2001:db8::1"),
        (Answer.GOOD, None, None, "good"),
        (Answer.NOHOST, V4, None, "nohost"),
        (Answer.NOT_DONATOR, None, None, "!donator"),
        (Answer.SERVER_ERROR, None, None, "911"),
    ],
)
def test_format_line(answer: Answer, ipv4: object, ipv6: object, expected: str) -> None:
    assert format_line(answer, ipv4, ipv6) == expected  # type: ignore[arg-type]


def test_answer_codes_are_the_wire_text() -> None:
    assert [str(answer) for answer in Answer] == [
        "good",
        "nochg",
        "nohost",
        "notfqdn",
        "numhost",
        "badauth",
        "badagent",
        "!donator",
        "abuse",
        "dnserr",
        "911",
    ]


def test_format_body() -> None:
    assert format_body(["good 1.2.3.4", "nohost"]) == "good 1.2.3.4\nnohost\n"
    assert format_body(["badauth"]) == "badauth\n"


@pytest.mark.parametrize("answer", list(Answer))
def test_status_for(answer: Answer) -> None:
    assert status_for(answer) == (401 if answer is Answer.BADAUTH else 200)


@pytest.mark.parametrize(
    ("realm", "expected"),
    [
        ("DDNS", 'Basic realm="DDNS"'),
        ('say "hi"', 'Basic realm="say \\"hi\\""'),
        ("back\\slash", 'Basic realm="back\\\\slash"'),
        ("new\r\nline", 'Basic realm="newline"'),
        ("snow ☃", 'Basic realm="snow ?"'),
    ],
)
def test_www_authenticate(realm: str, expected: str) -> None:
    assert www_authenticate(realm) == expected


def test_default_www_authenticate() -> None:
    assert WWW_AUTHENTICATE.startswith('Basic realm="')


# --------------------------------------------------------------------------- properties


@given(st.one_of(st.text(), st.binary()))
def test_parse_update_never_raises(query: str | bytes) -> None:
    request = parse_update(query)
    assert len(request.hosts) <= MAX_HOSTS


@given(st.dictionaries(st.sampled_from(["hostname", "myip", "myipv6", "offline", "system"]), st.text()))
def test_parse_update_mapping_never_raises(query: dict[str, str]) -> None:
    assert isinstance(parse_update(query), UpdateRequest)


@given(
    st.one_of(
        st.none(),
        st.text(),
        st.binary(),
        st.binary().map(lambda b: b"Basic " + b),
        st.binary().map(lambda b: "Basic " + base64.b64encode(b).decode()),
    )
)
def test_parse_basic_auth_never_raises(header: str | bytes | None) -> None:
    result = parse_basic_auth(header)
    assert result is None or (result[0] != "" and isinstance(result[1], str))


@given(st.text())
def test_normalize_hostname_never_raises_and_is_idempotent(raw: str) -> None:
    name = normalize_hostname(raw)
    if name is not None:
        assert name.isascii() and len(name) <= 253
        assert normalize_hostname(name) == name


@given(st.text(), st.text())
def test_parse_hostnames_and_ips_never_raise(hostname: str, myip: str) -> None:
    parse_hostnames(hostname)
    parse_ip_params(myip, hostname)


@given(
    st.one_of(st.none(), st.text(), st.ip_addresses().map(str)),
    st.dictionaries(st.sampled_from(["x-forwarded-for", "X-Real-IP", "host"]), st.text()),
)
def test_client_address_never_raises(peer: str | None, headers: dict[str, str]) -> None:
    trusted = [ip_network("0.0.0.0/0"), ip_network("::/0")]
    result = client_address(peer, headers, trusted)
    assert result is None if peer is None else isinstance(result, str)


@given(st.one_of(st.none(), st.text()), st.lists(st.text(), max_size=5))
def test_agent_allowed_never_raises(agent: str | None, blocklist: list[str]) -> None:
    assert isinstance(agent_allowed(agent, blocklist), bool)


_query_field = st.text(alphabet=st.sampled_from("ab=&%+;é\x00 =0"), max_size=6)


@settings(max_examples=1000)
@given(st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("a=&%+é; "), max_size=40),
    st.lists(_query_field, max_size=120).map("&".join),  # around the field limit
    st.binary().map(lambda b: b.decode("utf-8", errors="replace")),
))
def test_plain_query_fast_path_equals_parse_qsl(query: str) -> None:
    """The fast path for queries without ``%``/``+`` answers exactly what the parse_qsl path answers."""
    from ddns_update.protocol import _parse_plain_query, _parse_qsl_query, _parse_query

    slow = _parse_qsl_query(query)
    assert _parse_query(query) == slow
    assert _parse_query(query.encode("utf-8", errors="surrogatepass")) == \
        _parse_qsl_query(query.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace"))
    if "%" not in query and "+" not in query:
        assert _parse_plain_query(query) == slow


@settings(max_examples=1000)
@given(st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("ab0-.x"), max_size=30),
    st.lists(st.text(alphabet=st.sampled_from("az09-"), max_size=64), max_size=6).map(".".join),
    st.lists(st.sampled_from(["a" * 63, "b" * 64, "xn--bcher-kva", "xn--a", "1", "-a", "a-"]), max_size=6)
    .map(".".join),
))
def test_fqdn_regex_equals_label_rules(name: str) -> None:
    from ddns_update.protocol import _is_valid_fqdn, _is_valid_fqdn_by_label

    assert _is_valid_fqdn(name) == _is_valid_fqdn_by_label(name)


def _token_fqdn_reference(token: str) -> str | None:
    """``_token_fqdn`` without its one-regex fast path."""
    from ddns_update.protocol import _CONTROL

    if len(token) > MAX_HOSTNAME_LENGTH or _CONTROL.search(token):
        return None
    return normalize_hostname(token)


@settings(max_examples=1000)
@given(st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("ab0-.x\x01é"), max_size=30),
    st.lists(st.text(alphabet=st.sampled_from("az09-"), max_size=64), max_size=6).map(".".join)
    .map(lambda name: name + "."),
    st.lists(st.sampled_from(["a" * 63, "b" * 64, "xn--bcher-kva", "xn--a", "1", "-a", "a-", ""]), max_size=6)
    .map(".".join),
    st.integers(min_value=0, max_value=140).map(lambda n: ".".join(["abc"] * n)),
    st.tuples(st.integers(min_value=248, max_value=256), st.booleans())  # exactly around 253 characters
    .map(lambda n_dot: ("a" * 60 + ".") * 4 + "b" * (n_dot[0] - 244) + ("." if n_dot[1] else "")),
))
def test_token_fast_path_equals_the_general_rules(token: str) -> None:
    from ddns_update.protocol import _token_fqdn

    token = token.strip().lower()
    assert _token_fqdn(token) == _token_fqdn_reference(token)


@given(st.one_of(st.text(alphabet=st.sampled_from("0123456789.:abcdef, "), max_size=45), st.text()))
def test_single_address_fast_path_equals_the_general_split(myip: str) -> None:
    from ddns_update.protocol import _split_myip

    parts = [part for part in myip.split(",") if part.strip()]
    found = [a for a in map(parse_ip, parts) if a is not None] if len(parts) <= 2 else []
    v4 = [a for a in found if a.version == 4]
    v6 = [a for a in found if a.version == 6]
    assert _split_myip(myip) == ((v4[0] if len(v4) == 1 else None), (v6[0] if len(v6) == 1 else None))


@given(st.one_of(st.text(), st.text(alphabet=st.sampled_from("a |\x00\x1f\x7f\x85\xa0é\u2028"), max_size=20)))
def test_history_text_cleaning_equals_the_regex(text: str) -> None:
    from ddns_update.service import _UNSAFE, _safe

    assert _safe(text) == _UNSAFE.sub(" ", text)


@given(st.one_of(st.none(), st.text(), st.sampled_from(["127.0.0.1", "::ffff:192.0.2.1", "2001:DB8::1", "unix"])))
def test_no_proxy_shortcuts_equal_the_general_rules(value: str | None) -> None:
    assert agent_allowed(value, ()) == bool((value or "").strip())
    if value is not None:
        address = parse_ip(value)
        assert client_address(value, {"x-forwarded-for": "198.51.100.1"}, ()) == \
            (value if address is None else str(address))


def test_hostname_length_limit_counts_the_root_dot_as_sent() -> None:
    from ddns_update.protocol import _token_fqdn

    name = ("a" * 60 + ".") * 4 + "b" * 9  # 253 characters
    assert len(name) == MAX_HOSTNAME_LENGTH and _token_fqdn(name) == name
    assert _token_fqdn(name + ".") is None  # 254 as sent: refused, as the general rules always did
